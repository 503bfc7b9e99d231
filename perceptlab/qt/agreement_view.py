"""The agreement report: does each metric pick what listeners picked?

Draws what :func:`perceptlab.analysis.agreement.agreement_report` computes
(the same report as ``perceptlab agreement``): for triplet sessions, each
metric's agreement with the listeners with its bootstrap 95% interval, and
the inter-listener agreement as the ceiling; for MUSHRA sessions (or an
external ratings CSV), each metric's distance against the mean score per
condition with the fitted third-order monotonic mapping (ITU-T P.1401), and
Pearson / Spearman / RMSE. Excluded listeners are listed.

A second page holds the metric probe (:mod:`perceptlab.qt.probe_view`):
the same question without listeners, on copies of the library's clips.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from perceptlab.library.store import Library
from perceptlab.qt.probe_view import QtProbeView
from perceptlab.qt.workers import QtTask, QtTaskRunner


def compute_report(library_path: str, session_ids: list[int] | None, ratings_csv: str | None,
                   progress=None, cancel=None) -> dict:
    from perceptlab.analysis.agreement import agreement_report
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.analysis.similarity import metric_names

    with Library(library_path) as lib:
        register_library_metrics(lib)
        return agreement_report(lib, session_ids, metric_names(None), ratings_csv=ratings_csv,
                                progress=progress, cancel=cancel)


class _QtPages(QTabWidget):
    """Tab pages whose height does not follow the widest page's height-for-width.

    The Listeners page's wrapping text asks for more height at the width it
    gets than the tab has at 1280 x 800; QTabWidget would pass that on for
    every page and make the whole tab scroll.
    """

    def hasHeightForWidth(self) -> bool:  # noqa: N802  (Qt's name)
        return False


class QtAgreementView(QWidget):
    """Agreement bars and metric-vs-score scatter plots."""

    def __init__(self, runner: QtTaskRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.library_path: str | None = None
        self.report: dict | None = None
        self._task: QtTask | None = None
        self.source_box = QComboBox()
        self.run_button = QPushButton("Analyse")
        self.csv_button = QPushButton("Ratings CSV…")
        self.status = QLabel("Analyse listening sessions, or load external ratings (reference,degraded,score[,listener])")
        self.status.setWordWrap(True)
        self.bars = pg.PlotWidget(title="Triplets: agreement with listeners (95% CI)")
        self.bars.setToolTip("Bars: share of trials where the metric picks what the listener picked, with "
                             "bootstrap 95% intervals. Dashed: listeners' agreement with each other (the "
                             "ceiling). Grey: chance (50%).")
        self.bars.setLabel("left", "agreement", units="%")
        self.scatter = pg.PlotWidget(title="MUSHRA: metric distance vs mean score")
        self.scatter.setLabel("left", "mean score")
        self.scatter_metric = QComboBox()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Sessions"))
        top.addWidget(self.source_box, 1)
        top.addWidget(self.run_button)
        top.addWidget(self.csv_button)
        plots = QHBoxLayout()
        plots.addWidget(self.bars, 1)
        right = QVBoxLayout()
        right.addWidget(self.scatter_metric)
        right.addWidget(self.scatter, 1)
        plots.addLayout(right, 1)
        listeners = QWidget()
        lay = QVBoxLayout(listeners)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.status)
        lay.addLayout(plots, 3)
        lay.addWidget(self.text, 1)
        # The probe needs no listener: the check to run before a listening test.
        self.probe = QtProbeView(runner)
        self.pages = _QtPages()
        self.pages.setDocumentMode(True)
        self.pages.addTab(listeners, "Listeners")
        self.pages.addTab(self.probe, "Metric probe")
        self.pages.setTabToolTip(1, "Near-inaudible vs clearly audible copies of library clips: which metric "
                                    "orders them as a listener would (perceptlab probe)")
        outer = QVBoxLayout(self)
        outer.addWidget(self.pages)
        self.run_button.clicked.connect(lambda: self.analyse())
        self.csv_button.clicked.connect(self._on_csv_clicked)
        self.scatter_metric.currentIndexChanged.connect(lambda _: self._draw_scatter())

    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.probe.set_library(path)
        self.refresh_sessions()

    def refresh_sessions(self) -> None:
        from perceptlab.listening.session import list_sessions

        self.source_box.clear()
        self.source_box.addItem("All sessions", None)
        if self.library_path is None:
            return
        with Library(self.library_path) as lib:
            for info in list_sessions(lib):
                self.source_box.addItem(f"#{info.id} {info.design} · {info.listener} · "
                                        f"{info.n_answered}/{info.n_trials}", [info.id])

    def analyse(self, ratings_csv: str | None = None) -> QtTask | None:
        if self.library_path is None:
            return None
        ids = None if ratings_csv else self.source_box.currentData()
        self.status.setText("Computing each metric's distances and the agreement statistics…")
        task = QtTask(compute_report, self.library_path, ids, ratings_csv)
        task.signals.finished.connect(self._on_report)
        task.signals.failed.connect(lambda msg, _tb: self.status.setText(f"Cannot analyse: {msg}"))
        self._task = task
        self.runner.start(task)
        return task

    def _on_csv_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "External ratings", "", "CSV (*.csv)")
        if path:
            self.analyse(ratings_csv=path)

    def _on_report(self, report: dict) -> None:
        from perceptlab.analysis.agreement import report_text

        self.report = report
        self.text.setPlainText(report_text(report))
        self._draw_bars()
        mushra = report.get("mushra") or report.get("ratings")
        self.scatter_metric.blockSignals(True)
        self.scatter_metric.clear()
        if mushra:
            for m in mushra["plot"]["scatter"]:
                self.scatter_metric.addItem(m)
        self.scatter_metric.blockSignals(False)
        self._draw_scatter()
        parts = []
        for key in ("triplet", "mushra", "ratings"):
            rep = report.get(key)
            if rep and rep.get("excluded_listeners"):
                names = ", ".join(e["listener"] for e in rep["excluded_listeners"])
                parts.append(f"{key}: excluded listeners {names}")
        self.status.setText("; ".join(parts) or "Report ready")

    def _draw_bars(self) -> None:
        self.bars.clear()
        trip = (self.report or {}).get("triplet")
        if not trip:
            return
        bars = trip["plot"]["bars"]
        x = np.arange(len(bars))
        y = np.array([100 * (b["agreement"] or 0) for b in bars])
        self.bars.addItem(pg.BarGraphItem(x=x, height=y, width=0.6, brush=pg.mkBrush(70, 130, 180)))
        lo = np.array([100 * (b["ci_low"] if b["ci_low"] is not None else b["agreement"] or 0) for b in bars])
        hi = np.array([100 * (b["ci_high"] if b["ci_high"] is not None else b["agreement"] or 0) for b in bars])
        self.bars.addItem(pg.ErrorBarItem(x=x, y=y, bottom=y - lo, top=hi - y, beam=0.2,
                                          pen=pg.mkPen("w", width=1.5)))
        ceiling = trip["plot"].get("ceiling")
        if ceiling and ceiling.get("agreement") is not None:
            self.bars.addItem(pg.InfiniteLine(pos=100 * ceiling["agreement"], angle=0,
                                              pen=pg.mkPen((255, 200, 0), style=pg.QtCore.Qt.DashLine)))
        self.bars.addItem(pg.InfiniteLine(pos=50, angle=0, pen=pg.mkPen((160, 160, 160), width=1)))
        self.bars.getAxis("bottom").setTicks([[(i, b["metric"]) for i, b in enumerate(bars)]])
        self.bars.setYRange(0, 100)
        self.bars.setXRange(-0.6, len(bars) - 0.4)

    def _draw_scatter(self) -> None:
        self.scatter.clear()
        mushra = (self.report or {}).get("mushra") or (self.report or {}).get("ratings")
        m = self.scatter_metric.currentText()
        if not mushra or not m:
            return
        data = mushra["plot"]["scatter"][m]
        self.scatter.addItem(pg.ScatterPlotItem(data["x"], data["y"], size=9, brush=pg.mkBrush(70, 130, 180)))
        if data["fit_x"]:
            self.scatter.plot(data["fit_x"], data["fit_y"], pen=pg.mkPen((255, 200, 0), width=2))
        stats = mushra["metrics"][m]
        self.scatter.setTitle(f"{m}: Pearson {_fmt(stats.get('pearson'))}, Spearman {_fmt(stats.get('spearman'))}, "
                              f"RMSE {_fmt(stats.get('rmse'), 1)}")
        self.scatter.setLabel("bottom", f"{m} distance")


def _fmt(v, digits: int = 2) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"
