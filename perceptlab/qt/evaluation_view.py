"""Evaluation from the GUI: ``perceptlab evaluate`` as a background job, and its report.

The job runs in a separate process (QProcess) because the train-config mode
trains encoders, and training never runs inside the GUI process. When it
ends, the view loads ``report.json`` from the output folder and shows the
table (sorted by weighted F1), the verdict on the paper's claim with its
warnings, and the chart the command drew.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QProcess, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

SHIPPED_MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"


class QtEvaluationView(QWidget):
    """Run an evaluation and show its report."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.library_path: str | None = None
        self.process: QProcess | None = None
        self.out_dir: Path | None = None
        self.report = None

        self.mode_box = QComboBox()
        self.mode_box.addItem("Shipped general encoders (trained on other recordings)", "checkpoints")
        self.mode_box.addItem("Train an encoder per fold (honest, slow)", "train")
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
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.chart = QLabel()
        self.chart.setAlignment(Qt.AlignCenter)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)

        top = QHBoxLayout()
        top.addWidget(self.mode_box, 1)
        top.addWidget(self.folds_box)
        top.addWidget(self.epochs_box)
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        body = QHBoxLayout()
        body.addWidget(self.table, 3)
        body.addWidget(self.chart, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.status)
        lay.addLayout(body, 3)
        lay.addWidget(self.log, 1)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.mode_box.currentIndexChanged.connect(lambda _: self.epochs_box.setEnabled(self.mode() == "train"))
        self.epochs_box.setEnabled(False)

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
        self.chart.clear()
        self.report = None
        self.process.start(sys.executable, self.arguments(extra))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Evaluating… (report in {self.out_dir})")
        return True

    def cancel(self) -> None:
        if self.process is not None and self.process.state() != QProcess.NotRunning:
            self.process.terminate()
            if not self.process.waitForFinished(5000):
                self.process.kill()

    def busy(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.NotRunning

    def _on_output(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        self.log.appendPlainText(text.rstrip("\n"))

    def _on_finished(self, code: int, _status) -> None:
        from perceptlab.analysis.evaluate import EvaluationReport

        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
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
        self.table.resizeColumnToContents(2)
        claim = report.data["claim"]
        warn = "".join(f"<br>⚠ {w}" for w in report.warnings[:4])
        self.status.setText(f"<b>Verdict on the paper's claim: {report.verdict}</b> — {claim.get('summary', '')}{warn}")
        chart = Path(self.out_dir or "") / "chart.png" if self.out_dir else None
        if chart is not None and chart.exists():
            pix = QPixmap(str(chart))
            self.chart.setPixmap(pix.scaledToWidth(min(pix.width(), 520), Qt.SmoothTransformation))
