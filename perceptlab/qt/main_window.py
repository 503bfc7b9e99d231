"""The main window: library browser, spectrogram, background tasks.

The window is made of parts, one module each: the dock layout and saved state
(:mod:`perceptlab.qt.window_layout`), the menus, keys and help
(:mod:`~perceptlab.qt.window_menus`), the library, its import and status
(:mod:`~perceptlab.qt.window_library`) and the slots A and B with the
player's wiring (:mod:`~perceptlab.qt.window_slots`). This module builds the
window and ties the panels together.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
)

from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.progress_text import ProgressClock
from perceptlab.qt.agreement_view import QtAgreementView
from perceptlab.qt.analysis_state import QtLibraryAnalysis
from perceptlab.qt.compare_panel import QtComparePanel
from perceptlab.qt.dialogs import QtFailuresDialog, QtShortcutsDialog
from perceptlab.qt.evaluation_view import QtEvaluationView
from perceptlab.qt.library_panel import QtLibraryPanel
from perceptlab.qt.listening_view import QtListeningView
from perceptlab.qt.map_view import QtMapView
from perceptlab.qt.matrix_view import QtMatrixView
from perceptlab.qt.reconstruction_view import QtReconstructionView
from perceptlab.qt.training_panel import QtTrainingPanel
from perceptlab.qt.neighbours_panel import QtNeighboursPanel
from perceptlab.qt.page_tabs import QtPageTabs
from perceptlab.qt.player_bar import QtPlayerBar
from perceptlab.qt.spectrogram_view import QtSpectrogramView
from perceptlab.qt.window_layout import STATE_VERSION, WindowLayoutMixin, settings
from perceptlab.qt.window_library import WindowLibraryMixin
from perceptlab.qt.window_menus import WindowMenusMixin
from perceptlab.qt.window_slots import WindowSlotsMixin
from perceptlab.qt.workers import QtTask, QtTaskRunner


def _metric_title(name: str) -> str:
    """A metric's display name ("NLPD"), or its registry name if it is not registered."""
    try:
        from perceptlab.metrics.registry import get_metric

        return get_metric(name).display_name
    except Exception:  # a metric dropped since: its name still says what is computed
        return name


class QtMainWindow(WindowLayoutMixin, WindowMenusMixin, WindowLibraryMixin, WindowSlotsMixin, QMainWindow):
    """The perceptlab main window."""

    def __init__(self, library_path: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("perceptlab")
        self.resize(1280, 800)
        self.config = FeatureConfig()
        self.library: Library | None = None
        self.tasks = QtTaskRunner(self)
        self._image_task: QtTask | None = None
        self._import_task: QtTask | None = None
        self._audio_tasks: dict[str, QtTask] = {}
        self.slots: dict[str, Clip | None] = {"A": None, "B": None}
        self._images: dict[str, object] = {"A": None, "B": None}

        self.spectrogram = QtSpectrogramView(self)
        # The centre holds the big views as tabs: listening, training, ...
        self.central_tabs = QtPageTabs(self)
        self.central_tabs.setDocumentMode(True)
        self.central_tabs.addTab(self.spectrogram, "Spectrogram", scroll=False)
        self.setCentralWidget(self.central_tabs)
        self.library_panel = QtLibraryPanel(self)
        self.library_dock = self._add_dock("Library", self.library_panel, Qt.LeftDockWidgetArea)
        self.player = QtPlayerBar(parent=self)
        self.player_dock = self._add_dock("Player", self.player, Qt.TopDockWidgetArea)
        self.player.position_changed.connect(self.spectrogram.set_playhead)
        self.player.slot_changed.connect(self._on_slot_changed)
        self.spectrogram.seek_requested.connect(self._on_seek_requested)
        self.spectrogram.loop_changed.connect(self._on_loop_changed)
        # Library matrices queue on one thread of their own: two heavy torch
        # loops in parallel starve the GUI thread of the GIL on small machines.
        self.matrix_tasks = QtTaskRunner(self, max_threads=1)
        #: Brings the library's search indexes up to date after an import (one at a time).
        self.index_tasks = QtTaskRunner(self, max_threads=1)
        self.index_task: QtTask | None = None
        self.analysis = QtLibraryAnalysis(self.matrix_tasks, self)
        self.compare_panel = QtComparePanel(self.tasks, self.analysis, self)
        self.compare_panel.computed.connect(self._show_compared)
        self.neighbours_panel = QtNeighboursPanel(self.tasks, self)
        self.matrix_view = QtMatrixView(self.tasks, self.analysis, self)
        self.neighbours_dock = self._add_dock("Neighbours", self.neighbours_panel, Qt.RightDockWidgetArea)
        self.compare_dock = self._add_dock("Compare", self.compare_panel, Qt.RightDockWidgetArea)
        self.matrix_dock = self._add_dock("Matrix", self.matrix_view, Qt.RightDockWidgetArea)
        self.training_panel = QtTrainingPanel(self)
        self.map_view = QtMapView(self.tasks, self)
        self.recon_view = QtReconstructionView(self.tasks, self)
        self.central_tabs.addTab(self.training_panel, "Training", scroll=False)
        self.listening_view = QtListeningView(self)
        self.central_tabs.addTab(self.listening_view, "Listening test", scroll=False)
        self.agreement_view = QtAgreementView(self.tasks, self)
        self.central_tabs.addTab(self.agreement_view, "Agreement")
        self.evaluation_view = QtEvaluationView(self)
        self.central_tabs.addTab(self.evaluation_view, "Evaluation")
        self.listening_view.finished.connect(lambda _sid: self.agreement_view.refresh_sessions())
        self.central_tabs.currentChanged.connect(self._on_central_tab_changed)
        self.map_dock = self._add_dock("Map", self.map_view, Qt.RightDockWidgetArea)
        self.recon_dock = self._add_dock("Reconstructions", self.recon_view, Qt.RightDockWidgetArea)
        self._layout_docks()
        self.training_panel.use_encoder.connect(self.use_encoder)
        self.training_panel.reconstruct.connect(self._on_reconstruct)
        self.map_view.clip_clicked.connect(lambda c: self.library_panel.select_clip(c.id))
        self.library_panel.clip_selected.connect(lambda c: self.map_view.set_selected_clip(None if c is None else c.id))
        self.map_view.audition.connect(self._on_audition)
        self.map_view.lasso_selected.connect(self._on_lasso)
        self._preview = None
        self.neighbours_panel.neighbour_clicked.connect(self._on_neighbour_clicked)
        self.neighbours_panel.neighbour_activated.connect(self._on_neighbour_activated)
        self.matrix_view.pair_clicked.connect(self._on_pair_clicked)
        self.library_panel.table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)
        self.analysis.progress.connect(self._on_analysis_progress)
        self.analysis.matrix_ready.connect(self._on_analysis_done)
        self.analysis.matrix_failed.connect(lambda m, msg: self._on_analysis_done(m))
        self._play_b_when_ready = False
        self._install_shortcuts()
        self._build_menus()

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.hide()
        # Background work says itself here, beside the bar, so the library's
        # status and the last import's summary stay readable on the left.
        self.progress_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.status_label = QLabel("")
        self.status_label.setMinimumWidth(120)
        self.failed_button = QPushButton("")
        self.failed_button.setFlat(True)
        self.failed_button.setStyleSheet("color: rgb(200, 60, 40);")
        self.failed_button.setToolTip("Which files failed to import, and why")
        self.failed_button.hide()
        self.failed_button.clicked.connect(self.show_failures)
        self.failures_dialog: QtFailuresDialog | None = None
        self.shortcuts_dialog: QtShortcutsDialog | None = None
        self.import_summary = None
        self._progress_clock: ProgressClock | None = None
        self._analysis_clock: ProgressClock | None = None
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addWidget(self.failed_button)
        self.statusBar().addPermanentWidget(self.progress_label)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        # Playback off (no device, PortAudio failed to start): said where it stays in view.
        self.audio_status_label = QLabel("")
        self.statusBar().addPermanentWidget(self.audio_status_label)
        self.player.availability_changed.connect(self._on_audio_availability)
        self._on_audio_availability(self.player.available, self.player.unavailable_reason)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)

        self.library_panel.clip_selected.connect(self._on_clip_selected)
        self.library_panel.filter_changed.connect(self._show_library_status)
        self.setAcceptDrops(True)
        self._layout_sized = False
        self._restore_state()
        if library_path is not None:
            self.open_library(library_path)

    # -- selection and analysis progress ---------------------------------------
    def _on_table_selection_changed(self, *_):
        # Any size: one row selected must not leave the scope with the previous selection.
        self.matrix_view.set_selection(self.library_panel.selected_clips())

    def _on_analysis_progress(self, metric: str, done: int, total: int) -> None:
        clock = self._analysis_clock
        if clock is None or clock.metric != metric or done < clock.done:
            clock = self._analysis_clock = ProgressClock(f"computing {_metric_title(metric)} matrix", "rows")
            clock.metric = metric
        clock.update(done, total)
        if self._import_task is None and self._progress_clock is None:
            self._show_analysis_progress()

    def _show_analysis_progress(self) -> None:
        clock = self._analysis_clock
        self.progress_label.setText(clock.text())
        self.progress.setRange(0, max(clock.total, 1))
        self.progress.setValue(clock.done)
        self.progress.show()

    def _on_analysis_done(self, _metric: str) -> None:
        if not self.analysis.busy():
            self._analysis_clock = None
            if self._import_task is None and self._progress_clock is None:
                self.progress_label.setText("")
                self.progress.hide()

    def _on_central_tab_changed(self, _index: int) -> None:
        # The listening screen has its own keys (0-9, a/b, Space, Enter): the
        # player's window-wide shortcuts step aside while it is shown.
        listening = self.central_tabs.currentWidget() is self.listening_view
        for sc in self._shortcuts:
            sc.setEnabled(not listening)
        if listening:
            self.player.pause()
            self.listening_view.setFocus()
        else:
            self.listening_view.engine.pause()

    # -- encoders, map, reconstructions ------------------------------------------------------
    def use_encoder(self, checkpoint: str, name: str) -> QtTask | None:
        """Embed the library with a trained encoder and register its metric, in the background."""
        if self.library is None:
            return None
        lib_path = str(self.library.path)

        def work(progress=None, cancel=None):
            from perceptlab.models.embedding_metric import embed_library

            with Library(lib_path) as lib:
                return embed_library(lib, checkpoint, name=name, progress=progress, cancel=cancel)

        task = QtTask(work)
        task.signals.progress.connect(self._on_task_progress)
        task.signals.finished.connect(self._on_encoder_ready)
        task.signals.failed.connect(lambda msg, _tb: (self._hide_progress(),
                                                      QMessageBox.warning(self, "Cannot use the encoder", msg)))
        self._show_progress(f"embedding the library with {name}…")
        self._progress_clock = ProgressClock(f"embedding the library with {name}", "clips")
        self.cancel_button.hide()
        return self.tasks.start(task)

    def _on_encoder_ready(self, summary) -> None:
        self._hide_progress()
        self.register_library_metrics()
        self.neighbours_panel.refresh()
        self.compare_panel.set_pair(self.slots["A"], self.slots["B"])
        self.status_label.setText(f"{summary.metric} is ready: {summary.computed} clips embedded")
        self.encoder_ready_metric = summary.metric

    def _on_reconstruct(self, checkpoint: str) -> None:
        if self.library is not None:
            self.recon_dock.show()
            self.recon_dock.raise_()
            self.recon_view.show_checkpoint(str(self.library.path), checkpoint)

    def _on_lasso(self, clips: list) -> None:
        if len(clips) >= 2:
            self.matrix_view.scope_box.setCurrentText("Selected clips")
            self.matrix_view.set_selection(clips)
            self.matrix_view.compute()
            self.matrix_dock.raise_()

    # -- closing ------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        running = self.training_panel.running_jobs()
        if running and not getattr(self, "_close_decided", False):
            box = QMessageBox(QMessageBox.Question, "Training is running",
                              f"{len(running)} training run(s) still running. Stop them (each keeps last.pt) "
                              "or leave them running in the background?", parent=self)
            stop = box.addButton("Stop runs", QMessageBox.DestructiveRole)
            leave = box.addButton("Leave running", QMessageBox.AcceptRole)
            box.addButton(QMessageBox.Cancel)
            box.exec()
            if box.clickedButton() is stop:
                for job in running:
                    job.cancel()
            elif box.clickedButton() is not leave:
                event.ignore()
                return
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(STATE_VERSION))
        s.setValue("view/colormap", self.spectrogram.cmap_box.currentText())
        s.setValue("view/ab_panes", self.spectrogram.panes_shown())
        s.setValue("player/autoplay", self.player.autoplay_box.isChecked())
        s.setValue("player/match_loudness", self.player.match_box.isChecked())
        self.player.close_engine()
        self.recon_view.close_engine()
        self.listening_view.close_engine()
        if self._preview is not None:
            self._preview.close()
        self.evaluation_view.cancel()
        for runner in (self.tasks, self.matrix_tasks):
            runner.cancel_all()
        for runner in (self.tasks, self.matrix_tasks):
            runner.shutdown(5000)
        if self.library is not None:
            self.library.close()
        super().closeEvent(event)
