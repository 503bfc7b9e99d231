"""The embedding map: the library in two dimensions, coloured and shaped by label.

Sources: an encoder's clip embeddings (PCA or t-SNE), or any metric's
distance matrix (MDS). Hover a point to read its clip's name and label;
click it to select the clip in the library (the selected clip wears a
ring, kept across refits); hold Alt and hover to audition clips;
Shift+drag a lasso to send the enclosed clips to the matrix view. Clips
added after the map was fitted are placed with the fitted projection (see
:mod:`perceptlab.analysis.projection`); Refit builds a new map.

The legend is a side list (:class:`~perceptlab.qt.label_legend.QtLabelLegend`):
every label with its marker and clip count, filterable by typing, each with
a check box that shows or hides its points; colours and markers come from
:func:`~perceptlab.qt.label_legend.label_styles`, a distinct pair per label.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QPainterPath, QPolygonF
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from perceptlab.analysis.projection import Projection, fit_distance_map, fit_embedding_map
from perceptlab.library.store import Clip, Library
from perceptlab.qt.label_legend import QtLabelLegend, label_styles
from perceptlab.qt.workers import QtTask, QtTaskRunner

#: Marker size on the map, and the selected clip's ring.
POINT_SIZE, RING_SIZE = 11, 22
#: What the map needs before it can be drawn.
EMPTY_TEXT = ("No map yet.\n\nThe map places the library's clips by a metric's distances (MDS) or an "
              "encoder's embeddings (PCA, t-SNE). Import clips (File ▸ Import folder…, at least 3), "
              "choose a source above and press Refit.")
#: The first map of a library is drawn by itself once its sources are known, up to this many
#: clips: a PCA of embeddings takes well under a second at 2,000 clips, while MDS needs the
#: whole distance matrix (several seconds at 500), so larger maps wait for Refit.
AUTO_DRAW_MAX = {"vector": 2000, "matrix": 150}


def waiting_text(n_clips: int, source: str) -> str:
    """What the empty map says when the library has clips but no map is drawn yet."""
    if n_clips < 3:
        return EMPTY_TEXT
    return (f"No map yet.\n\n{n_clips:,} clips: press Refit to place them by {source} "
            "(or choose another source above).")


def compute_map(library_path: str, metric: str, method: str, fitted: Projection | None = None,
                fitted_ids: list[int] | None = None, seed: int = 0, progress=None, cancel=None) -> dict:
    """Fit a map (or extend a fitted one with new clips); runs in a worker thread.

    MDS places the clips by their distances: the library matrix (whole
    clips, each pair at its own width), and for clips added later their
    distances to the fitted clips by the same pair rule
    (:func:`cross_distances`). PCA and t-SNE (vector metrics only: encoder
    embeddings, the baselines' z-scored statistics) project the vectors.
    """
    from perceptlab.analysis.clip_inputs import metric_inputs
    from perceptlab.analysis.matrices import cross_distances, library_matrix
    from perceptlab.metrics.registry import get_metric

    if method != "mds" and get_metric(metric).input_kind != "vector":
        raise ValueError(f"{method}: projects vectors; {metric} compares spectrograms, use MDS of distances")
    with Library(library_path) as lib:
        from perceptlab.analysis.library_metrics import register_library_metrics

        register_library_metrics(lib)
        clips = lib.clips()
        if fitted is not None and fitted_ids:
            by_id = {c.id: c for c in clips}
            old = [by_id[i] for i in fitted_ids if i in by_id]
            new = [c for c in clips if c.id not in set(fitted_ids)]
            coords = fitted.coords[[fitted_ids.index(c.id) for c in old]]
            if new and old:
                if method == "mds":
                    # Columns follow the fitted items; a clip removed since the fit is never a neighbour.
                    d = np.full((len(new), len(fitted_ids)), np.inf)
                    d[:, [fitted_ids.index(c.id) for c in old]] = cross_distances(lib, metric, new, old,
                                                                                  cancel=cancel)
                    placed = fitted.place(distances=d)
                else:
                    placed = fitted.place(vectors=metric_inputs(lib, metric, new, cancel=cancel))
                coords = np.vstack([coords, placed])
            elif new:  # every fitted clip is gone: nothing to place against
                return compute_map(library_path, metric, method, seed=seed, progress=progress, cancel=cancel)
            return {"clips": old + new, "coords": coords, "projection": fitted, "placed": len(new),
                    "fitted_ids": fitted_ids, "metric": metric, "method": method}
        if method == "mds":
            clips, d = library_matrix(lib, metric, clips, cancel=cancel)
            proj = fit_distance_map(d, seed=seed)
        else:
            proj = fit_embedding_map(metric_inputs(lib, metric, clips, cancel=cancel), method, seed=seed)
    return {"clips": clips, "coords": proj.coords, "projection": proj, "placed": 0,
            "fitted_ids": [c.id for c in clips], "metric": metric, "method": method}


class _LassoViewBox(pg.ViewBox):
    """Shift+drag draws a free-hand lasso instead of panning."""

    def __init__(self, on_lasso, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_lasso = on_lasso
        self._points: list[QPointF] = []
        self.path_item = pg.PlotCurveItem(pen=pg.mkPen((255, 200, 0), width=1.5, style=Qt.DashLine))
        self.addItem(self.path_item, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == Qt.LeftButton and ev.modifiers() & Qt.ShiftModifier:
            ev.accept()
            if ev.isStart():
                self._points = [self.mapSceneToView(ev.buttonDownScenePos())]
            self._points.append(self.mapSceneToView(ev.scenePos()))
            xs = [p.x() for p in self._points]
            ys = [p.y() for p in self._points]
            self.path_item.setData(xs + xs[:1], ys + ys[:1])
            if ev.isFinish():
                self._on_lasso(list(self._points))
                self.path_item.setData([], [])
            return
        super().mouseDragEvent(ev, axis)


class QtMapView(QWidget):
    """The 2-D map of the library.

    Signals
    -------
    clip_clicked(object)
        Select this clip in the library.
    audition(object)
        Play this clip (Alt+hover).
    lasso_selected(list)
        Clips inside a lasso.
    """

    clip_clicked = Signal(object)
    audition = Signal(object)
    lasso_selected = Signal(list)

    def __init__(self, runner: QtTaskRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.library_path: str | None = None
        self.result: dict | None = None
        self.styles: dict[str, tuple] = {}
        self.selected_clip_id: int | None = None
        self._task: QtTask | None = None
        self._last_audition: int | None = None
        self._shown: np.ndarray = np.zeros(0, dtype=int)  # result indices of the drawn points

        self.source_box = QComboBox()
        # A narrow dock shows the start of a long metric name; the tooltip and the open list show it whole.
        self.source_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.source_box.setMinimumContentsLength(12)
        self.method_box = QComboBox()
        self.method_box.setSizeAdjustPolicy(QComboBox.AdjustToContents)  # "MDS of distances" whole
        self.refit_button = QPushButton("Refit")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.view_box = _LassoViewBox(self._on_lasso)
        self.plot_widget = pg.PlotWidget(viewBox=self.view_box)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.hideAxis("bottom")
        self.plot.hideAxis("left")
        self.scatter = pg.ScatterPlotItem(size=POINT_SIZE, pen=pg.mkPen(0, 0, 0, 120), hoverable=True,
                                          hoverPen=pg.mkPen(255, 255, 255, 220, width=2), tip=self._tip)
        self.plot.addItem(self.scatter)
        # The selected clip: a ring drawn over its marker, ignored by hover and click.
        self.ring = pg.ScatterPlotItem(size=RING_SIZE, symbol="o", pen=pg.mkPen(255, 221, 0, width=3),
                                       brush=None, tip=None)
        self.ring.setZValue(10)
        self.plot.addItem(self.ring)
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setMargin(24)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.plot_widget)
        self.legend = QtLabelLegend()
        self.legend.setMinimumWidth(150)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.stack)
        self.splitter.addWidget(self.legend)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.splitter.setSizes([400, 170])
        top = QHBoxLayout()
        top.addWidget(QLabel("Map of"))
        top.addWidget(self.source_box, 1)
        top.addWidget(self.method_box)
        top.addWidget(self.refit_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.splitter, 1)
        lay.addWidget(self.status)
        self.plot_widget.setToolTip("")
        self.stack.setToolTip("Hover: the clip's name and label. Click: select the clip. Alt+hover: listen. "
                              "Shift+drag: lasso clips into the matrix view.")
        self._show_empty(EMPTY_TEXT)

        self.source_box.currentIndexChanged.connect(self._on_source_changed)
        self.method_box.currentIndexChanged.connect(lambda _: self.refit())
        self.refit_button.clicked.connect(self.refit)
        self.scatter.sigClicked.connect(self._on_points_clicked)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.legend.visibility_changed.connect(self._on_visibility_changed)
        self.legend.label_activated.connect(self._on_label_activated)
        # Sources are listed by refresh_sources() once the registry is loaded.

    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.result = None
        self.scatter.clear()
        self.ring.clear()
        self._shown = np.zeros(0, dtype=int)
        self.legend.set_labels({}, {})
        self._show_empty(EMPTY_TEXT if path else "Open a library to see its map.")

    def refresh_sources(self, names: list[str]) -> None:
        """List the library's encoder embeddings first (PCA / t-SNE), then the spectrogram metrics
        (MDS), then the baselines (PCA / t-SNE of their statistics)."""
        from perceptlab.metrics.registry import get_metric

        def order(m) -> int:
            if m.params.get("baseline", False):
                return 2
            return 0 if m.input_kind == "vector" else 1

        current = self.source_box.currentData()
        self.source_box.blockSignals(True)
        self.source_box.clear()
        for m in sorted(map(get_metric, names), key=order):
            self.source_box.addItem(m.display_name, m.name)
        idx = self.source_box.findData(current)
        self.source_box.setCurrentIndex(max(idx, 0))
        self.source_box.blockSignals(False)
        widest = max((self.source_box.fontMetrics().horizontalAdvance(self.source_box.itemText(i))
                      for i in range(self.source_box.count())), default=0)
        self.source_box.view().setMinimumWidth(widest + 40)
        self.source_box.setToolTip(self.source_box.currentText())
        self._fill_methods()
        self._draw_first_map()

    def _draw_first_map(self) -> None:
        """Fit the first map of the library by itself when it is quick (see :data:`AUTO_DRAW_MAX`);
        otherwise say how many clips wait for Refit."""
        from perceptlab.metrics.registry import get_metric

        name = self.source_box.currentData()
        if self.result is not None or self._task is not None or self.library_path is None or name is None:
            return
        try:
            with Library(self.library_path) as lib:
                n = lib.count()
        except Exception:  # the window reports a library it cannot read; the map just waits
            return
        kind = "vector" if get_metric(name).input_kind == "vector" else "matrix"
        if 3 <= n <= AUTO_DRAW_MAX[kind]:
            self.refit()
        else:
            self._show_empty(waiting_text(n, self.source_box.currentText()))

    def _fill_methods(self) -> None:
        from perceptlab.metrics.registry import get_metric

        name = self.source_box.currentData()
        vector = name is not None and get_metric(name).input_kind == "vector"
        self.method_box.blockSignals(True)
        self.method_box.clear()
        if vector:
            self.method_box.addItem("PCA", "pca")
            self.method_box.addItem("t-SNE", "tsne")
        self.method_box.addItem("MDS of distances", "mds")
        self.method_box.blockSignals(False)

    def _on_source_changed(self, *_):
        self.source_box.setToolTip(self.source_box.currentText())
        self._fill_methods()
        self.refit()

    def refit(self) -> QtTask | None:
        """Fit a new map for the chosen source and method."""
        return self._start(fitted=None)

    def update_points(self) -> QtTask | None:
        """Add clips imported since the map was fitted, without refitting."""
        if self.result is None:
            return self.refit()
        return self._start(fitted=self.result)

    def _start(self, fitted: dict | None) -> QtTask | None:
        if self.library_path is None or self.source_box.currentData() is None:
            return None
        if self._task is not None:
            self._task.cancel()
        metric, method = self.source_box.currentData(), self.method_box.currentData()
        if fitted is not None and (fitted["metric"], fitted["method"]) != (metric, method):
            fitted = None
        self.status.setText(f"Computing the {self.method_box.currentText()} map…")
        if self.result is None:
            self._show_empty(f"Computing the {self.method_box.currentText()} map of "
                             f"{self.source_box.currentText()}…")
        task = QtTask(compute_map, self.library_path, metric, method,
                      None if fitted is None else fitted["projection"],
                      None if fitted is None else fitted["fitted_ids"])
        task.signals.finished.connect(lambda res, t=task: self._on_result(t, res))
        task.signals.failed.connect(lambda msg, _tb, t=task: self._on_failed(t, msg))
        self._task = task
        self.runner.start(task)
        return task

    def _on_failed(self, task: QtTask, message: str) -> None:
        if task is not self._task:
            return
        self._task = None
        self.status.setText(f"Cannot draw the map: {message}")
        if self.result is None:
            self._show_empty(f"Cannot draw the map: {message}\n\n{EMPTY_TEXT}")

    def _on_result(self, task: QtTask, result: dict) -> None:
        if task is not self._task:
            return
        self._task = None
        self.result = result
        clips = result["clips"]
        counts: dict[str, int] = {}
        for c in clips:
            counts[_label(c)] = counts.get(_label(c), 0) + 1
        self.styles = label_styles(counts)
        self.legend.set_labels(counts, self.styles)
        self._draw()
        self.stack.setCurrentWidget(self.plot_widget)
        self.plot.autoRange()
        placed = result["placed"]
        self.status.setText(f"{len(clips)} clips, {len(counts)} labels"
                            + (f" ({placed} placed into the fitted map)" if placed else ""))

    def _draw(self) -> None:
        """Draw the clips of the labels the legend shows, and the ring on the selected one."""
        if self.result is None:
            return
        clips, coords = self.result["clips"], self.result["coords"]
        hidden = self.legend.hidden_labels()
        self._shown = np.array([i for i, c in enumerate(clips) if _label(c) not in hidden], dtype=int)
        brushes = {lab: pg.mkBrush(*colour) for lab, (colour, _) in self.styles.items()}  # one per label
        labels = [_label(clips[i]) for i in self._shown]
        xy = np.asarray(coords, dtype=float)[self._shown].reshape(-1, 2)
        self.scatter.setData(x=xy[:, 0], y=xy[:, 1], data=self._shown,
                             brush=[brushes[lab] for lab in labels],
                             symbol=[self.styles[lab][1] for lab in labels])
        self._draw_ring()

    def _draw_ring(self) -> None:
        i = self.selected_index()
        if i is None or i not in set(self._shown.tolist()):
            self.ring.clear()
            return
        x, y = self.result["coords"][i]
        self.ring.setData([{"pos": (float(x), float(y))}])

    def _on_visibility_changed(self) -> None:
        self._draw()
        if self.result is not None:
            n, shown = len(self.result["clips"]), len(self._shown)
            hidden = len(self.legend.hidden_labels())
            self.status.setText(f"{n} clips, {len(self.styles)} labels" +
                                (f"; {shown} clips shown ({hidden} labels hidden)" if hidden else ""))

    def _on_label_activated(self, label: str) -> None:
        """Double-clicking a label in the legend shows that label alone, or every label again."""
        others = [lab for lab in self.legend.labels() if lab != label]
        alone = self.legend.hidden_labels() == set(others)
        self.legend.set_hidden(others, hidden=not alone)
        self.legend.set_hidden([label], hidden=False)

    def _show_empty(self, text: str) -> None:
        self.empty.setText(text)
        self.stack.setCurrentWidget(self.empty)

    # -- reading the map -------------------------------------------------------------
    def point_count(self) -> int:
        """Points drawn (the clips of the labels shown)."""
        return len(self.scatter.points())

    def shown_clips(self) -> list[Clip]:
        return [] if self.result is None else [self.result["clips"][i] for i in self._shown]

    def clip_at(self, index: int) -> Clip:
        return self.result["clips"][index]

    def hover_text(self, index: int) -> str:
        """What hovering the ``index``-th clip shows: ``name · label`` and the map coordinates."""
        c = self.result["clips"][index]
        x, y = self.result["coords"][index]
        return f"{c.name} · {_label(c)}\n({x:.3g}, {y:.3g})"

    def _tip(self, x, y, data) -> str:
        if self.result is None or data is None:
            return ""
        return self.hover_text(int(data))

    # -- the selected clip ---------------------------------------------------------------
    def set_selected_clip(self, clip_id: int | None) -> None:
        """Ring the clip selected in the library (kept across refits; none if it is not on the map)."""
        self.selected_clip_id = clip_id
        self._draw_ring()

    def selected_index(self) -> int | None:
        if self.result is None or self.selected_clip_id is None:
            return None
        return next((i for i, c in enumerate(self.result["clips"]) if c.id == self.selected_clip_id), None)

    def _on_points_clicked(self, _item, points, *_):
        if len(points):
            clip = self.result["clips"][points[0].data()]
            self.set_selected_clip(clip.id)
            self.clip_clicked.emit(clip)

    def _on_mouse_moved(self, pos) -> None:
        from PySide6.QtWidgets import QApplication

        if self.result is None or not (QApplication.keyboardModifiers() & Qt.AltModifier):
            self._last_audition = None
            return
        pts = self.scatter.pointsAt(self.view_box.mapSceneToView(pos))
        if len(pts):
            i = pts[0].data()
            if i != self._last_audition:
                self._last_audition = i
                self.audition.emit(self.result["clips"][i])

    def _on_lasso(self, points: list[QPointF]) -> None:
        if self.result is None or len(points) < 3:
            return
        path = QPainterPath()
        path.addPolygon(QPolygonF(points))
        coords = self.result["coords"]
        inside = [self.result["clips"][i] for i in self._shown
                  if path.contains(QPointF(float(coords[i, 0]), float(coords[i, 1])))]
        self.status.setText(f"{len(inside)} clips lassoed: shown in the matrix view")
        self.lasso_selected.emit(inside)


def _label(clip: Clip) -> str:
    return clip.label or "-"
