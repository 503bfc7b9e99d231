"""Starting the desktop app.

``PERCEPTLAB_QUIT_AFTER_MS``: if set to a number, the window closes itself
that many milliseconds after it is shown and the app exits normally; for
start-up tests and scripted smoke checks.
"""

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


QUIT_AFTER_ENV = "PERCEPTLAB_QUIT_AFTER_MS"


def _report_audio(ok: bool, why: str) -> None:
    # The window shows it too; this line is for whoever started the app from a terminal.
    if not ok:
        print(f"perceptlab: warning: audio output unavailable: {why}; playback is off", file=sys.stderr, flush=True)


def run_app(library_path: str | Path | None = None) -> int:
    """Open the main window on ``library_path`` and run the event loop."""
    from perceptlab.audio.backend import start_probe

    quit_after = os.environ.get(QUIT_AFTER_ENV, "").strip()
    try:
        quit_after_ms = int(quit_after) if quit_after else None
    except ValueError:
        raise ValueError(f"{QUIT_AFTER_ENV} must be a whole number of milliseconds, got {quit_after!r}") from None

    # The audio check (a child process) runs while Qt and the views import,
    # so its answer is usually there before the player bar asks for it.
    start_probe()
    from perceptlab.qt.main_window import QtMainWindow

    app = create_app()
    window = QtMainWindow(library_path=library_path)
    if window.player.audio_checked:
        _report_audio(window.player.available, window.player.unavailable_reason)
    else:
        window.player.availability_changed.connect(_report_audio)
    window.show()
    if quit_after_ms is not None:
        from PySide6.QtCore import QTimer

        QTimer.singleShot(quit_after_ms, window, window.close)
    return app.exec()
