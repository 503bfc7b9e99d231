"""What the screenshot scripts beside this file share: waiting on the event loop, the demo library."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent


def wait_until(app, condition, timeout: float, what: str) -> None:
    """Run the event loop until ``condition()``; TimeoutError naming ``what`` after ``timeout`` s."""
    from PySide6.QtCore import QEventLoop

    t0 = time.monotonic()
    while not condition():
        app.processEvents(QEventLoop.AllEvents, 50)
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


def settle(app, seconds: float = 0.5) -> None:
    """Let pending layout and paint events run for ``seconds``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.02)


def demo_library(work: Path) -> Path:
    """The bundled demo clips imported into ``work``/demo.sqlite (once)."""
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    path = work / "demo.sqlite"
    if not path.exists():
        with Library(path) as lib:
            import_files(lib, [ROOT / "assets" / "demo"])
    return path
