"""Evaluation from the GUI: ``perceptlab evaluate`` as a background job, and its report.

The job runs in a separate process (QProcess) because the train-config mode
trains encoders, and training never runs inside the GUI process. When it
ends, the view loads ``report.json`` from the output folder and shows the
table (sorted by weighted F1), the verdict on the paper's claim with its
warnings, and the chart: the same bars as the report's ``chart.png``
(:func:`perceptlab.analysis.evaluate.chart.chart_rows`), drawn here with
pyqtgraph from the report's numbers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QProcess, Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceptlab.analysis.evaluate.chart import KIND_COLORS, OTHER_COLOR, chart_rows

SHIPPED_MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
#: What the chart's place says before there is a report to draw.
NO_CHART = ("No report yet. Press Run evaluation: the chart of each method's weighted F1 "
            "(mean ± std over folds) appears here when it ends.")
RUNNING_CHART = "Evaluating… the chart of each method's weighted F1 appears here when the report is written."


class _QtShareSplitter(QSplitter):
    """A splitter that asks for no more than its minimum: inside the page's scroll area it then
    shares the window's height among the table, chart and log instead of growing past it."""

    def sizeHint(self):  # noqa: N802 (Qt's name)
        return self.minimumSizeHint()


class QtEvaluationView(QWidget):
    """Run an evaluation and show its report."""

    #: How long a cancelled evaluation has to stop before it is killed, in milliseconds.
    CANCEL_KILL_MS = 5000

    def __init__(self, parent=None):
        super().__init__(parent)
        self.library_path: str | None = None
        self.process: QProcess | None = None
        self.out_dir: Path | None = None
        self.report = None
        self.cancelled = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

        self.mode_box = QComboBox()
        self.mode_box.addItem("Shipped general encoders (trained on other recordings)", "checkpoints")
        self.mode_box.addItem("Train an encoder per fold (honest, slow)", "train")
        # The long item texts must not set the tab's minimum width (the full text is in the tooltip).
        self.mode_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.mode_box.setMinimumContentsLength(18)
        self.mode_box.setToolTip("Shipped general encoders (trained on other recordings), or train an encoder "
                                 "per fold on that fold's training clips only (honest, slow)")
        self.folds_box = QSpinBox()
        self.folds_box.setRange(2, 20)
        self.folds_box.setValue(5)
        self.folds_box.setPrefix("folds ")
        self.epochs_box = QSpinBox()
        self.epochs_box.setRange(1, 1000)
        self.epochs_box.setValue(20)
        self.epochs_box.setPrefix("epochs ")
        self.run_button = QPushButton("Run evaluation")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("Compares k-NN on metric distances with logistic regression on encoder "
                             "embeddings (the paper's claim), with grouped, stratified folds.")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["#", "method", "weighted F1", "accuracy", "macro F1", "parameters"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        # Every column as wide as its header and cells: in a narrow tab the table scrolls sideways
        # instead of cutting "parameters" short (a stretched last column gets what is left, or less).
        for col in range(self.table.columnCount()):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        header.setStretchLastSection(False)
        # Horizontal bars, best method on top: clip-level weighted F1, whiskers +- one std over folds.
        self.chart = pg.PlotWidget(title="Weighted F1 per clip (mean ± std over folds)")
        self.chart.setMenuEnabled(False)
        self.chart.setMouseEnabled(x=False, y=False)
        self.chart.hideButtons()
        self.chart.getViewBox().invertY(True)
        self.chart.showGrid(x=True, y=False, alpha=0.25)
        self.chart.setLabel("bottom", "weighted F1")
        self.chart.setXRange(0, 1.15, padding=0)
        self.chart.setMinimumHeight(150)
        # Before a report: a sentence, not empty axes (pyqtgraph's 0..1, upside down, with a grid).
        self.chart_empty = QLabel(NO_CHART)
        self.chart_empty.setWordWrap(True)
        self.chart_empty.setAlignment(Qt.AlignCenter)
        self.chart_empty.setMargin(16)
        self.chart_empty.setMinimumHeight(150)
        self.chart_stack = QStackedWidget()
        self.chart_stack.addWidget(self.chart_empty)
        self.chart_stack.addWidget(self.chart)
        self.bars: pg.BarGraphItem | None = None
        self.whiskers: pg.ErrorBarItem | None = None
        self.value_labels: list[pg.TextItem] = []
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)

        # Two rows: the tab is often narrow beside the docks.
        top = QVBoxLayout()
        top.addWidget(self.mode_box)
        row = QHBoxLayout()
        row.addWidget(self.folds_box)
        row.addWidget(self.epochs_box)
        row.addStretch(1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        top.addLayout(row)
        # Stacked, not side by side, for the same reason.
        body = _QtShareSplitter(Qt.Vertical)
        body.setChildrenCollapsible(False)
        for w, stretch in ((self.table, 3), (self.chart_stack, 3), (self.log, 1)):
            body.addWidget(w)
            body.setStretchFactor(body.count() - 1, stretch)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.status)
        lay.addWidget(body, 1)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.mode_box.currentIndexChanged.connect(lambda _: self.epochs_box.setEnabled(self.mode() == "train"))
        self.epochs_box.setEnabled(False)
        self.clear_chart()

    def mode(self) -> str:
        return self.mode_box.currentData()

    def set_library(self, path: str | None) -> None:
        self.library_path = path

    def arguments(self, extra: list[str] | None = None) -> list[str]:
        """The ``perceptlab evaluate`` arguments for the form."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out_dir = Path(self.library_path).parent / "evaluations" / f"{self.mode()}-{stamp}"
        args = ["-m", "perceptlab.cli", "evaluate", "--library", str(self.library_path),
                "--folds", str(self.folds_box.value()), "--out", str(self.out_dir)]
        if self.mode() == "checkpoints":
            args += ["--checkpoints", *[str(p) for p in sorted(SHIPPED_MODELS.glob("general-*.pt"))]]
        else:
            config = Path(__file__).resolve().parents[2] / "training" / "configs" / "demo_nlpd.toml"
            args += ["--train-config", str(config), "--set", f"epochs={self.epochs_box.value()}"]
        return args + list(extra or [])

    def run(self, extra: list[str] | None = None) -> bool:
        if self.library_path is None or (self.process is not None and self.process.state() != QProcess.NotRunning):
            return False
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._on_output)
        self.process.finished.connect(self._on_finished)
        self.log.clear()
        self.table.setRowCount(0)
        self.clear_chart()
        self.report = None
        self.cancelled = False
        self.chart_empty.setText(RUNNING_CHART)
        self.process.start(sys.executable, self.arguments(extra))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Evaluating… (report in {self.out_dir})")
        return True

    def cancel(self) -> None:
        """Ask the evaluation to stop, without waiting for it: it is killed if it has not
        stopped after :attr:`CANCEL_KILL_MS`; its ``finished`` signal reports the end."""
        if self.process is None or self.process.state() == QProcess.NotRunning:
            return
        self.cancelled = True
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling the evaluation…")
        self.process.terminate()
        self._kill_timer.start(self.CANCEL_KILL_MS)

    def _kill(self) -> None:
        if self.process is not None and self.process.state() != QProcess.NotRunning:
            self.process.kill()

    def busy(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.NotRunning

    def _on_output(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        self.log.appendPlainText(text.rstrip("\n"))

    def _on_finished(self, code: int, _status) -> None:
        from perceptlab.analysis.evaluate import EvaluationReport

        self._kill_timer.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.chart_empty.setText(NO_CHART)
        if self.cancelled:
            self.cancelled = False
            self.status.setText("Evaluation cancelled")
            return
        if code != 0 or self.out_dir is None or not (self.out_dir / "report.json").exists():
            tail = "\n".join(self.log.toPlainText().strip().splitlines()[-3:])
            self.status.setText(f"The evaluation did not finish (exit status {code}). {tail}")
            return
        self.show_report(EvaluationReport.load(self.out_dir))

    def show_report(self, report) -> None:
        """Fill the table, verdict and chart from an :class:`EvaluationReport`."""
        self.report = report
        rows = report.table()
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = [str(r["rank"]), r["method"], f"{r['f1_weighted']:.3f} ± {r['f1_weighted_std']:.3f}",
                     f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}", f"{r['f1_macro']:.3f} ± {r['f1_macro_std']:.3f}",
                     str(r["params"] or "")]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(r["description"])
                self.table.setItem(i, j, item)
        claim = report.data["claim"]
        shown = report.warnings[:2]
        more = len(report.warnings) - len(shown)
        warn = "".join(f"<br>⚠ {w}" for w in shown) + (f"<br>⚠ … and {more} more warnings in report.md"
                                                          if more > 0 else "")
        self.status.setToolTip("\n".join(f"⚠ {w}" for w in report.warnings))
        self.status.setText(f"<b>Verdict on the paper's claim: {report.verdict}</b> — {claim.get('summary', '')}{warn}")
        self.draw_chart(report.data)

    def clear_chart(self) -> None:
        self.chart.clear()
        self.bars = self.whiskers = None
        self.value_labels = []
        self.chart.getAxis("left").setTicks([[]])
        self.chart_stack.setCurrentWidget(self.chart_empty)

    def draw_chart(self, data: dict) -> None:
        """Bars of the report's clip-level weighted F1 per method (mean over folds, best on top),
        whiskers of +- one std over folds, coloured by method kind."""
        self.clear_chart()
        rows = chart_rows(data)
        if not rows:
            self.chart_empty.setText("The report has no clip-level scores to chart.")
            return
        self.chart_stack.setCurrentWidget(self.chart)
        y = np.arange(len(rows), dtype=float)
        values = np.array([r["value"] for r in rows])
        errs = np.array([r["err"] for r in rows])
        brushes = [pg.mkBrush(*KIND_COLORS.get(r["kind"], OTHER_COLOR)) for r in rows]
        self.bars = pg.BarGraphItem(x0=np.zeros(len(rows)), y=y, width=values, height=0.7, brushes=brushes,
                                    pen=pg.mkPen(None))
        self.whiskers = pg.ErrorBarItem(x=values, y=y, left=errs, right=errs, beam=0.25,
                                        pen=pg.mkPen("w", width=1.5))
        self.chart.addItem(self.bars)
        self.chart.addItem(self.whiskers)
        for yi, v, e in zip(y, values, errs):
            label = pg.TextItem(f"{v:.3f}", anchor=(0, 0.5))
            label.setPos(min(v + e, 1.0) + 0.01, yi)
            self.chart.addItem(label)
            self.value_labels.append(label)
        self.chart.getAxis("left").setTicks([[(float(i), r["label"]) for i, r in enumerate(rows)]])
        self.chart.setTitle(f"Weighted F1 per clip (mean ± std over {data['config']['folds']} folds)")
        self.chart.setXRange(0, 1.15, padding=0)
        self.chart.setYRange(-0.6, len(rows) - 0.4, padding=0)
