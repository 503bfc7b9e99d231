"""Regenerate docs/screenshots/ab-panes.png and spectrogram-zoom.png.

The main window on the demo library (built in a temporary folder), 1280x800,
piano A against a strings clip as B. Run with a display, e.g.::

    Xvfb :93 -screen 0 1920x1080x24 &
    DISPLAY=:93 OMP_NUM_THREADS=1 python docs/screenshots/spectrogram_shots.py

The A/B panes are fed here from the window's own slots (images, decoded
audio and compared regions) in case the window does not feed them itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _wait(app, until, timeout: float = 120.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def _settle(app, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="perceptlab-shots-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(tmp / var.lower())
    os.environ["PERCEPTLAB_LIBRARY"] = str(tmp / "demo.sqlite")

    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from perceptlab.audio.decode import load as load_audio
    from perceptlab.library.demo import ensure_demo_library
    from perceptlab.qt.main_window import QtMainWindow

    ensure_demo_library(tmp / "demo.sqlite").close()
    w = QtMainWindow(library_path=tmp / "demo.sqlite")
    w.resize(1280, 800)
    w.show()
    _wait(app, lambda: getattr(w, "metrics_loaded", False), what="the metric registry")
    clips = {c.name: c for c in w.library_panel.model.clips()}
    a = clips["piano_01.flac"]
    b = next(c for name, c in sorted(clips.items()) if name.startswith("strings"))
    w.library_panel.select_clip(a.id)
    w.set_slot("B", b)
    _wait(app, lambda: w._images["A"] is not None and w._images["B"] is not None, what="both spectrograms")
    _wait(app, lambda: w.compare_panel.compared_region("A", a, b) is not None, what="the A/B comparison")
    view = w.spectrogram
    for slot, clip in (("A", a), ("B", b)):
        view.set_slot_image(slot, w._images[slot], w.config, f"{slot}: {clip.name}  ·  {clip.label or 'no label'}")
        view.set_slot_waveform(slot, load_audio(clip.path, w.config.sample_rate), w.config.sample_rate)
        view.set_slot_compared(slot, *w.compare_panel.compared_region(slot, a, b))
    view.set_active_slot("A")
    view.set_loop((1.0, 2.0))
    view.set_playhead(1.6)
    view.set_panes(True)
    _settle(app)
    w.grab().save(str(HERE / "ab-panes.png"))

    # Single view, zoomed: four wheel clicks in time, two Ctrl+wheel in frequency, over the onset.
    view.set_panes(False)
    w._show_slot("A")
    _settle(app)
    vp = view.graphics.viewport()
    scene = view.plot.getViewBox().mapViewToScene(QPointF(1.5, 50.0))
    pos = view.graphics.mapFromScene(scene)
    for clicks, mods in ((4, Qt.NoModifier), (2, Qt.ControlModifier)):
        for _ in range(clicks):
            ev = QWheelEvent(QPointF(pos), QPointF(vp.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120),
                             Qt.NoButton, mods, Qt.NoScrollPhase, False)
            QApplication.sendEvent(vp, ev)
    view.set_playhead(1.6)
    _settle(app)
    w.grab().save(str(HERE / "spectrogram-zoom.png"))
    print(f"wrote {HERE / 'ab-panes.png'} and {HERE / 'spectrogram-zoom.png'}")
    w._close_decided = True
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
