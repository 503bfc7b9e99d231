"""The matrix view: each metric's distance matrix as a heatmap, sorted by label.

Clips are grouped by label with lines between the groups, so a metric that
separates the classes shows dark blocks on the diagonal. Hovering reads out
the pair and its distance; clicking a cell loads that pair as A and B. The
distances are whole-clip ones, each pair at its own compared width, as
``perceptlab matrix`` gives them (no time alignment: that is per pair, in the
compare panel); the baselines sit beside the perceptual metrics. A table
below gives Spearman's rank correlation between every two metrics' pair
distances, over the same clips.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceptlab.analysis.agreement_stats import label_order, matrix_rank_correlations
from perceptlab.library.store import Clip
from perceptlab.qt.analysis_state import QtLibraryAnalysis
from perceptlab.qt.workers import QtTask, QtTaskRunner

SCOPE_LIBRARY, SCOPE_SELECTION = "Whole library", "Selected clips"
#: Rows of the metric-vs-metric table shown without scrolling.
CORR_ROWS_SHOWN = 6


class QtMatrixView(QWidget):
    """Distance-matrix heatmap per metric, and metric-vs-metric rank correlations.

    Signals
    -------
    pair_clicked(object, object)
        The (row clip, column clip) of a clicked cell.
    """

    pair_clicked = Signal(object, object)

    def __init__(self, runner: QtTaskRunner, analysis: QtLibraryAnalysis, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.analysis = analysis
        self.selection: list[Clip] = []
        self._selection_matrices: dict[str, tuple[list[Clip], np.ndarray]] = {}
        self._task: QtTask | None = None
        self.clips: list[Clip] = []
        self.matrix: np.ndarray | None = None

        self.metric_names: list[str] = []  # the open library's, from refresh_metrics()
        self.metric_box = QComboBox()
        self.scope_box = QComboBox()
        self.scope_box.addItems([SCOPE_LIBRARY, SCOPE_SELECTION])
        self.compute_button = QPushButton("Compute")
        self.status = QLabel("")
        self.status.setWordWrap(True)  # a long status must not widen the dock
        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = self.graphics.addPlot()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("bottom")
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), width=12, interactive=False)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self._lines: list = []
        self.readout = QLabel("")
        self.corr_table = QTableWidget(0, 0)
        self.corr_table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.corr_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self._fit_corr_height()
        self.corr_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.corr_table.setToolTip("Spearman rank correlation between metrics' pair distances")

        top = QHBoxLayout()
        top.addWidget(QLabel("Metric"))
        top.addWidget(self.metric_box, 1)
        top.addWidget(self.scope_box)
        top.addWidget(self.compute_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.status)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(self.readout)
        corr_title = QLabel("Rank agreement between metrics (Spearman ρ over all pairs)")
        corr_title.setWordWrap(True)
        lay.addWidget(corr_title)
        lay.addWidget(self.corr_table)

        # The metric list is filled by refresh_metrics() once the registry is
        # loaded (off the GUI thread, see QtMainWindow), not here.
        self.compute_button.clicked.connect(self.compute)
        self.metric_box.currentIndexChanged.connect(lambda _: self.show_metric())
        self.scope_box.currentIndexChanged.connect(lambda _: self.show_metric())
        self.analysis.matrix_ready.connect(self._on_matrix_ready)
        self.analysis.matrix_failed.connect(lambda m, msg: self.status.setText(f"{m}: {msg}"))
        self.analysis.progress.connect(self._on_progress)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)

    def refresh_metrics(self, names: list[str]) -> None:
        """List the open library's metrics (``names``, from the metric registry)."""
        from perceptlab.metrics.registry import get_metric

        self.metric_names = list(names)
        current = self.metric_box.currentData()
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        for name in self.metric_names:
            self.metric_box.addItem(get_metric(name).display_name, name)
        idx = self.metric_box.findData(current)
        self.metric_box.setCurrentIndex(max(idx, 0))
        self.metric_box.blockSignals(False)

    def set_selection(self, clips: list[Clip]) -> None:
        """Clips for the 'Selected clips' scope (a table selection or a lasso on the map)."""
        self.selection = list(clips)
        self._selection_matrices.clear()
        if self.scope_box.currentText() == SCOPE_SELECTION:
            self.show_metric()

    def metric(self) -> str:
        return self.metric_box.currentData()

    def compute(self) -> None:
        """Compute every metric's matrix for the current scope, in the background."""
        if not self.metric_names:
            self.status.setText("The metrics are still loading; press Compute again in a moment")
            return
        if self.scope_box.currentText() == SCOPE_SELECTION:
            self._compute_selection(list(self.metric_names))
        else:
            for name in self.metric_names:
                self.analysis.request(name)
        self.show_metric()

    def _compute_selection(self, metrics: list[str]) -> None:
        from perceptlab.qt.analysis_state import _compute_matrix

        if len(self.selection) < 2:
            self.status.setText("Select at least 2 clips in the library (or lasso them on the map)")
            return
        if self._task is not None:
            self._task.cancel()
        ids = [c.id for c in self.selection]

        library_path = self.analysis.library_path

        def work(progress=None, cancel=None):
            shared: dict = {}  # the spectrogram metrics load the clips' images once
            return {m: _compute_matrix(library_path, m, ids, cancel=cancel, inputs_cache=shared) for m in metrics}

        task = QtTask(work)
        task.signals.finished.connect(self._on_selection_done)
        task.signals.failed.connect(lambda msg, _tb: self.status.setText(msg))
        self._task = task
        self.status.setText(f"Computing {len(metrics)} matrices for {len(ids)} clips…")
        self.runner.start(task)

    def _on_selection_done(self, result: dict) -> None:
        self._task = None
        self._selection_matrices = result
        self.show_metric()

    def _source(self) -> dict[str, tuple[list[Clip], np.ndarray]]:
        if self.scope_box.currentText() == SCOPE_SELECTION:
            return self._selection_matrices
        return {m: self.analysis.matrix(m) for m in self.metric_names if self.analysis.matrix(m)}

    def show_metric(self) -> None:
        src = self._source()
        got = src.get(self.metric())
        if got is None:
            self.image.clear()
            self.matrix, self.clips = None, []
            if not self.status.text().startswith("Computing"):
                self.status.setText("Press Compute to calculate the distance matrices")
            return
        clips, d = got
        order = label_order([c.label for c in clips])
        self.clips = [clips[i] for i in order]
        self.matrix = d[np.ix_(order, order)]
        off = self.matrix[np.triu_indices(len(self.matrix), 1)]
        levels = (float(off.min()), float(off.max())) if off.size else (0.0, 1.0)
        self.image.setImage(self.matrix.astype(np.float32), autoLevels=False, levels=levels)
        self.image.setRect(QRectF(0, 0, len(self.clips), len(self.clips)))
        self.colorbar.setLevels(levels)
        for line in self._lines:
            self.plot.removeItem(line)
        self._lines = []
        for i in range(1, len(self.clips)):
            if self.clips[i].label != self.clips[i - 1].label:
                for angle in (0, 90):
                    line = pg.InfiniteLine(pos=i, angle=angle, pen=pg.mkPen((255, 255, 255, 160), width=1))
                    self.plot.addItem(line)
                    self._lines.append(line)
        # Label names at the centre of each group, on the left axis.
        ticks, start = [], 0
        for i in range(1, len(self.clips) + 1):
            if i == len(self.clips) or self.clips[i].label != self.clips[start].label:
                ticks.append(((start + i) / 2, self.clips[start].label or "-"))
                start = i
        self.plot.getAxis("left").setTicks([ticks, []])
        self.plot.autoRange(padding=0.01)
        n_labels = len({c.label for c in self.clips})
        self.status.setText(f"{self.metric_box.currentText()}: {len(self.clips)} clips, {n_labels} labels, "
                            "whole clips, sorted by label (lines between labels)")
        self._fill_correlations(src)

    def _fill_correlations(self, src) -> None:
        from perceptlab.metrics.registry import get_metric

        mats = {m: d for m, (clips, d) in src.items()}
        names = list(mats)
        corr = matrix_rank_correlations(mats)
        self.corr_table.setRowCount(len(names))
        self.corr_table.setColumnCount(len(names))
        labels = [get_metric(n).display_name for n in names]
        # Column headers on two short lines: five or more metrics share a dock's width.
        self.corr_table.setHorizontalHeaderLabels([textwrap.fill(t, 8, break_long_words=False) for t in labels])
        self.corr_table.setVerticalHeaderLabels(labels)
        for col, text in enumerate(labels):
            self.corr_table.horizontalHeaderItem(col).setToolTip(text)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                v = 1.0 if a == b else corr.get((a, b), corr.get((b, a)))
                self.corr_table.setItem(i, j, QTableWidgetItem("" if v is None else f"{v:.3f}"))
        self._fit_corr_height()
        self.correlations = corr

    def _fit_corr_height(self) -> None:
        """As tall as its rows, up to :data:`CORR_ROWS_SHOWN` (a library with many encoders scrolls)."""
        rows = min(max(self.corr_table.rowCount(), 3), CORR_ROWS_SHOWN)
        t = self.corr_table
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + rows * t.verticalHeader().defaultSectionSize()
                         + 2 * t.frameWidth() + 2)

    def _on_matrix_ready(self, metric: str) -> None:
        if self.scope_box.currentText() == SCOPE_LIBRARY:
            self._refresh_when_visible()

    def _refresh_when_visible(self) -> None:
        # A hidden view (a background dock tab) redraws when it is next shown.
        if self.isVisible():
            self.show_metric()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if getattr(self, "_stale", False):
            self._stale = False
            self.show_metric()

    def _on_progress(self, metric: str, done: int, total: int) -> None:
        self.status.setText(f"Computing {metric} matrix… {done}/{total}")

    def _cell(self, scene_pos) -> tuple[int, int] | None:
        if self.matrix is None:
            return None
        p = self.plot.getViewBox().mapSceneToView(scene_pos)
        i, j = int(np.floor(p.y())), int(np.floor(p.x()))
        n = len(self.clips)
        return (i, j) if 0 <= i < n and 0 <= j < n else None

    def _on_mouse_moved(self, pos) -> None:
        cell = self._cell(pos)
        if cell is None:
            self.readout.setText("")
            return
        i, j = cell
        a, b = self.clips[i], self.clips[j]
        self.readout.setText(f"{a.name} ({a.label}) × {b.name} ({b.label}): {self.matrix[i, j]:.5f}")

    def _on_mouse_clicked(self, event) -> None:
        cell = self._cell(event.scenePos())
        if cell is not None:
            i, j = cell
            self.pair_clicked.emit(self.clips[i], self.clips[j])
