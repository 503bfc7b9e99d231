"""The metric probe: which metric orders near-inaudible and clearly audible copies as a listener would?

Runs :func:`perceptlab.analysis.probe.run_probe` (the same report as
``perceptlab probe``) in the background and shows, per metric, the share of
triplets (clip, near copy, far copy) it orders as a listener would, with
bootstrap 95% intervals: bars grouped overall and by near copy (or by far
copy), and a table ranked best first. No listener is needed, so this is the
check to run before a listening test.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceptlab.library.store import Library
from perceptlab.qt.workers import QtTask, QtTaskRunner

# Bar colours per metric, in ranking order (colour-blind-safe Okabe-Ito set).
_COLOURS = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
            (213, 94, 0), (240, 228, 66), (160, 160, 160)]

GROUPINGS = {"by_near": "overall and by near copy", "by_far": "overall and by far copy"}


def compute_probe(library_path: str, n_clips: int, seed: int, progress=None, cancel=None) -> dict:
    """The probe report of a library file (runs in a worker thread: its own connection)."""
    from pathlib import Path

    from perceptlab.analysis.probe import run_probe

    import os

    if not Path(library_path).exists():  # never create a library as a side effect
        raise ValueError(f"{library_path}: no such library")
    # One folder beside the library, reused by every run (a copy's file name
    # names its clip and recipe), rather than a new temporary folder each time.
    folder = Path(library_path).resolve().parent
    out = folder / "probe-copies" if os.access(folder, os.W_OK | os.X_OK) else None
    with Library(library_path) as lib:
        return run_probe(lib, n_clips=n_clips, seed=seed, out_dir=out, progress=progress, cancel=cancel)


class _Splitter(QSplitter):
    """A splitter that asks for no more than its minimum.

    The page's wrapped labels give it a height-for-width, which a scroll area
    honours with the page's preferred height; a splitter asking for a tall
    chart and a full table would make the page scroll in a short window. It
    still takes whatever room the page has.
    """

    def __init__(self, orientation, on_resize):
        super().__init__(orientation)
        self._on_resize = on_resize

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._on_resize()


class QtProbeView(QWidget):
    """Run the probe; bars with intervals per metric, and a ranked table."""

    def __init__(self, runner: QtTaskRunner, parent=None):
        from perceptlab.analysis.probe import DEFAULT_CLIPS

        super().__init__(parent)
        self.runner = runner
        self.library_path: str | None = None
        self.report: dict | None = None
        self._task: QtTask | None = None

        self.clips_box = QSpinBox()
        self.clips_box.setRange(2, 500)
        self.clips_box.setValue(DEFAULT_CLIPS)
        self.clips_box.setPrefix("clips ")
        self.clips_box.setToolTip("Clips sampled from the library, spread over its labels")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setPrefix("seed ")
        self.run_button = QPushButton("Run probe")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("")  # no count before a run: run() gives it its format
        self.progress.setValue(0)
        self.progress.setMaximum(1)
        self.progress.setTextVisible(True)
        self.group_box = QComboBox()
        for key, text in GROUPINGS.items():
            self.group_box.addItem(text, key)
        # The seed's range would make its box as wide as ten digits; a few fit any seed typed.
        self.seed_box.setMinimumWidth(self.seed_box.fontMetrics().horizontalAdvance("seed 00000") + 36)
        self.seed_box.setMaximumWidth(self.seed_box.minimumWidth())
        self.status = QLabel(
            "Which metric should you trust on this library? The probe renders near-inaudible copies of "
            "some clips (-3 dB, 10 ms delay, faint noise, MP3 128 kbps, tempo +1%) and clearly audible "
            "ones (loud noise, 2 kHz low-pass, clipping, echo, reversed), and counts how often each "
            "metric puts the near copy closer, as any listener would.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        # The chart's title is a label that wraps: a plot title is cut off in a narrow page.
        self.chart_title = QLabel("<b>Share of triplets ordered as a listener would</b> (95% CI)")
        self.chart_title.setTextFormat(Qt.RichText)
        self.chart_title.setWordWrap(True)
        # A splitter page does not give a wrapped label its height for its width: it keeps room
        # for two lines, on a row of its own (the page's whole width).
        self.chart_title.setMinimumHeight(2 * self.chart_title.fontMetrics().lineSpacing() + 2)
        self.chart_title.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        self.chart = pg.PlotWidget()
        self.chart.setLabel("left", "share", units="%")
        self.chart.setYRange(0, 105)
        self.chart.setMouseEnabled(x=False, y=False)
        bottom = self.chart.getAxis("bottom")
        bottom.setHeight(44)  # room for group names on two lines under any font
        font = bottom.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))  # long copy names side by side
        bottom.setStyle(tickFont=font)
        self.chart.setToolTip("Bars: share of triplets (clip, near copy, far copy) where the metric puts the "
                              "near copy closer; whiskers: bootstrap 95% interval over clips. Grey line: "
                              "chance (50%).")
        # The legend sits above the plot, where it never hides a bar.
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.RichText)
        self.legend.setWordWrap(True)
        self.legend_names: list[str] = []

        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)

        # Beside the main window's docks the page gets little more than 500 px: the run controls
        # take one row, the chart's own choice sits with its title and legend above it.
        top = QHBoxLayout()
        top.addWidget(self.clips_box)
        top.addWidget(self.seed_box)
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        top.addStretch(1)
        bars = QHBoxLayout()
        bars.addWidget(QLabel("Bars"))
        bars.addWidget(self.group_box)
        bars.addStretch(1)
        chart_page = QWidget()
        self.chart_page = chart_page
        chart_lay = QVBoxLayout(chart_page)
        chart_lay.setContentsMargins(0, 0, 0, 0)
        chart_lay.addWidget(self.chart_title)
        chart_lay.addLayout(bars)
        chart_lay.addWidget(self.legend)
        chart_lay.addWidget(self.chart, 1)
        self.chart.setMinimumHeight(160)
        # Taller bars read no better; a big screen gives the room to the table instead.
        self.chart.setMaximumHeight(480)
        self.table.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.splitter = _Splitter(Qt.Vertical, self._on_splitter_resized)
        self.splitter.addWidget(chart_page)
        self.splitter.addWidget(self.table)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self._split_by_hand = False  # once the user drags the splitter, resizing keeps their split
        self.splitter.splitterMoved.connect(self._on_splitter_moved)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.splitter, 1)
        lay.addStretch(0)  # what a big screen leaves over, below the table
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.group_box.currentIndexChanged.connect(lambda _: self._draw_chart())
        self._draw_chart()

    # -- running ------------------------------------------------------------
    def set_library(self, path: str | None) -> None:
        if path != self.library_path:
            self.cancel()
            self.report = None
            self.table.setRowCount(0)
            self._draw_chart()
        self.library_path = path

    def busy(self) -> bool:
        return self._task is not None

    def run(self) -> QtTask | None:
        """Start the probe in the background (None when there is no library or one is running)."""
        if self.library_path is None or self._task is not None:
            return None
        task = QtTask(compute_probe, self.library_path, self.clips_box.value(), self.seed_box.value())
        task.signals.progress.connect(self._on_progress)
        task.signals.finished.connect(self._on_finished)
        task.signals.failed.connect(self._on_failed)
        task.signals.cancelled.connect(self._on_cancelled)
        self._task = task
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setFormat("%v / %m measurements")
        self.progress.setMaximum(0)  # busy until the first report gives the total
        self.status.setText(f"Rendering copies of {self.clips_box.value()} clips and measuring every metric…")
        self.runner.start(task)
        return task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.status.setText("Cancelling…")

    def _done(self) -> None:
        self._task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)

    def _on_failed(self, message: str, _tb: str) -> None:
        self._done()
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText(f"Cannot run the probe: {message}")

    def _on_cancelled(self) -> None:
        self._done()
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText("Probe cancelled.")

    def _on_finished(self, report: dict) -> None:
        self._done()
        self.show_report(report)

    # -- showing ------------------------------------------------------------
    def show_report(self, report: dict) -> None:
        """Fill the headline, chart and table from a probe report."""
        self.report = report
        self.progress.setValue(self.progress.maximum())
        self.progress.setFormat("%v / %m measurements, done")
        extra = "".join(f"<br>left out: {x['name']}: {x['reason']}" for x in report.get("skipped", ()))
        if report.get("failures"):
            extra += f"<br>{len(report['failures'])} copies could not be rendered; their triplets are left out."
        self.status.setText(f"<b>{_escape(report['headline'])}</b><br>Copies in {_escape(report['out_dir'])}"
                            + extra)
        self._fill_table()
        self._draw_chart()

    def _fill_table(self) -> None:
        rep = self.report
        near = [v["name"] for v in rep["variants"]["near"]]
        far = [v["name"] for v in rep["variants"]["far"]]
        heads = ["#", "metric", "overall\n(95% CI)", "one\nthreshold"] + [_two_lines(f"near: {n}") for n in near] \
            + [_two_lines(f"far: {f}") for f in far]
        self.table.clear()
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)
        self.table.setRowCount(len(rep["ranking"]))
        baselines = set(rep.get("baselines", ()))
        for i, m in enumerate(rep["ranking"]):
            s = rep["summary"][m]
            o, sep = s["overall"], s["separation"]
            medians = ", ".join(f"{k} {_num(v)}" for k, v in s["median_distance"].items())
            cells = [str(i + 1), m + (" (baseline)" if m in baselines else ""),
                     f"{o['share']:.2f}  [{o['ci'][0]:.2f}, {o['ci'][1]:.2f}]",
                     f"{sep['share']:.2f}"]
            cells += [f"{s['by_near'][n]['share']:.2f}" for n in near]
            cells += [f"{s['by_far'][f]['share']:.2f}" for f in far]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j >= 2:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                    value = o["share"] if j == 2 else sep["share"] if j == 3 else float(text)
                    item.setBackground(_shade(value))
                item.setToolTip(f"{m}: median distance to the clip: {medians}")
                self.table.setItem(i, j, item)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.resizeRowsToContents()
        # As tall as its rows (up to 10, then it scrolls), never shorter than 3 of them: the chart
        # takes the rest, and the splitter hands the table more when asked.
        self.table.setMaximumHeight(self._table_height(10))
        self.table.setMinimumHeight(self._table_height(3))
        self._size_splitter()
        self.table.setToolTip("Share of triplets ordered as a listener would, overall and per copy; "
                              "'one threshold': near copies of one clip vs far copies of any clip.")

    def _table_height(self, rows: int) -> int:
        """Pixels that show the header and the first ``rows`` rows (and a sideways scroll bar)."""
        t = self.table
        shown = min(t.rowCount(), rows)
        row = t.rowHeight(0) if t.rowCount() else t.verticalHeader().defaultSectionSize()
        return (t.horizontalHeader().sizeHint().height() + 2 * t.frameWidth() + row * max(shown, 1)
                + t.horizontalScrollBar().sizeHint().height() + 2)

    def _on_splitter_moved(self, *_args) -> None:
        self._split_by_hand = True

    def _on_splitter_resized(self) -> None:
        # The headline's wrap or the window's size changed the room: share it again.
        if getattr(self, "report", None) is not None and not self._split_by_hand:
            QTimer.singleShot(0, self._size_splitter)

    def _size_splitter(self) -> None:
        """Every row of the table (up to 10) in view while the chart keeps a readable height."""
        total = sum(self.splitter.sizes()) or self.splitter.height()
        if total <= 0:
            return
        chart_page = self.splitter.widget(0)
        # The chart's readable least: its labels plus 200 px of bars.
        labels = chart_page.minimumSizeHint().height() - self.chart.minimumHeight()
        readable = labels + 200
        # No taller than the capped chart and its labels: on a big screen the room left over stays
        # below the table, not between the labels or between the chart and the table.
        chart_page.setMaximumHeight(labels + self.chart.maximumHeight())
        table = min(self.table.maximumHeight(), max(self.table.minimumHeight(), total - readable))
        self.splitter.setSizes([total - table, table])

    def _draw_chart(self) -> None:
        self.chart.clear()
        self.legend.clear()
        self.legend_names = []
        rep = self.report
        self.chart.addItem(pg.InfiniteLine(pos=50, angle=0, pen=pg.mkPen((160, 160, 160), width=1,
                                                                          style=Qt.DashLine)))
        if not rep:
            self.chart.getAxis("bottom").setTicks([[]])
            self.chart.setXRange(0, 1)
            return
        key = self.group_box.currentData() or "by_near"
        side = "near" if key == "by_near" else "far"
        groups = ["overall"] + [v["name"] for v in rep["variants"][side]]
        metrics = rep["ranking"]
        width = 0.8 / len(metrics)
        for k, m in enumerate(metrics):
            s = rep["summary"][m]
            cells = [s["overall"]] + [s[key][g] for g in groups[1:]]
            y = np.array([100 * c["share"] for c in cells])
            lo = np.array([100 * c["ci"][0] for c in cells])
            hi = np.array([100 * c["ci"][1] for c in cells])
            x = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
            colour = _COLOURS[k % len(_COLOURS)]
            bars = pg.BarGraphItem(x=x, height=y, width=0.9 * width, brush=pg.mkBrush(*colour),
                                   pen=pg.mkPen(None))
            self.chart.addItem(bars)
            self.legend_names.append(m)
            self.chart.addItem(pg.ErrorBarItem(x=x, y=y, bottom=y - lo, top=hi - y, beam=0.25 * width,
                                               pen=pg.mkPen((40, 40, 40) if _light() else "w", width=1.2)))
        baselines = set(rep.get("baselines", ()))
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(
            f'<span style="color: rgb{_COLOURS[k % len(_COLOURS)]}; font-size: large">&#9632;</span>&nbsp;'
            f'{_escape(m)}{" (baseline)" if m in baselines else ""}' for k, m in enumerate(metrics)))
        self.chart.getAxis("bottom").setTicks([[(i, _two_lines(g)) for i, g in enumerate(groups)]])
        self.chart.setXRange(-0.5, len(groups) - 0.5, padding=0)
        self.chart.setYRange(0, 105, padding=0)


def _light() -> bool:
    return pg.getConfigOption("background") in ("w", (255, 255, 255), "white")


def _shade(share: float) -> QColor:
    """Green at 1, through neutral at 0.75, to red at 0.5 and below (translucent: any theme)."""
    t = float(np.clip((share - 0.5) / 0.5, 0.0, 1.0))
    if t >= 0.5:
        return QColor(0, 160, 0, int(120 * (t - 0.5) * 2))
    return QColor(220, 0, 0, int(120 * (0.5 - t) * 2))


def _two_lines(text: str) -> str:
    """``text`` broken at the space nearest its middle (narrower table columns)."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return text
    i = min(spaces, key=lambda k: abs(k - len(text) / 2))
    return text[:i] + "\n" + text[i + 1:]


def _num(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
