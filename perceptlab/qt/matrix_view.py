"""The matrix view: each metric's distance matrix as a heatmap, sorted by label.

Clips are grouped by label with lines between the groups, so a metric that
separates the classes shows dark blocks on the diagonal. Hovering reads out
the pair and its distance; clicking a cell loads that pair as A and B. The
distances are whole-clip ones, each pair at its own compared width, as
``perceptlab matrix`` gives them (no time alignment: that is per pair, in the
compare panel); the baselines sit beside the perceptual metrics. A table
below gives Spearman's rank correlation between every two metrics' pair
distances, over the same clips.

Many labels: the label axis names a block at its centre only where there is
room for the text (the others thin out; hovering the axis names any block).
The Label list, or a double-click on the axis, zooms to one label's clips
(then the axis names the clips); "All labels" or another double-click goes
back. Large libraries (more than
:data:`~perceptlab.analysis.matrix_summary.LARGE_MATRIX_CLIPS` clips) are
shown as the mean distance of every label pair, summarised in a worker
thread; a library without labels is shown as a stratified sample of its
clips. Export writes the shown matrix as CSV (with the clips' ids, names and
labels) or the view as PNG.

The label axis is in :mod:`perceptlab.qt.matrix_axis`, the rank-agreement
table's methods in :mod:`~perceptlab.qt.matrix_correlations` and the export
in :mod:`~perceptlab.qt.matrix_export`.
"""

from __future__ import annotations

import weakref

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QStackedWidget,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QPushButton,
    QWidget,
)

from perceptlab.analysis.agreement_stats import label_order
from perceptlab.analysis.matrix_summary import (
    LARGE_MATRIX_CLIPS,
    LabelBlocks,
    label_block_means,
    label_groups,
    label_name,
    stratified_sample,
)
from perceptlab.library.store import Clip
from perceptlab.qt.analysis_state import QtLibraryAnalysis
from perceptlab.qt.matrix_axis import CLIP_TEXT_PX, CLIPS, LABEL_MEANS, QtGroupAxis
from perceptlab.qt.matrix_correlations import MatrixCorrelationsMixin
from perceptlab.qt.matrix_export import MatrixExportMixin
from perceptlab.qt.workers import QtTask, QtTaskRunner

SCOPE_LIBRARY, SCOPE_SELECTION = "Whole library", "Selected clips"
ALL_LABELS = "All labels"


class QtMatrixView(MatrixExportMixin, MatrixCorrelationsMixin, QWidget):
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
        self.skipped = 0  # clips of the selection left out: they failed to import
        self._selection_error: str | None = None  # why the last selection's matrices could not be computed
        self._selection_matrices: dict[str, tuple[list[Clip], np.ndarray]] = {}
        self._task: QtTask | None = None
        self._summary_task: QtTask | None = None
        self._summaries: dict[tuple, tuple] = {}  # (metric, scope) -> (weak ref to the matrix, LabelBlocks)
        self.clips: list[Clip] = []  # the rows shown, in clip mode
        self.matrix: np.ndarray | None = None  # the values shown (clip distances or label means)
        self.mode = CLIPS
        self.blocks: LabelBlocks | None = None  # in label-means mode
        self.zoom_label: str | None = None
        self.sampled = False
        self.large_limit = LARGE_MATRIX_CLIPS
        self._export_task: QtTask | None = None
        self._corr_task: QtTask | None = None
        self._corr_key: list | None = None
        self.correlations: dict = {}

        self.metric_names: list[str] = []  # the open library's, from refresh_metrics()
        self.metric_box = QComboBox()
        self.scope_box = QComboBox()
        self.scope_box.addItems([SCOPE_LIBRARY, SCOPE_SELECTION])
        self.compute_button = QPushButton("Compute")
        self.label_box = QComboBox()
        self.label_box.setToolTip("Zoom to one label's clips (or double-click a label on the axis)")
        self.label_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.label_box.setMinimumContentsLength(12)
        self.label_box.addItem(ALL_LABELS, None)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the matrix shown as CSV (with the clips' names and labels) or as PNG")
        menu = QMenu(self.export_button)
        self.export_csv_action = menu.addAction("Matrix as CSV…", self._on_export_csv)
        self.export_png_action = menu.addAction("View as PNG…", self._on_export_png)
        self.export_button.setMenu(menu)
        self.export_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)  # a long status must not widen the dock
        self.graphics = pg.GraphicsLayoutWidget()
        self.axis = QtGroupAxis()
        self.plot = self.graphics.addPlot(axisItems={"left": self.axis})
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("bottom")
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), width=12, interactive=False)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.block_lines = pg.PlotCurveItem(pen=pg.mkPen(255, 255, 255, 150, width=1))
        self.plot.addItem(self.block_lines)
        self._line_rows = 0.0
        self.plot.getViewBox().sigTransformChanged.connect(lambda *_: self._update_lines())
        self.empty = QLabel("")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setMargin(16)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.graphics)
        self.readout = QLabel("")
        self.readout.setWordWrap(True)
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
        second = QHBoxLayout()
        second.addWidget(QLabel("Label"))
        second.addWidget(self.label_box, 1)
        second.addWidget(self.export_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addLayout(second)
        lay.addWidget(self.status)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.readout)
        # The table folds away to give the matrix the room.
        self.corr_toggle = QToolButton()
        self.corr_toggle.setText("Rank agreement between metrics (Spearman ρ over all pairs)")
        self.corr_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.corr_toggle.setArrowType(Qt.DownArrow)
        self.corr_toggle.setCheckable(True)
        self.corr_toggle.setChecked(True)
        self.corr_toggle.setAutoRaise(True)
        self.corr_toggle.setToolTip("Show or fold the table of rank agreement between the metrics")
        self.corr_toggle.toggled.connect(self._on_corr_toggled)
        lay.addWidget(self.corr_toggle)
        lay.addWidget(self.corr_table)

        # The metric list is filled by refresh_metrics() once the registry is
        # loaded (off the GUI thread, see QtMainWindow), not here.
        self.compute_button.clicked.connect(self.compute)
        self.metric_box.currentIndexChanged.connect(lambda _: self.show_metric())
        self.scope_box.currentIndexChanged.connect(lambda _: self._on_scope_changed())
        self.label_box.currentIndexChanged.connect(lambda _: self._on_label_chosen())
        self.analysis.matrix_ready.connect(self._on_matrix_ready)
        self.analysis.matrix_failed.connect(lambda m, msg: self.status.setText(f"{m}: {msg}"))
        self.analysis.progress.connect(self._on_progress)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._show_empty()

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
        if self.matrix is None:
            self._show_empty()

    def set_selection(self, clips: list[Clip]) -> None:
        """Clips for the 'Selected clips' scope (a table selection or a lasso on the map), of any size.

        Clips that failed to import have no audio to measure: they are left out, and the status says so.
        """
        good = [c for c in clips if c.ok]
        self.skipped = len(clips) - len(good)
        self.selection = good
        self._selection_matrices.clear()
        self._selection_error = None
        if self._task is not None:  # its matrices are of the previous selection
            self._task.cancel()
            self._task = None
        if self.scope_box.currentText() == SCOPE_SELECTION:
            self.show_metric()

    def _skipped_text(self) -> str:
        if not self.skipped:
            return ""
        return (f"{self.skipped} clip{'s' if self.skipped != 1 else ''} that failed to import "
                f"{'were' if self.skipped != 1 else 'was'} left out.")

    def _selection_hint(self) -> str:
        """What the 'Selected clips' scope has, and what it needs, before its matrices are computed."""
        n = len(self.selection)
        text = f"{n} clip{'s' if n != 1 else ''} selected"
        if self.skipped:
            text += f" ({self._skipped_text()[:-1]})"
        if n < 2:
            return text + ". Select at least 2 clips in the library (or lasso them on the map)."
        return text + ". Press Compute to see their distance matrices."

    def metric(self, *paint_device_metric):
        """The metric shown (its registry name).

        QWidget.metric(PaintDeviceMetric) has the same name; Qt calls it with
        an argument when it paints or grabs the widget, and gets the answer.
        """
        if paint_device_metric:
            return super().metric(*paint_device_metric)
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
        self.show_metric()  # keeps the selection's hint or "Computing…" (see _empty_status)

    def _compute_selection(self, metrics: list[str]) -> None:
        from perceptlab.qt.analysis_state import _compute_matrix

        self._selection_error = None
        if len(self.selection) < 2:
            self.status.setText(self._selection_hint())
            return
        if self._task is not None:
            self._task.cancel()
        ids = [c.id for c in self.selection]

        library_path = self.analysis.library_path

        def work(progress=None, cancel=None):
            shared: dict = {}  # the spectrogram metrics load the clips' images once
            return {m: _compute_matrix(library_path, m, ids, cancel=cancel, inputs_cache=shared) for m in metrics}

        task = QtTask(work)
        task.signals.finished.connect(lambda result, t=task: self._on_selection_done(t, result))
        task.signals.failed.connect(lambda msg, _tb, t=task: self._on_selection_failed(t, msg))
        self._task = task
        skipped = f" {self._skipped_text()}" if self.skipped else ""
        self.status.setText(f"Computing {len(metrics)} matrices for {len(ids)} clips…{skipped}")
        self.runner.start(task)

    def _on_selection_done(self, task: QtTask, result: dict) -> None:
        if task is not self._task:  # a selection changed since
            return
        self._task = None
        self._selection_matrices = result
        self.show_metric()
        if self.skipped and self.matrix is not None:
            self.status.setText(f"{self.status.text()}. {self._skipped_text()}")

    def _on_selection_failed(self, task: QtTask, message: str) -> None:
        if task is not self._task:
            return
        self._task = None
        self._selection_error = f"Cannot compute the selected clips' matrices: {message}"
        self.show_metric()

    def _source(self) -> dict[str, tuple[list[Clip], np.ndarray]]:
        if self.scope_box.currentText() == SCOPE_SELECTION:
            return self._selection_matrices
        return {m: self.analysis.matrix(m) for m in self.metric_names if self.analysis.matrix(m)}

    def _on_scope_changed(self) -> None:
        self.zoom_label = None
        self.show_metric()

    # -- what is shown -------------------------------------------------------------
    def show_metric(self) -> None:
        """Draw the current metric's matrix: clip by clip, one label's clips, or label means."""
        src = self._source()
        got = src.get(self.metric())
        if got is None:
            self._clear()
            self._clear_correlations()
            self.status.setText(self._empty_status())
            self._show_empty()
            return
        clips, d = got
        self._fill_labels(clips)
        labels = [c.label for c in clips]
        n = len(clips)
        if self.zoom_label is not None:
            idx = [i for i, c in enumerate(clips) if label_name(c.label) == self.zoom_label]
            self.sampled = len(idx) > self.large_limit
            idx.sort(key=lambda i: clips[i].name)
            if self.sampled:  # one label larger than the limit: every k-th of its clips, by name
                idx = [idx[k] for k in np.unique(np.linspace(0, len(idx) - 1, self.large_limit).round().astype(int))]
            self._show_clips([clips[i] for i in idx], d[np.ix_(idx, idx)],
                             [(k, k + 1, clips[i].name) for k, i in enumerate(idx)])
        elif n > self.large_limit and len({label_name(x) for x in labels}) > 1:
            self._show_label_means(clips, d)
        else:
            self.sampled = n > self.large_limit
            order = stratified_sample(labels, self.large_limit) if self.sampled else label_order(labels)
            shown = [clips[i] for i in order]
            self._show_clips(shown, d[np.ix_(order, order)], label_groups([c.label for c in shown]))
        self._fill_correlations(src)

    def _show_clips(self, clips: list[Clip], d: np.ndarray, groups) -> None:
        self.mode, self.blocks = CLIPS, None
        self.clips, self.matrix = clips, d
        lines = [] if self.zoom_label is not None else [s for s, _, _ in groups[1:]]
        self._draw(d, groups, lines)
        n_labels = len({label_name(c.label) for c in clips})
        what = f"{self.metric_box.currentText()}: "
        if self.zoom_label is not None:
            what += f"label {self.zoom_label}, {len(clips)} clips"
        else:
            what += f"{len(clips)} clips, {n_labels} labels, sorted by label"
        if self.sampled:
            what += f"; a sample of {len(clips)} clips keeping each label's share (more than "\
                    f"{self.large_limit:,} clips)"
        hint = "" if self.zoom_label is None else " (double-click the axis for every label)"
        self.status.setText(what + "; whole clips" + hint)

    def _show_label_means(self, clips: list[Clip], d: np.ndarray) -> None:
        key = (self.metric(), self.scope_box.currentText())
        cached = self._summaries.get(key)
        if cached is not None and cached[0]() is d:
            self._draw_label_means(cached[1], len(clips))
            return
        if self._summary_task is not None:
            self._summary_task.cancel()
        self.mode, self.blocks, self.matrix, self.clips = LABEL_MEANS, None, None, []
        self.export_button.setEnabled(False)
        task = QtTask(label_block_means, d, [c.label for c in clips])
        task.signals.finished.connect(lambda res, t=task, k=key, r=weakref.ref(d), n=len(clips):
                                      self._on_summary_done(t, k, r, n, res))
        task.signals.failed.connect(lambda msg, _tb, t=task: self._on_summary_failed(t, msg))
        self._summary_task = task
        text = (f"{len(clips):,} clips: summarising the {self.metric_box.currentText()} matrix by label "
                "(mean distance of every label pair)…")
        self.status.setText(text)
        self._show_empty(text)
        self.runner.start(task)

    def _on_summary_done(self, task: QtTask, key, matrix_ref, n: int, blocks: LabelBlocks) -> None:
        if task is not self._summary_task:
            return
        self._summary_task = None
        self._summaries[key] = (matrix_ref, blocks)
        if (self.metric(), self.scope_box.currentText()) == key and self.zoom_label is None:
            self._draw_label_means(blocks, n)

    def _on_summary_failed(self, task: QtTask, message: str) -> None:
        if task is self._summary_task:
            self._summary_task = None
            self.status.setText(f"Cannot summarise the matrix by label: {message}")
            self._show_empty(self.status.text())

    def _draw_label_means(self, blocks: LabelBlocks, n: int) -> None:
        self.mode, self.blocks, self.clips = LABEL_MEANS, blocks, []
        self.matrix = blocks.means
        self._draw(blocks.means, [(k, k + 1, lab) for k, lab in enumerate(blocks.labels)], [])
        self.status.setText(f"{self.metric_box.currentText()}: {n:,} clips, more than {self.large_limit:,}: "
                            f"the mean distance of every pair of its {len(blocks.labels)} labels. "
                            "Choose a label (or double-click one) to see its clips.")

    def _draw(self, values: np.ndarray, groups, lines: list[int]) -> None:
        k = len(values)
        off = values[~np.eye(k, dtype=bool)] if self.mode == CLIPS else values.ravel()
        off = off[np.isfinite(off)]
        levels = (float(off.min()), float(off.max())) if off.size else (0.0, 1.0)
        if levels[1] <= levels[0]:
            levels = (levels[0], levels[0] + 1e-12)
        self.image.setImage(np.nan_to_num(values, nan=levels[0]).astype(np.float32), autoLevels=False,
                            levels=levels)
        self.image.setRect(QRectF(0, 0, k, k))
        self.colorbar.setLevels(levels)
        # The lines between labels, inside the image only, as one item of segments.
        xs, ys = [], []
        for pos in lines:
            xs += [0, k, pos, pos]
            ys += [pos, pos, 0, k]
        self.block_lines.setData(np.array(xs, float), np.array(ys, float), connect="pairs")
        self._line_rows = k / max(len(lines) + 1, 1)  # rows per label block, on average
        self._update_lines()
        if self.mode == CLIPS and self.zoom_label is not None:
            # Clip names: their ends tell them apart (``blues.00042.wav``, ``..._lowpass.flac``).
            self.axis.set_groups(groups, Qt.ElideLeft, CLIP_TEXT_PX)
        else:
            self.axis.set_groups(groups)
        self.plot.autoRange(padding=0.01)
        self.stack.setCurrentWidget(self.graphics)
        self.export_button.setEnabled(True)

    def _update_lines(self) -> None:
        """Lines between labels only where blocks are a few pixels tall: denser ones would hide the image."""
        vb = self.plot.getViewBox()
        px = vb.mapViewToDevice(pg.Point(0, 0)), vb.mapViewToDevice(pg.Point(0, 1))
        if px[0] is None or px[1] is None:
            return
        rows_px = abs(px[1].y() - px[0].y()) * self._line_rows
        self.block_lines.setVisible(rows_px >= 6)

    def _clear(self) -> None:
        self.image.clear()
        self.matrix, self.clips, self.blocks, self.mode = None, [], None, CLIPS
        self.export_button.setEnabled(False)

    def _selection_busy(self) -> bool:
        return self.scope_box.currentText() == SCOPE_SELECTION and self._task is not None

    def _empty_status(self) -> str:
        """The status line while the scope has no matrix for the metric."""
        if self.scope_box.currentText() == SCOPE_SELECTION:
            if self._task is not None:
                return self.status.text()  # "Computing … matrices for … clips…"
            return self._selection_error or self._selection_hint()
        return self.status.text() if self.status.text().startswith("Computing") else ""

    def _show_empty(self, text: str | None = None) -> None:
        if text is None:
            selection = self.scope_box.currentText() == SCOPE_SELECTION
            busy = (self._task is not None) if selection else (
                self.analysis.busy(self.metric()) or self.status.text().startswith("Computing"))
            if self.analysis.library_path is None:
                text = "Open a library to see its distance matrices."
            elif busy:
                text = "Computing the distance matrices…"
            elif selection and self._selection_error:
                text = self._selection_error
            elif selection:
                text = self._selection_hint()
            else:
                text = ("No matrix yet. Press Compute to calculate every metric's distance matrix of the "
                        "library's clips (in the background), shown here sorted by label.")
        self.empty.setText(text)
        self.stack.setCurrentWidget(self.empty)

    # -- zooming to a label -------------------------------------------------------
    def _fill_labels(self, clips: list[Clip]) -> None:
        counts: dict[str, int] = {}
        for c in clips:
            counts[label_name(c.label)] = counts.get(label_name(c.label), 0) + 1
        if [self.label_box.itemData(i) for i in range(1, self.label_box.count())] == sorted(counts) and \
                getattr(self, "_label_counts", None) == counts:
            return
        self._label_counts = counts
        self.label_box.blockSignals(True)
        self.label_box.clear()
        self.label_box.addItem(ALL_LABELS, None)
        for lab in sorted(counts):
            self.label_box.addItem(f"{lab} ({counts[lab]})", lab)
        if self.zoom_label not in counts:
            self.zoom_label = None
        self.label_box.setCurrentIndex(max(0, self.label_box.findData(self.zoom_label)))
        self.label_box.blockSignals(False)

    def zoom_to_label(self, label: str | None) -> None:
        """Show only ``label``'s clips (None: every label)."""
        idx = self.label_box.findData(label) if label is not None else 0
        if label is not None and idx < 0:
            raise ValueError(f"label {label!r}: not among the clips shown")
        self.label_box.setCurrentIndex(idx)  # -> _on_label_chosen

    def _on_label_chosen(self) -> None:
        self.zoom_label = self.label_box.currentData()
        self.show_metric()


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
        if self.scope_box.currentText() != SCOPE_LIBRARY:
            return  # the library's matrices: the selection's status stays
        self.status.setText(f"Computing {metric} matrix… {done}/{total}")
        if self.matrix is None and self._summary_task is None:
            self._show_empty(f"Computing the {metric} distance matrix… {done}/{total} clips")

    # -- mouse ---------------------------------------------------------------------
    def _cell(self, scene_pos) -> tuple[int, int] | None:
        if self.matrix is None:
            return None
        p = self.plot.getViewBox().mapSceneToView(scene_pos)
        i, j = int(np.floor(p.y())), int(np.floor(p.x()))
        n = len(self.matrix)
        return (i, j) if 0 <= i < n and 0 <= j < n else None

    def _axis_group(self, scene_pos) -> tuple[int, int, str] | None:
        """The label block (or clip) whose row the mouse is on, over the label axis."""
        if self.matrix is None or not self.axis.sceneBoundingRect().contains(scene_pos):
            return None
        return self.axis.group_at(self.plot.getViewBox().mapSceneToView(scene_pos).y())

    def hover_text(self, i: int, j: int) -> str:
        """The readout of cell (row ``i``, column ``j``)."""
        if self.mode == LABEL_MEANS:
            b = self.blocks
            mean = b.means[i, j]
            value = "no pair (one clip)" if not np.isfinite(mean) else f"mean {mean:.5f} over {b.pairs[i, j]:,} pairs"
            return f"{b.labels[i]} × {b.labels[j]}: {value}"
        a, b = self.clips[i], self.clips[j]
        return f"{a.name} ({label_name(a.label)}) × {b.name} ({label_name(b.label)}): {self.matrix[i, j]:.5f}"

    def _on_mouse_moved(self, pos) -> None:
        group = self._axis_group(pos)
        if group is not None:
            s, e, text = group
            text = text if self.mode == LABEL_MEANS or self.zoom_label is not None else f"{text}: {e - s} clips"
            self.readout.setText(text + " (double-click to zoom)" if self.zoom_label is None else text)
            self.graphics.setToolTip(text)
            return
        self.graphics.setToolTip("")
        cell = self._cell(pos)
        self.readout.setText("" if cell is None else self.hover_text(*cell))

    def _on_mouse_clicked(self, event) -> None:
        double = getattr(event, "double", lambda: False)()
        if double:
            group = self._axis_group(event.scenePos())
            if group is not None:
                self.zoom_to_label(None if self.zoom_label is not None else self._group_label(group))
                return
            cell = self._cell(event.scenePos())
            if cell is not None and self.mode == LABEL_MEANS:
                self.zoom_to_label(self.blocks.labels[cell[0]])
            return
        cell = self._cell(event.scenePos())
        if cell is not None and self.mode == CLIPS:
            i, j = cell
            self.pair_clicked.emit(self.clips[i], self.clips[j])

    def _group_label(self, group: tuple[int, int, str]) -> str:
        if self.mode == LABEL_MEANS:
            return self.blocks.labels[group[0]]
        return label_name(self.clips[group[0]].label)

