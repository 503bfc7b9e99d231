"""The main window: library browser, spectrogram, background tasks."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
)

from perceptlab.audio.features import FeatureConfig
from perceptlab.library.features import clip_image
from perceptlab.library.importer import import_files
from perceptlab.library.store import Clip, Library, LibraryError
from perceptlab.qt.library_panel import QtLibraryPanel
from perceptlab.qt.spectrogram_view import QtSpectrogramView
from perceptlab.qt.workers import QtTask, QtTaskRunner

MAX_RECENT = 8


def settings() -> QSettings:
    """Window state and preferences (an INI file in the user config folder)."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "perceptlab", "perceptlab")


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

        self.spectrogram = QtSpectrogramView(self)
        self.setCentralWidget(self.spectrogram)
        self.library_panel = QtLibraryPanel(self)
        self.library_dock = self._add_dock("Library", self.library_panel, Qt.LeftDockWidgetArea)
        self.resizeDocks([self.library_dock], [440], Qt.Horizontal)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)

        self._build_menus()
        self.library_panel.clip_selected.connect(self._on_clip_selected)
        self.setAcceptDrops(True)
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
        self._refresh_recent_menu()

    def _restore_state(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        state = s.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        cmap = s.value("view/colormap")
        if cmap:
            self.spectrogram.set_colormap(str(cmap))

    # -- library ------------------------------------------------------------
    def open_library(self, path: str | Path) -> bool:
        """Open a library file (created if missing) and show its clips."""
        try:
            lib = Library(path)
        except LibraryError as exc:
            QMessageBox.critical(self, "Cannot open library", str(exc))
            return False
        if self.library is not None:
            self.library.close()
        self.library = lib
        self.setWindowTitle(f"perceptlab — {lib.path.name}")
        self._remember_recent(str(lib.path))
        self.reload_clips()
        return True

    def reload_clips(self) -> None:
        if self.library is None:
            return
        clips = self.library.clips(include_failed=True)
        self.library_panel.set_clips(clips)
        ok = sum(c.ok for c in clips)
        self.status_label.setText(f"{ok} clips in {self.library.path}" + (
            f" ({len(clips) - ok} failed to import)" if ok < len(clips) else ""))

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
        self._show_progress("Importing…")
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
        self.status_label.setText(text)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()

    def _hide_progress(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    @Slot(int, int)
    def _on_task_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        if self._import_task is not None:
            self._import_task.cancel()

    @Slot(object)
    def _on_import_finished(self, summary) -> None:
        self._import_task = None
        self._hide_progress()
        self.reload_clips()
        self.status_label.setText(summary.text().splitlines()[0])
        if summary.failed:
            self.status_label.setToolTip(summary.text())

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

    # -- selection -> spectrogram -----------------------------------------------
    @Slot(object)
    def _on_clip_selected(self, clip: Clip | None) -> None:
        if self._image_task is not None:
            self._image_task.cancel()
            self._image_task = None
        if clip is None or self.library is None:
            self.spectrogram.set_image(None)
            return
        if not clip.ok:
            self.spectrogram.set_image(None, caption=f"{clip.name}: {clip.error}")
            return
        cached = self.library.get_features(clip.content_hash, self.config.hash)
        if cached is not None:
            self._show_clip_image(clip, cached)
            return
        self.spectrogram.set_image(None, caption=f"{clip.name}: computing spectrogram…")
        task = QtTask(_compute_image, str(self.library.path), clip, self.config)
        task.signals.finished.connect(lambda img, c=clip, t=task: self._on_image_ready(t, c, img))
        task.signals.failed.connect(lambda msg, _tb, c=clip: self.spectrogram.set_image(None, caption=f"{c.name}: {msg}"))
        self._image_task = task
        self.tasks.start(task)

    def _on_image_ready(self, task: QtTask, clip: Clip, image) -> None:
        if task is self._image_task:
            self._image_task = None
            self._show_clip_image(clip, image)

    def _show_clip_image(self, clip: Clip, image) -> None:
        self.spectrogram.set_image(image, self.config, caption=f"{clip.name}  ·  {clip.label or 'no label'}")

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
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("view/colormap", self.spectrogram.cmap_box.currentText())
        self.tasks.cancel_all()
        self.tasks.wait(5000)
        if self.library is not None:
            self.library.close()
        super().closeEvent(event)
