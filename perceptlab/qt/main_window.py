"""The main window: library browser, spectrogram, background tasks."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
)

from perceptlab.audio.decode import load as load_audio
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.features import clip_image
from perceptlab.library.importer import import_files
from perceptlab.library.store import Clip, Library, LibraryError
from perceptlab.progress_text import ProgressClock
from perceptlab.qt.agreement_view import QtAgreementView
from perceptlab.qt.analysis_state import QtLibraryAnalysis
from perceptlab.qt.compare_panel import QtComparePanel
from perceptlab.qt.dialogs import QtFailuresDialog, QtShortcutsDialog, readme_path
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
from perceptlab.qt.workers import QtTask, QtTaskRunner

MAX_RECENT = 8
#: The version of the saved dock layout: raised when the default layout changes,
#: so a state saved by an older one is not restored.
STATE_VERSION = 2
#: Help > Documentation: README sections (title, GitHub-style anchor).
README_SECTIONS = (
    ("README (all of it)", ""),
    ("The app", "the-app"),
    ("Command line", "command-line"),
    ("How audio becomes an image (the measurement path)", "how-audio-becomes-an-image-the-measurement-path"),
    ("The metrics", "the-metrics"),
    ("Training encoders", "training-encoders"),
    ("Does the paper's claim hold on your data?", "does-the-papers-claim-hold-on-your-data"),
    ("Listening tests and agreement", "listening-tests-and-agreement"),
    ("The library", "the-library"),
    ("Benchmarks", "benchmarks"),
)


def settings() -> QSettings:
    """Window state and preferences (an INI file in the user config folder)."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "perceptlab", "perceptlab")


def _metric_title(name: str) -> str:
    """A metric's display name ("NLPD"), or its registry name if it is not registered."""
    try:
        from perceptlab.metrics.registry import get_metric

        return get_metric(name).display_name
    except Exception:  # a metric dropped since: its name still says what is computed
        return name


def _compute_image(library_path: str, clip: Clip, config: FeatureConfig, progress=None, cancel=None):
    # Worker thread: its own connection, as SQLite connections are per thread.
    with Library(library_path) as lib:
        return clip_image(lib, clip, config)


class QtMainWindow(QMainWindow):
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

    # -- construction -------------------------------------------------------
    def _add_dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        act = QAction("&Open library…", self, shortcut=QKeySequence.Open)
        act.triggered.connect(self._on_open_library)
        file_menu.addAction(act)
        act = QAction("&New library…", self, shortcut=QKeySequence.New)
        act.triggered.connect(self._on_new_library)
        file_menu.addAction(act)
        act = QAction("&Import folder…", self, shortcut=QKeySequence("Ctrl+I"))
        act.triggered.connect(self._on_import_folder)
        file_menu.addAction(act)
        self.recent_menu = file_menu.addMenu("Recent libraries")
        file_menu.addSeparator()
        act = QAction("&Quit", self, shortcut=QKeySequence.Quit)
        act.triggered.connect(self.close)
        file_menu.addAction(act)
        self.view_menu = self.menuBar().addMenu("&View")
        self.view_menu.addAction(self.library_dock.toggleViewAction())
        self.view_menu.addAction(self.player_dock.toggleViewAction())
        for dock in (self.neighbours_dock, self.compare_dock, self.matrix_dock, self.map_dock, self.recon_dock):
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addSeparator()
        self.reset_layout_action = QAction("&Reset layout", self)
        self.reset_layout_action.setToolTip("Every panel back in its default place and size")
        self.reset_layout_action.triggered.connect(self.reset_layout)
        self.view_menu.addAction(self.reset_layout_action)
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.spectrogram.fit_action)
        play_menu = self.menuBar().addMenu("&Playback")
        act = QAction("Load selected clip as &B", self, shortcut=QKeySequence("Shift+B"))
        act.triggered.connect(self._on_load_as_b)
        play_menu.addAction(act)
        self.library_panel.table.addAction(act)
        self.library_panel.table.setContextMenuPolicy(Qt.ActionsContextMenu)
        help_menu = self.menuBar().addMenu("&Help")
        act = QAction("&Keyboard shortcuts", self, shortcut=QKeySequence("F1"))
        act.triggered.connect(self.show_shortcuts)
        help_menu.addAction(act)
        self.docs_menu = help_menu.addMenu("&Documentation")
        for title, anchor in README_SECTIONS:
            act = self.docs_menu.addAction(title)
            act.triggered.connect(lambda _=False, a=anchor: self.open_documentation(a))
        self._refresh_recent_menu()

    # -- help -----------------------------------------------------------------------
    def show_shortcuts(self) -> QtShortcutsDialog:
        """Help > Keyboard shortcuts: every key of every screen, read from the installed shortcuts."""
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = QtShortcutsDialog(self)
        else:
            self.shortcuts_dialog.refresh(self)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()
        return self.shortcuts_dialog

    def documentation_url(self, anchor: str = "") -> QUrl:
        """The local README.md (a section of it, with ``anchor``) as a file URL."""
        url = QUrl.fromLocalFile(str(readme_path()))
        if anchor:
            url.setFragment(anchor)
        return url

    def open_documentation(self, anchor: str = "") -> bool:
        """Open the README (at a section) with the desktop's viewer for it; no network."""
        path = readme_path()
        if not path.is_file():
            self.status_label.setText(f"Documentation: {path} is missing (it ships with the source)")
            return False
        ok = QDesktopServices.openUrl(self.documentation_url(anchor))
        if not ok:
            self.status_label.setText(f"Documentation: no program opens {path}; it is plain text, read it in any editor")
        return ok

    def _install_shortcuts(self) -> None:
        # Window-wide keys; a focused text field keeps its printable keys.
        keys = {
            "Space": (self.player.toggle, "play / pause the slot heard"),
            "Escape": (self.player.stop, "stop and rewind (to the loop start with the loop on)"),
            "Shift+Space": (self.player.toggle_loop, "loop on / off"),
            "1": (lambda: self.player.select("A"), "hear slot A, keeping the position"),
            "2": (lambda: self.player.select("B"), "hear slot B, keeping the position"),
            "Tab": (self.player.switch, "switch between A and B, keeping the position"),
            "A": (lambda: self._set_loop_point(0), "loop start at the playhead"),
            "B": (lambda: self._set_loop_point(1), "loop end at the playhead"),
        }
        self._shortcuts = []
        for key, (fn, what) in keys.items():
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WindowShortcut)
            sc.setWhatsThis(what)
            sc.activated.connect(fn)
            self._shortcuts.append(sc)

    # -- layout -------------------------------------------------------------------
    def _layout_docks(self) -> None:
        """Put every dock where the default layout has it (sizes: :meth:`_size_docks`)."""
        for dock in self.findChildren(QDockWidget):
            dock.setFloating(False)
        self.addDockWidget(Qt.TopDockWidgetArea, self.player_dock)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.library_dock)
        # Right: the neighbours above; compare, matrix, map and reconstructions as tabs below.
        for dock in (self.neighbours_dock, self.compare_dock, self.matrix_dock, self.map_dock, self.recon_dock):
            self.addDockWidget(Qt.RightDockWidgetArea, dock, Qt.Vertical)
        self.tabifyDockWidget(self.compare_dock, self.matrix_dock)
        self.tabifyDockWidget(self.matrix_dock, self.map_dock)
        self.tabifyDockWidget(self.map_dock, self.recon_dock)
        for dock in (self.player_dock, self.library_dock, self.neighbours_dock, self.compare_dock,
                     self.matrix_dock, self.map_dock):
            dock.show()
        # Reconstructions is shown when asked for, as a tab: it never takes room from the others.
        self.recon_dock.hide()
        self.compare_dock.raise_()

    def default_dock_sizes(self) -> dict[str, int]:
        """The default layout's dock sizes in pixels for the window's size now."""
        w, h = self.width(), self.height()
        return {
            "library": int(min(max(0.24 * w, 290), 440)),
            "right": int(min(max(0.30 * w, 380), 560)),
            # Of the right column's height: the neighbours' table of 5 and its notes; the compare
            # panel the rest (its table and a difference map a few mel bands tall per pixel).
            "neighbours": int(min(max(0.34 * (h - 140), 210), 360)),
        }

    def _size_docks(self) -> None:
        sizes = self.default_dock_sizes()
        self.resizeDocks([self.library_dock, self.neighbours_dock], [sizes["library"], sizes["right"]],
                         Qt.Horizontal)
        rest = max(self.height() - 140 - sizes["neighbours"], 300)
        self.resizeDocks([self.neighbours_dock, self.compare_dock], [sizes["neighbours"], rest], Qt.Vertical)

    def reset_layout(self) -> None:
        """View > Reset layout: every dock back in its default place, at its default size."""
        self._layout_docks()
        self._size_docks()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._layout_sized:
            self._layout_sized = True
            if not self._layout_restored:
                self._size_docks()

    def _restore_state(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        state = s.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        # A state saved by an older layout (other docks, cramped sizes) is not restored.
        self._layout_restored = state is not None and bool(self.restoreState(state, STATE_VERSION))
        cmap = s.value("view/colormap")
        if cmap:
            self.spectrogram.set_colormap(str(cmap))
        self.spectrogram.set_panes(s.value("view/ab_panes", False, type=bool))
        self.player.autoplay_box.setChecked(s.value("player/autoplay", False, type=bool))
        self.player.match_box.setChecked(s.value("player/match_loudness", False, type=bool))

    # -- library ------------------------------------------------------------
    def open_library(self, path: str | Path) -> bool:
        """Open a library file (created if missing) and show its clips."""
        try:
            lib = Library(path)
        except LibraryError as exc:
            self.show_library_problem(str(exc), "Cannot open library")
            return False
        if self.library is not None:
            self.library.close()
        self.library = lib
        self.slots = {"A": None, "B": None}
        self.import_summary = None  # the last import was into another library
        for panel in (self.analysis, self.compare_panel, self.neighbours_panel, self.training_panel,
                      self.map_view, self.listening_view, self.agreement_view, self.evaluation_view):
            panel.set_library(str(lib.path))
        # After the first paint: the import competes with it for the GIL.
        self.metrics_loaded = False
        self.metric_names: list[str] = []
        self._metrics_library = str(lib.path)
        QTimer.singleShot(300, self, self._load_metrics)  # bound to self: dropped if the window goes
        self.setWindowTitle(f"perceptlab — {lib.path.name}")
        self._remember_recent(str(lib.path))
        self.reload_clips()
        return True

    def _load_metrics(self) -> QtTask:
        """Load the metric registry (torch) and the library's own metrics in the background.

        Importing torch takes over a second; done on the GUI thread it would
        delay the first window. The metric lists fill in when it is done.
        """
        library_path = self._metrics_library

        def work():
            from perceptlab.analysis.library_metrics import register_library_metrics

            with Library(library_path) as lib:
                return register_library_metrics(lib)

        task = QtTask(work, with_progress=False)
        # Bound methods, not lambdas: Qt drops the call if the window is gone.
        task.signals.finished.connect(self._on_metrics_loaded)
        task.signals.failed.connect(self._on_metrics_failed)
        return self.tasks.start(task)

    @Slot(str, str)
    def _on_metrics_failed(self, message: str, _tb: str) -> None:
        from perceptlab.analysis.similarity import DEFAULT_METRICS

        self._on_metrics_loaded(list(DEFAULT_METRICS))
        self.status_label.setText(f"Library metrics unavailable: {message}")

    @Slot(object)
    def _on_metrics_loaded(self, names: list[str]) -> None:
        self.metric_names = list(names)
        self.metrics_loaded = True
        self.matrix_view.refresh_metrics(self.metric_names)
        self.map_view.refresh_sources(self.metric_names)

    def register_library_metrics(self) -> None:
        """Register the open library's own metrics and list them in the views."""
        from perceptlab.analysis.library_metrics import register_library_metrics

        try:
            self.metric_names = register_library_metrics(self.library)
        except Exception as exc:  # a damaged model row must not stop the app
            self.status_label.setText(f"Encoder metrics unavailable: {exc}")
        self.matrix_view.refresh_metrics(self.metric_names)
        self.map_view.refresh_sources(self.metric_names)

    def reload_clips(self) -> None:
        if self.library is None:
            return
        try:
            clips = self.library.clips(include_failed=True)
        except LibraryError as exc:  # damaged since it was opened
            self.show_library_problem(str(exc))
            return
        self.library_panel.set_clips(clips)
        self._show_library_status()

    def show_library_problem(self, message: str, title: str = "Library problem") -> None:
        """Tell the user why the library cannot be used: the status bar, and a box that does not block."""
        self.status_label.setText(f"{title}: {message}")
        self.status_label.setToolTip(message)
        box = getattr(self, "library_problem_box", None)
        if box is None:
            box = self.library_problem_box = QMessageBox(QMessageBox.Warning, title, "", QMessageBox.Ok, self)
            box.setModal(False)
        box.setWindowTitle(title)
        box.setText(message)
        box.show()

    @Slot(bool, str)
    def _on_audio_availability(self, ok: bool, why: str) -> None:
        checking = not ok and not self.player.audio_checked
        self.audio_status_label.setText("" if ok else "Checking audio…" if checking else "Playback off")
        self.audio_status_label.setToolTip("" if ok else f"Playback is off: {why}")

    def _show_library_status(self) -> None:
        """How many clips the library holds, and how many of them the list shows while filtered."""
        if self.library is None:
            return
        panel = self.library_panel
        clips = panel.model.clips()
        ok = sum(c.ok for c in clips)
        failed = len(clips) - ok
        if panel.is_filtered():
            shown = panel.visible_clips()
            shown_ok = sum(c.ok for c in shown)
            text = f"{shown_ok:,} of {ok:,} clips in {self.library.path}"
            if len(shown) > shown_ok:
                text += f" and {len(shown) - shown_ok:,} of {failed:,} that failed to import"
        else:
            text = f"{ok:,} clips in {self.library.path}" + (f" ({failed:,} failed to import)" if failed else "")
        self.status_label.setText(text)
        self.status_label.setToolTip(self.import_summary.text() if self.import_summary is not None else "")
        self._show_failed_button()

    # -- failures ---------------------------------------------------------------
    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that failed: the last import's and the library's failed clips."""
        found: dict[str, str] = {}
        if self.import_summary is not None:
            found.update({str(p): r for p, r in self.import_summary.failed})
        for c in self.library_panel.failed_clips():
            found.setdefault(str(c.path), c.error or "unknown reason")
        return list(found.items())

    def _show_failed_button(self) -> None:
        n = len(self.failures())
        self.failed_button.setText(f"{n:,} failed – details")
        self.failed_button.setVisible(n > 0)
        if self.failures_dialog is not None and self.failures_dialog.isVisible():
            self._fill_failures()

    def _fill_failures(self) -> None:
        failures = self.failures()
        head = (self.import_summary.text().splitlines()[0] + ". " if self.import_summary is not None else "")
        self.failures_dialog.set_failures(
            failures, f"{head}{len(failures):,} file(s) could not be imported; they are listed in the library "
                      "in red, and the ⚠ button beside its label filter shows only them.")

    def show_failures(self) -> QtFailuresDialog:
        """Open the list of files that failed to import, with the reasons."""
        if self.failures_dialog is None:
            self.failures_dialog = QtFailuresDialog(self)
        self._fill_failures()
        self.failures_dialog.show()
        self.failures_dialog.raise_()
        return self.failures_dialog

    def import_paths(self, paths: list[str]) -> QtTask | None:
        """Import files/folders in the background, with progress and cancel."""
        if self.library is None or not paths:
            return None
        if self._import_task is not None:
            self.status_label.setText("An import is already running")
            return None
        lib_path = str(self.library.path)

        def work(progress=None, cancel=None):
            with Library(lib_path) as lib:
                return import_files(lib, paths, config=self.config, progress=progress, cancel=cancel)

        task = QtTask(work)
        task.signals.progress.connect(self._on_task_progress)
        task.signals.finished.connect(self._on_import_finished)
        task.signals.failed.connect(self._on_import_failed)
        task.signals.cancelled.connect(self._on_import_cancelled)
        self._import_task = task
        self._progress_clock = ProgressClock("importing", "files")
        self._show_progress("importing: scanning…")
        return self.tasks.start(task)

    # -- recent libraries ---------------------------------------------------
    def _remember_recent(self, path: str) -> None:
        s = settings()
        recent = [p for p in (s.value("recent") or []) if p != path]
        s.setValue("recent", [path, *recent][:MAX_RECENT])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = settings().value("recent") or []
        if isinstance(recent, str):
            recent = [recent]
        for p in recent:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.open_library(p))
        self.recent_menu.setEnabled(bool(recent))

    # -- progress -------------------------------------------------------------
    def _show_progress(self, text: str) -> None:
        self.progress_label.setText(text)
        self.progress_label.show()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()

    def _hide_progress(self) -> None:
        self._progress_clock = None
        self.progress.hide()
        self.cancel_button.hide()
        self.progress_label.setText("")
        if self._analysis_clock is not None and self.analysis.busy():
            self._show_analysis_progress()

    @Slot(int, int)
    def _on_task_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if self._progress_clock is not None:
            self.progress_label.setText(self._progress_clock.update(done, total))

    @Slot()
    def _on_cancel_clicked(self) -> None:
        if self._import_task is not None:
            self._import_task.cancel()

    @Slot(object)
    def _on_import_finished(self, summary) -> None:
        self._import_task = None
        self._hide_progress()
        self.import_summary = summary
        self.analysis.invalidate()
        self.reload_clips()
        # The summary stays until the library's status changes (a search);
        # the failures stay behind the "failed – details" button.
        self.status_label.setText(summary.text().splitlines()[0])
        self.status_label.setToolTip(summary.text())
        self._show_failed_button()
        self.update_search_indexes()

    def update_search_indexes(self) -> QtTask | None:
        """Update the library's persistent search indexes in the background (after an import).

        Neighbours would update a stale index themselves on the next query;
        doing it now keeps that query fast. A failure only says so: the next
        query rebuilds what it needs.
        """
        from perceptlab.analysis.indexing import update_library_indexes

        if self.library is None:
            return None
        if self.index_task is not None:
            self.index_task.cancel()
        task = QtTask(update_library_indexes, str(self.library.path), self.config)
        task.signals.finished.connect(lambda _status, t=task: self._on_indexes_done(t))
        task.signals.failed.connect(
            lambda msg, _tb, t=task: (self._on_indexes_done(t),
                                      self.status_label.setToolTip(f"search indexes not updated: {msg}")))
        self.index_task = task
        self.index_tasks.start(task)
        return task

    def _on_indexes_done(self, task: QtTask) -> None:
        if task is self.index_task:
            self.index_task = None

    @Slot(str, str)
    def _on_import_failed(self, message: str, _tb: str) -> None:
        self._import_task = None
        self._hide_progress()
        self.reload_clips()
        QMessageBox.warning(self, "Import failed", message)

    @Slot()
    def _on_import_cancelled(self) -> None:
        self._import_task = None
        self._hide_progress()
        self.reload_clips()
        self.status_label.setText("Import cancelled; the files imported so far are kept")

    # -- selection -> slot A: spectrogram and audio ----------------------------------
    @Slot(object)
    def _on_clip_selected(self, clip: Clip | None) -> None:
        self.set_slot("A", clip)

    def set_slot(self, slot: str, clip: Clip | None) -> None:
        """Put a clip in slot A or B: its audio in the player, its image in the view.

        A clip that failed to import empties the slot (nothing stale is left
        to hear or see) and the status bar says why. A new clip in the slot
        heard drops the loop region, which was drawn on the old clip.
        """
        previous = self.slots.get(slot)
        self.slots[slot] = clip
        self._images[slot] = None
        # The A/B panes hold both slots; this one's old image and waveform go now.
        self.spectrogram.set_slot_image(slot, None, caption=f"{slot}: {clip.name}" if clip is not None else "")
        self.spectrogram.set_slot_waveform(slot, None)
        active = slot == self.player.engine.active_slot
        if active and clip is not previous and (previous is None or clip is None or previous.id != clip.id):
            self.player.clear_loop()
            self.spectrogram.set_loop(None)
        if slot == "A":
            self.neighbours_panel.set_query(clip)
        self.compare_panel.set_pair(self.slots["A"], self.slots["B"])
        self._show_compared()  # the old pair's marks go until the new pair is compared
        if clip is not None and not clip.ok:
            self._unload_slot(slot)
            reason = clip.error or "unknown reason"
            self.status_label.setText(f"{clip.name} failed to import: {reason}")
            self.status_label.setToolTip(clip.path)
            if active:
                self._show_empty_spectrogram(f"{slot}: {clip.name}  ·  failed to import",
                                             f"{clip.name} could not be decoded: {clip.failure}")
            return
        if clip is None or self.library is None:
            if active:
                self._show_empty_spectrogram("")
            return
        self.player.set_clip_duration(slot, clip.duration)
        if active and not self.player.engine.is_playing:
            self.player.seek(0.0)
        self._load_audio(slot, clip)
        try:
            cached = self.library.get_features(clip.content_hash, self.config.hash)
        except LibraryError as exc:
            self.show_library_problem(str(exc))
            return
        if cached is not None:
            self._on_slot_image(slot, clip, cached)
            return
        if active:
            self._show_empty_spectrogram(f"{clip.name}: computing spectrogram…")
        if self._image_task is not None:
            self._image_task.cancel()
        task = QtTask(_compute_image, str(self.library.path), clip, self.config)
        task.signals.finished.connect(lambda img, s=slot, c=clip, t=task: self._on_image_ready(t, s, c, img))
        task.signals.failed.connect(lambda msg, _tb, c=clip: self._show_empty_spectrogram(f"{c.name}: {msg}"))
        self._image_task = task
        self.tasks.start(task)

    def _unload_slot(self, slot: str) -> None:
        old = self._audio_tasks.pop(slot, None)
        if old is not None:
            old.cancel()
        self.player.unload(slot)

    def _show_empty_spectrogram(self, caption: str, hint: str | None = None) -> None:
        """No image: ``caption`` above, and ``hint`` (default: the view's own) in the empty plot."""
        self.spectrogram.set_empty_hint(hint or "")
        self.spectrogram.set_image(None, caption=caption)

    def _on_image_ready(self, task: QtTask, slot: str, clip: Clip, image) -> None:
        if task is self._image_task:
            self._image_task = None
        if self.slots.get(slot) is clip:
            self._on_slot_image(slot, clip, image)

    def _on_slot_image(self, slot: str, clip: Clip, image) -> None:
        self._images[slot] = image
        self.spectrogram.set_slot_image(slot, image, self.config,
                                        caption=f"{slot}: {clip.name}  ·  {clip.label or 'no label'}")
        if slot == self.player.engine.active_slot:
            self._show_slot(slot)

    def _show_slot(self, slot: str) -> None:
        self.spectrogram.set_active_slot(slot)
        clip, image = self.slots.get(slot), self._images.get(slot)
        if clip is not None and not clip.ok:
            self._show_empty_spectrogram(f"{slot}: {clip.name}  ·  failed to import",
                                         f"{clip.name} could not be decoded: {clip.failure}")
            return
        if clip is None or image is None:
            return
        self.spectrogram.set_empty_hint("")  # the ordinary hint, for when the view is emptied later
        self.spectrogram.set_image(image, self.config, caption=f"{slot}: {clip.name}  ·  {clip.label or 'no label'}")
        self.spectrogram.set_loop(self.player.engine.loop)
        self._show_compared()

    @Slot()
    def _show_compared(self) -> None:
        """Mark on the spectrogram what the compare panel compared of the clip shown (if it is A or B)."""
        shown = self.compare_panel.compared_region(self.player.engine.active_slot, self.slots["A"], self.slots["B"])
        if shown is None or not self.spectrogram.has_image():
            self.spectrogram.set_compared(None)
        else:
            self.spectrogram.set_compared(*shown)
        for s in ("A", "B"):  # each pane marks its own clip's compared region
            region = self.compare_panel.compared_region(s, self.slots["A"], self.slots["B"])
            self.spectrogram.set_slot_compared(s, *(region or (None,)))

    def _load_audio(self, slot: str, clip: Clip) -> None:
        old = self._audio_tasks.pop(slot, None)
        if old is not None:
            old.cancel()
        task = QtTask(load_audio, clip.path, self.config.sample_rate, with_progress=False)
        task.signals.finished.connect(lambda wave, s=slot, c=clip, t=task: self._on_audio_ready(t, s, c, wave))
        task.signals.failed.connect(lambda msg, _tb: self.player.message.setText(msg))
        self._audio_tasks[slot] = task
        self.tasks.start(task)

    def _on_audio_ready(self, task: QtTask, slot: str, clip: Clip, wave) -> None:
        if self._audio_tasks.get(slot) is not task or self.slots.get(slot) is not clip:
            return
        del self._audio_tasks[slot]
        self.player.engine.load(slot, wave)
        self.spectrogram.set_slot_waveform(slot, wave, self.config.sample_rate)
        self.player.set_clip_duration(slot, self.player.engine.duration(slot))
        self._after_audio_loaded(slot)

    def _after_audio_loaded(self, slot: str) -> None:
        if slot == "A" and self.player.engine.active_slot == "A":
            self.player.engine.seek(0.0)
            if self.player.autoplay_box.isChecked():
                self.player.play()
        if slot == "B" and self._play_b_when_ready:
            self._play_b_when_ready = False
            self.player.select("B")
            self.player.seek(0.0)
            self.player.play()

    def audio_ready(self, slot: str = "A") -> bool:
        """True once the clip in ``slot`` can be played (its audio is decoded)."""
        return slot not in self._audio_tasks and self.player.engine.has(slot)

    @Slot(str)
    def _on_slot_changed(self, slot: str) -> None:
        self._show_slot(slot)

    @Slot()
    def _on_load_as_b(self) -> None:
        clip = self.library_panel.current_clip()
        if clip is not None:
            self.set_slot("B", clip)
            self.player.message.setText(f"B: {clip.name}")

    @Slot(object)
    def _on_neighbour_clicked(self, clip: Clip) -> None:
        self.set_slot("B", clip)
        self.player.message.setText(f"B: {clip.name} (press 2 or Tab to hear it)")

    @Slot(object)
    def _on_neighbour_activated(self, clip: Clip) -> None:
        self._play_b_when_ready = True
        if self.slots.get("B") is not clip:
            self.set_slot("B", clip)
        elif self.audio_ready("B"):
            self._after_audio_loaded("B")

    @Slot(object, object)
    def _on_pair_clicked(self, a: Clip, b: Clip) -> None:
        self.library_panel.select_clip(a.id)
        self.set_slot("B", b)
        self.compare_dock.raise_()

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

    def _on_audition(self, clip: Clip) -> None:
        from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable

        if not self.player.available:
            return
        if self._preview is None:
            self._preview = PlaybackEngine()
        task = QtTask(load_audio, clip.path, self.config.sample_rate, with_progress=False)

        def play(wave):
            self._preview.stop()
            self._preview.load("A", wave)
            try:
                self._preview.play()
            except PlaybackUnavailable:
                pass

        task.signals.finished.connect(play)
        self.tasks.start(task)

    def _on_lasso(self, clips: list) -> None:
        if len(clips) >= 2:
            self.matrix_view.scope_box.setCurrentText("Selected clips")
            self.matrix_view.set_selection(clips)
            self.matrix_view.compute()
            self.matrix_dock.raise_()

    @Slot(float)
    def _on_seek_requested(self, seconds: float) -> None:
        self.player.seek(seconds)

    @Slot(object)
    def _on_loop_changed(self, region) -> None:
        if region is None:
            self.player.engine.set_loop(None, None)
        else:
            self.player.engine.set_loop(*region)

    def _set_loop_point(self, which: int) -> None:
        """a / b keys: loop start / end at the playhead."""
        pos = self.player.engine.position
        current = self.player.engine.loop or (0.0, self.player.engine.duration())
        region = (pos, max(current[1], pos + 0.05)) if which == 0 else (min(current[0], pos - 0.05), pos)
        region = (max(region[0], 0.0), region[1])
        self.player.engine.set_loop(*region)
        self.spectrogram.set_loop(self.player.engine.loop)

    # -- menu slots -----------------------------------------------------------
    def _on_open_library(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open library", "", "perceptlab library (*.sqlite);;All files (*)")
        if path:
            self.open_library(path)

    def _on_new_library(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New library", "library.sqlite", "perceptlab library (*.sqlite)")
        if path:
            self.open_library(path)

    def _on_import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import folder")
        if folder:
            self.import_paths([folder])

    # -- drag and drop ----------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.import_paths(paths)
            event.acceptProposedAction()

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
