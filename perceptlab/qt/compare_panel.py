"""The compare panel: every metric's verdict on the A/B pair, and where it looks.

For the pair in slots A and B it shows each registered metric's distance with
its percentile among all clip pairs of the library (low percentile = unusually
similar), then a map of where the two spectrograms differ: the dB difference,
the 1 - SSIM map, or NLPD's error at one pyramid level.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
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
from perceptlab.analysis.similarity import Query, pair_distances, query_image
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.qt.analysis_state import QtLibraryAnalysis
from perceptlab.qt.workers import QtTask, QtTaskRunner

MAP_TITLES = {
    "difference": "A − B (dB)",
    "ssim": "1 − SSIM (finest scale)",
    **{f"nlpd-{k}": f"NLPD level {k} squared error" for k in range(1, 7)},
}


def compare_pair(library_path: str, a: Clip, b: Clip, metrics: list[str] | None, config: FeatureConfig,
                 progress=None, cancel=None) -> dict:
    """Distances (default: every metric of the library) and local maps for one pair (worker thread)."""
    with Library(library_path) as lib:
        from perceptlab.analysis.similarity import register_library_metrics

        available = register_library_metrics(lib)
        qa, qb = Query(a.path, a.name, a), Query(b.path, b.name, b)
        metrics = metrics or available
        distances = pair_distances(lib, qa, qb, metrics, config)
        ia = query_image(lib, qa, config)[0, 0]
        ib = query_image(lib, qb, config)[0, 0]
    return {"a": a, "b": b, "distances": distances, "maps": local_maps(ia, ib, config)}


class QtComparePanel(QWidget):
    """Distances and local maps for the A/B pair."""

    computed = Signal()

    def __init__(self, runner: QtTaskRunner, analysis: QtLibraryAnalysis, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.analysis = analysis
        self.config = FeatureConfig()
        self.library_path: str | None = None
        self.result: dict | None = None
        self._task: QtTask | None = None

        self.title = QLabel("Choose clips for A and B (select a clip, then Shift+B or click a neighbour)")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Metric", "Distance A–B", "Percentile in library"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setMaximumHeight(170)
        self.table.setToolTip("Percentile: share of all clip pairs in the library that are closer than A and B")
        self.map_box = QComboBox()
        for key, title in MAP_TITLES.items():
            self.map_box.addItem(title, key)
        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = self.graphics.addPlot()
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setLabel("left", "mel band")
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(-20, 20), colorMap=pg.colormap.get("CET-D1"), width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)

        row = QHBoxLayout()
        row.addWidget(QLabel("Where they differ:"))
        row.addWidget(self.map_box, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.table)
        lay.addLayout(row)
        lay.addWidget(self.graphics, 1)

        self.map_box.currentIndexChanged.connect(self._on_map_changed)
        self.analysis.matrix_ready.connect(self._on_matrix_ready)
        self._clear_map()

    def _clear_map(self) -> None:
        """No pair yet: an empty map over a 5 s, all-bands frame (not pyqtgraph's unit square)."""
        self.image.clear()
        self.plot.getViewBox().setRange(xRange=(0.0, 5.0), yRange=(0.0, float(self.config.n_mels)), padding=0)

    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.result = None
        self.table.setRowCount(0)
        self._clear_map()

    def set_pair(self, a: Clip | None, b: Clip | None) -> None:
        """Compare ``a`` and ``b`` in the background (None clears)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if a is None or b is None or self.library_path is None:
            return
        self.title.setText(f"A: {a.name}   vs   B: {b.name}   (computing…)")
        task = QtTask(compare_pair, self.library_path, a, b, None, self.config)
        task.signals.finished.connect(lambda res, t=task: self._on_result(t, res))
        task.signals.failed.connect(lambda msg, _tb: self.title.setText(f"Cannot compare: {msg}"))
        self._task = task
        self.runner.start(task)

    def values(self) -> dict[str, float]:
        """The distances on display, by metric name."""
        return dict(self.result["distances"]) if self.result else {}

    def current_map(self) -> np.ndarray | None:
        if not self.result:
            return None
        return self.result["maps"][self.map_box.currentData()]

    # -- slots ------------------------------------------------------------------------
    def _on_result(self, task: QtTask, result: dict) -> None:
        if task is not self._task:
            return
        self._task = None
        self.result = result
        for m in result["distances"]:  # the library distributions behind the percentiles
            self.analysis.request(m)
        a, b = result["a"], result["b"]
        self.title.setText(f"A: {a.name} ({a.label or '-'})   vs   B: {b.name} ({b.label or '-'})")
        self._fill_table()
        self._on_map_changed()
        self.computed.emit()

    def _fill_table(self) -> None:
        from perceptlab.metrics.registry import get_metric

        d = self.result["distances"]
        self.table.setRowCount(len(d))
        for row, (name, value) in enumerate(d.items()):
            m = get_metric(name)
            item = QTableWidgetItem(m.display_name)
            item.setToolTip(m.description)
            item.setData(Qt.UserRole, name)
            self.table.setItem(row, 0, item)
            self.table.setItem(row, 1, QTableWidgetItem(f"{value:.6f}"))
            pct = self.analysis.percentile(name, value)
            text = "computing library distribution…" if pct is None else f"{pct:5.1f} %"
            cell = QTableWidgetItem(text)
            if pct is not None:
                cell.setToolTip(f"{pct:.1f}% of the library's clip pairs are closer than A and B under {m.display_name}")
            self.table.setItem(row, 2, cell)

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
        self.image.setRect(QRectF(0, 0, m.shape[1] * self.config.seconds_per_frame(), m.shape[0]))
        self.plot.getViewBox().autoRange(padding=0)
        self.plot.setTitle(MAP_TITLES[key])
