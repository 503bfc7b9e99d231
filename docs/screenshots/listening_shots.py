"""Regenerate listening-screen.png and session-dialog.png (the window at 1280x800).

Run from the repository root on a display (an Xvfb one is fine)::

    Xvfb :95 -screen 0 1920x1080x24 &
    DISPLAY=:95 OMP_NUM_THREADS=1 python docs/screenshots/listening_shots.py

It imports the demo clips into a temporary library, creates a MUSHRA
session, rates a few conditions, and opens the session dialog filled in.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="perceptlab-shots-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(tmp / var.lower())
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtTest import QTest

    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.app import create_app
    from perceptlab.qt.main_window import QtMainWindow

    lib_path = tmp / "demo.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [ROOT / "assets" / "demo"])
    app = create_app()

    def wait_until(cond, ms=120000):
        loop_ms = 0
        while not cond() and loop_ms < ms:
            QTest.qWait(50)
            loop_ms += 50
        if not cond():
            raise SystemExit("timed out waiting for the window")

    w = QtMainWindow(library_path=str(lib_path))
    w.resize(1280, 800)
    w.show()
    QTest.qWaitForWindowExposed(w)
    wait_until(lambda: w.metrics_loaded)
    w.central_tabs.setCurrentWidget(w.listening_view)
    v = w.listening_view
    v.create_session("mushra", "demo listener", n_items=2, seed=1)
    wait_until(v.sounds_ready)
    for key, score in zip("12345678", (88, 35, 14, 62, 47, 72, 25, 96)):
        v.play_sound(int(key))
        v.sliders[str(key)].setValue(score)
    v.play_sound(6)
    QTest.qWait(300)
    w.grab().save(str(OUT / "listening-screen.png"))

    dlg = v.new_session_dialog()
    dlg.design_box.setCurrentIndex(dlg.design_box.findData("triplet"))
    dlg.listener_edit.setText("listener 02")
    dlg.search_edit.setText("drums")
    dlg.check_shown.click()
    dlg.search_edit.setText("pia")
    dlg.check_shown.click()
    dlg.trials_spin.setValue(40)
    dlg.catch_spin.setValue(4)
    dlg.seed_spin.setValue(7)
    dlg.source_box.setCurrentIndex(dlg.source_box.findData("stimuli"))
    got = []
    dlg.preview_ready.connect(got.append)
    dlg.trials_spin.setValue(40)
    dlg.preview()
    wait_until(lambda: got)
    dlg.play_preview(1)
    dlg.resize(1220, 760)
    QTest.qWait(300)
    dlg.grab().save(str(OUT / "session-dialog.png"))
    dlg.reject()
    loop = QEventLoop()
    QTimer.singleShot(100, loop.quit)
    loop.exec()
    w._close_decided = True
    w.close()
    print(f"wrote {OUT / 'listening-screen.png'} and {OUT / 'session-dialog.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
