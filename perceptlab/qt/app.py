"""Starting the desktop app."""

from __future__ import annotations

import sys
from pathlib import Path


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
