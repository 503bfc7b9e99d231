"""The compare panel: every metric's verdict on the A/B pair, and where it looks.

For the pair in slots A and B it shows each metric of the library (the
perceptual ones, the log-mel and MFCC statistics baselines beside them, the
library's encoders) with its distance and its percentile among all clip pairs
of the library (low percentile = unusually similar); a line saying what was
compared (whole clips, which seconds of each file after time alignment, the
width both were padded to); then a map of where the two compared images
differ: the dB difference, the 1 - SSIM map, or NLPD's error at one pyramid
level. The distances are :func:`perceptlab.analysis.similarity.pair_comparison`'s,
the numbers ``perceptlab distance`` prints.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceptlab.analysis.local_maps import local_maps
from perceptlab.analysis.similarity import PairComparison, Query, pair_comparison
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.qt.analysis_state import QtLibraryAnalysis
from perceptlab.qt.workers import QtTask, QtTaskRunner

#: A percentile cell while the library's distances are still being computed (fits the narrow column).
PENDING_PERCENTILE = "…"
PENDING_PERCENTILE_TIP = "Computing the library's distribution of pair distances…"
MAP_TITLES = {
    "difference": "A − B (dB)",
    "ssim": "1 − SSIM (finest scale)",
    **{f"nlpd-{k}": f"NLPD level {k} squared error" for k in range(1, 7)},
}

#: Rows of the distance table shown without scrolling.
TABLE_ROWS_SHOWN = 8
BASELINE_COLOUR = QColor(120, 120, 120)


def compare_pair(library_path: str, a: Clip, b: Clip, metrics: list[str] | None, config: FeatureConfig,
                 progress=None, cancel=None) -> dict:
    """Distances (default: every metric of the library) and local maps for one pair (worker thread).

    The spectrogram metrics compare the whole clips, time-aligned
    (:func:`pair_comparison`); the local maps are computed from the same two
    compared images. Vector metrics (the baselines, encoders) do not depend
    on the alignment, so each is computed on its own: one that cannot be
    computed for this library (a baseline in a one-clip library, an encoder
    whose embeddings are gone) is reported in ``errors`` instead of taking
    the other metrics down with it.
    """
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.metrics.registry import get_metric

    with Library(library_path) as lib:
        available = register_library_metrics(lib)
        qa, qb = Query(a.path, a.name, a), Query(b.path, b.name, b)
        metrics = list(metrics or available)
        images = [m for m in metrics if get_metric(m).input_kind != "vector"]
        comparison = pair_comparison(lib, qa, qb, images, config)
        found = dict(comparison.distances)
        errors: dict[str, str] = {}
        for m in metrics:
            if m in found:
                continue
            try:
                # No alignment: a vector metric compares whole-clip vectors.
                found[m] = pair_comparison(lib, qa, qb, [m], config, align=False).distances[m]
            except ValueError as exc:
                errors[m] = str(exc)
        distances = {m: found[m] for m in metrics if m in found}
    ia, ib = comparison.images
    return {"a": a, "b": b, "metrics": metrics, "distances": distances, "errors": errors,
            "comparison": comparison, "maps": local_maps(ia, ib, config)}


def _span(region) -> str:
    return f"{region[0]:.2f}–{region[1]:.2f} s"


def compared_text(comparison: PairComparison, config: FeatureConfig) -> str:
    """One line saying what the spectrogram metrics compared."""
    c = comparison
    what = "whole clips" if c.excerpt == "whole" else "centre excerpts"
    width_s = c.width_frames * config.seconds_per_frame()
    text = f"Compared: {what}, A {_span(c.region_a)}, B {_span(c.region_b)}"
    lag_ms = round(1000 * c.lag_s)
    if lag_ms > 0:
        text += f" (B lags A by {lag_ms} ms: aligned)"
    elif lag_ms < 0:
        text += f" (A lags B by {-lag_ms} ms: aligned)"
    longest = max(c.region_a[1] - c.region_a[0], c.region_b[1] - c.region_b[0])
    padded = c.excerpt == "whole" and width_s > longest + config.seconds_per_frame()
    text += f", width {width_s:.2f} s" + (" (silence-padded)" if padded else "")
    return text


def compared_tooltip(comparison: PairComparison, config: FeatureConfig) -> str:
    c = comparison
    lines = [
        "What the spectrogram metrics (MSE, NLPD, MS-SSIM) compared:",
        f"A: {_span(c.region_a)} of its file; B: {_span(c.region_b)} of its file.",
    ]
    if c.lag_s:
        lines.append(f"The two were time-aligned by cross-correlation (lag {1000 * c.lag_s:+.0f} ms): the "
                     "later clip's lead-in and the earlier clip's unmatched tail were left out.")
    else:
        lines.append("No time shift: the clips were compared from their starts (the alignment finds a "
                     "lag only for strongly correlated clips, within ±100 ms).")
    if c.excerpt == "whole":
        lines.append(f"Both images were padded with silence to {c.width_frames} frames "
                     f"({c.width_frames * config.seconds_per_frame():.2f} s), set by the longer clip.")
    lines.append("The baselines and encoder metrics compare whole-clip vectors (no alignment).")
    return "\n".join(lines)


class QtComparePanel(QWidget):
    """Distances and local maps for the A/B pair."""

    computed = Signal()

    NO_PAIR = "Choose A and B: select a clip and press Shift+B to make it B, then select A (or click a neighbour to load it as B)"
    #: The "Where they differ" colour bar with no pair shown (dB).
    EMPTY_LEVELS = (-20.0, 20.0)

    def __init__(self, runner: QtTaskRunner, analysis: QtLibraryAnalysis, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.analysis = analysis
        self.config = FeatureConfig()
        self.library_path: str | None = None
        self.result: dict | None = None
        self._task: QtTask | None = None
        self._marks: list = []

        self.title = QLabel(self.NO_PAIR)
        self.title.setWordWrap(True)
        self.compared_label = QLabel("")
        self.compared_label.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Metric", "Distance A–B", "Percentile"])
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.setToolTip("Percentile: share of all clip pairs in the library that are closer than A and B "
                              "(the library's pairs are whole clips too, not time-aligned). Grey rows are "
                              "baselines: a perceptual metric earns its cost where it beats them.")
        self._fit_table_height()
        self.map_box = QComboBox()
        for key, title in MAP_TITLES.items():
            self.map_box.addItem(title, key)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumHeight(150)
        self.plot = self.graphics.addPlot()
        self.plot.setLabel("bottom", "time in A", units="s")
        self.plot.setLabel("left", "mel band")
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=self.EMPTY_LEVELS, colorMap=pg.colormap.get("CET-D1"), width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)

        row = QHBoxLayout()
        row.addWidget(QLabel("Where they differ:"))
        row.addWidget(self.map_box, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.compared_label)
        lay.addWidget(self.table)
        lay.addLayout(row)
        lay.addWidget(self.graphics, 1)

        self.map_box.currentIndexChanged.connect(self._on_map_changed)
        self.analysis.matrix_ready.connect(self._on_matrix_ready)
        self._clear_map()

    def _fit_table_height(self) -> None:
        """As tall as its rows (up to :data:`TABLE_ROWS_SHOWN`; more scroll), so none hides behind the map."""
        rows = min(max(self.table.rowCount(), 3), TABLE_ROWS_SHOWN)
        row_height = self.table.verticalHeader().defaultSectionSize()
        height = self.table.horizontalHeader().sizeHint().height() + rows * row_height + 2 * self.table.frameWidth() + 2
        self.table.setFixedHeight(height)

    def _clear_map(self) -> None:
        """No pair yet: an empty map over a 5 s, all-bands frame (not pyqtgraph's unit square), its
        colour bar back at the neutral dB scale (not the previous pair's levels)."""
        self.image.clear()
        self.colorbar.setColorMap(pg.colormap.get("CET-D1"))
        self.colorbar.setLevels(self.EMPTY_LEVELS)
        self.colorbar.setToolTip(MAP_TITLES["difference"])
        self._clear_marks()
        self.plot.getViewBox().setRange(xRange=(0.0, 5.0), yRange=(0.0, float(self.config.n_mels)), padding=0)

    def _clear_marks(self) -> None:
        for item in self._marks:
            self.plot.removeItem(item)
        self._marks = []

    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.result = None
        self.table.setRowCount(0)
        self.compared_label.setText("")
        self._clear_map()

    def clear(self, message: str | None = None) -> None:
        """Show no pair: no distances, no map, ``message`` (default: how to choose a pair) as the title."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        had = self.result is not None
        self.result = None
        self.table.setRowCount(0)
        self._fit_table_height()
        self.compared_label.setText("")
        self.compared_label.setToolTip("")
        self.title.setText(message or self.NO_PAIR)
        self._clear_map()
        if had:
            self.computed.emit()  # the marks of the old pair go too

    def set_pair(self, a: Clip | None, b: Clip | None) -> None:
        """Compare ``a`` and ``b`` in the background (None clears; so does a clip that failed to import)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        failed = next((c for c in (a, b) if c is not None and not c.ok), None)
        if failed is not None:
            self.clear(f"Nothing to compare: {failed.name} failed to import ({failed.error or 'unknown reason'})")
            return
        if a is None or b is None or self.library_path is None:
            if self.result is not None and (a is None or b is None):
                self.clear()
            return
        self.title.setText(f"A: {a.name}   vs   B: {b.name}   (computing…)")
        self.compared_label.setText("")
        task = QtTask(compare_pair, self.library_path, a, b, None, self.config)
        task.signals.finished.connect(lambda res, t=task: self._on_result(t, res))
        task.signals.failed.connect(lambda msg, _tb, t=task: self._on_failed(t, msg))
        self._task = task
        self.runner.start(task)

    def values(self) -> dict[str, float]:
        """The distances on display, by metric name."""
        return dict(self.result["distances"]) if self.result else {}

    def comparison(self) -> PairComparison | None:
        """What the distances on display compared (regions, lag, width)."""
        return self.result["comparison"] if self.result else None

    def compared_region(self, slot: str, a: Clip | None, b: Clip | None) -> tuple[tuple[float, float], str] | None:
        """((start, end) seconds of ``slot``'s clip that were compared, a caption), or None.

        None unless the result on display is for exactly this pair and no
        newer comparison is under way.
        """
        if (not self.result or self._task is not None or a is None or b is None or slot not in ("A", "B")
                or (self.result["a"].id, self.result["b"].id) != (a.id, b.id)):
            return None
        c = self.result["comparison"]
        region = c.region_a if slot == "A" else c.region_b
        # Short: it shares a line with the spectrogram's controls.
        if c.excerpt != "whole":
            what = "centre excerpt"
        elif c.lag_s:
            what = f"lag {1000 * c.lag_s:+.0f} ms"
        else:
            what = "whole clip"
        text = f"compared with {'B' if slot == 'A' else 'A'}: {_span(region)} ({what})"
        return tuple(region), text

    def current_map(self) -> np.ndarray | None:
        if not self.result:
            return None
        return self.result["maps"][self.map_box.currentData()]

    # -- slots ------------------------------------------------------------------------
    def _on_failed(self, task: QtTask, message: str) -> None:
        if task is self._task:
            self._task = None
            self.title.setText(f"Cannot compare: {message}")

    def _on_result(self, task: QtTask, result: dict) -> None:
        if task is not self._task:
            return
        self._task = None
        self.result = result
        for m in result["distances"]:  # the library distributions behind the percentiles
            self.analysis.request(m)
        a, b = result["a"], result["b"]
        self.title.setText(f"A: {a.name} ({a.label or '-'})   vs   B: {b.name} ({b.label or '-'})")
        self.compared_label.setText(compared_text(result["comparison"], self.config))
        self.compared_label.setToolTip(compared_tooltip(result["comparison"], self.config))
        self._fill_table()
        self._on_map_changed()
        self.computed.emit()

    def _fill_table(self) -> None:
        from perceptlab.metrics.registry import get_metric

        d, errors = self.result["distances"], self.result.get("errors", {})
        names = [m for m in self.result.get("metrics", d) if m in d or m in errors]
        self.table.setRowCount(len(names))
        italic = QFont(self.table.font())
        italic.setItalic(True)
        for row, name in enumerate(names):
            m = get_metric(name)
            baseline = bool(m.params.get("baseline", False))
            item = QTableWidgetItem(m.display_name + ("  (baseline)" if baseline else ""))
            item.setToolTip(m.description)
            item.setData(Qt.UserRole, name)
            self.table.setItem(row, 0, item)
            if name in errors:
                value_cell = QTableWidgetItem("—")
                value_cell.setToolTip(errors[name])
                cell = QTableWidgetItem("unavailable")
                cell.setToolTip(errors[name])
            else:
                value = d[name]
                value_cell = QTableWidgetItem(f"{value:.6f}")
                pct = self.analysis.percentile(name, value)
                cell = QTableWidgetItem(PENDING_PERCENTILE if pct is None else f"{pct:5.1f} %")
                if pct is None:  # the column is narrow: the whole sentence in the tooltip
                    cell.setToolTip(PENDING_PERCENTILE_TIP)
                else:
                    cell.setToolTip(f"{pct:.1f}% of the library's clip pairs are closer than A and B "
                                    f"under {m.display_name}")
            self.table.setItem(row, 1, value_cell)
            self.table.setItem(row, 2, cell)
            if baseline:
                for col in range(3):
                    self.table.item(row, col).setForeground(QBrush(BASELINE_COLOUR))
                    self.table.item(row, col).setFont(italic)
        self._fit_table_height()

    def _on_matrix_ready(self, _metric: str) -> None:
        if self.result:
            self._fill_table()

    def _on_map_changed(self, *_):
        m = self.current_map()
        if m is None:
            return
        key = self.map_box.currentData()
        if key == "difference":
            lim = float(max(np.abs(m).max(), 1.0))
            self.colorbar.setColorMap(pg.colormap.get("CET-D1"))
            levels = (-lim, lim)
        else:
            self.colorbar.setColorMap(pg.colormap.get("magma"))
            levels = (0.0, float(max(m.max(), 1e-6)))
        self.image.setImage(m, autoLevels=False, levels=levels)
        self.colorbar.setLevels(levels)
        # x in A's seconds: the compared images start at A's compared region.
        c = self.result["comparison"]
        spf = self.config.seconds_per_frame()
        start = float(c.region_a[0])
        self.image.setRect(QRectF(start, 0, m.shape[1] * spf, m.shape[0]))
        # Dark marks on the diverging map (white at 0), light ones on magma (black at 0).
        self._mark_padding(c, start, (20, 20, 20) if key == "difference" else (235, 235, 235))
        self.plot.getViewBox().autoRange(padding=0)
        self.colorbar.setToolTip(MAP_TITLES[key])  # the box above names the map: no title over it

    def _mark_padding(self, c: PairComparison, start: float, colour: tuple) -> None:
        """Where each clip's sound ends inside the compared width (after it: silence padding)."""
        self._clear_marks()
        if c.excerpt != "whole":
            return
        spf = self.config.seconds_per_frame()
        width_s = c.width_frames * spf
        fill = tuple(255 - v for v in colour) + (190,)
        for name, region, at in (("A", c.region_a, 0.92), ("B", c.region_b, 0.75)):
            end = region[1] - region[0]
            if end < width_s - spf:
                line = pg.InfiniteLine(pos=start + end, angle=90, movable=False,
                                       pen=pg.mkPen(colour, width=1.5, style=Qt.DashLine),
                                       label=f"{name} ends", labelOpts={"position": at, "color": colour,
                                                                        "fill": fill, "anchors": [(1, 0.5), (1, 0.5)]})
                line.setToolTip(f"{name}'s sound ends here; the rest of the compared width is silence padding")
                self.plot.addItem(line, ignoreBounds=True)
                self._marks.append(line)
