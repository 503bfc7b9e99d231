"""Starting the desktop app."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def display_problem() -> str | None:
    """Why Qt could not open a window here, or None.

    Without a display Qt aborts the whole process (SIGABRT) instead of
    raising, so the app checks first and says what is missing.
    """
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("WAYLAND_DISPLAY"):
        return None
    if not os.environ.get("DISPLAY"):
        return ("no display (DISPLAY and WAYLAND_DISPLAY are unset): run perceptlab in a desktop session, "
                "or set QT_QPA_PLATFORM=offscreen to run it without a screen")
    import ctypes.util

    if ctypes.util.find_library("xcb-cursor") is None:
        return "Qt's X11 platform needs libxcb-cursor0 (Debian/Ubuntu: apt-get install libxcb-cursor0)"
    return None


def create_app(argv: list[str] | None = None):
    """The QApplication (created once), with the project's names set for QSettings."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName("perceptlab")
    app.setApplicationName("perceptlab")
    return app


def run_app(library_path: str | Path | None = None) -> int:
    """Open the main window on ``library_path`` and run the event loop."""
    from perceptlab.qt.main_window import QtMainWindow

    app = create_app()
    window = QtMainWindow(library_path=library_path)
    window.show()
    return app.exec()
