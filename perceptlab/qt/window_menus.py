"""The main window's menus, window-wide keys, help and recent libraries.

:class:`WindowMenusMixin` holds the methods of
:class:`~perceptlab.qt.main_window.QtMainWindow` that build the File, View,
Playback and Help menus, install the player's window-wide shortcuts, open the
shortcuts list and the local README (no network), and keep the list of recent
libraries.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import QFileDialog

from perceptlab.qt.dialogs import QtShortcutsDialog, readme_path
from perceptlab.qt.window_layout import settings

MAX_RECENT = 8
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


class WindowMenusMixin:
    """Menus, keys and help of :class:`~perceptlab.qt.main_window.QtMainWindow`."""

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
