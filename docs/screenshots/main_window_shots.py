"""Regenerate main-window.png and compare-panel.png (run under a display, e.g. Xvfb).

    Xvfb :91 -screen 0 1920x1080x24 &
    DISPLAY=:91 OMP_NUM_THREADS=1 python docs/screenshots/main_window_shots.py [--size 1280x800] [--out DIR]

The demo clips, and a copy of one delayed by 90 ms with white noise 20 dB
below it, are
imported into a fresh library in a temporary folder; the user's settings are
not read (a temporary config folder), so the window shows the default layout.
A is the piano clip, B its noisy delayed copy: the Compare panel says they
were time-aligned and where they differ; compare-panel.png shows B, whose
lead-in the spectrogram dims as left out of the comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _wait(app, cond, timeout=120.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1280x800", help="window size WxH")
    p.add_argument("--out", default=str(HERE), help="folder for the PNGs")
    p.add_argument("--suffix", default="", help="added to each PNG's name")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="perceptlab-shots-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp / "config"))
    app = QApplication.instance() or QApplication(sys.argv)

    from perceptlab.library.demo import demo_dir
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.main_window import QtMainWindow

    import numpy as np
    import soundfile as sf

    source = sorted((demo_dir() / "piano").iterdir())[0]
    wave, rate = sf.read(str(source), dtype="float32")
    noise = np.random.default_rng(0).standard_normal(wave.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(wave ** 2) / np.mean(noise ** 2)) * 10 ** (-20 / 20)
    delayed = np.concatenate([np.zeros((int(0.09 * rate),) + wave.shape[1:], np.float32), wave + noise])
    copies = tmp / "copies" / "piano"
    copies.mkdir(parents=True)
    copy_name = f"{source.stem}-noisy-delayed.flac"
    sf.write(str(copies / copy_name), delayed, rate)
    lib_path = tmp / "demo.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [demo_dir(), tmp / "copies"])
    w = QtMainWindow(library_path=lib_path)
    w.resize(width, height)
    w.show()
    _wait(app, lambda: w.metrics_loaded)
    clips = w.library_panel.model.clips()
    a = next(c for c in clips if c.name == source.name)
    b = next(c for c in clips if c.name == copy_name)
    w.library_panel.select_clip(a.id)
    _wait(app, lambda: w.spectrogram.has_image())
    w.set_slot("B", b)
    w.compare_dock.raise_()
    _wait(app, lambda: w.compare_panel.result is not None and w.spectrogram.compared() is not None)
    _wait(app, lambda: w.neighbours_panel.result is not None if hasattr(w.neighbours_panel, "result") else True)
    end = time.monotonic() + 3.0
    while time.monotonic() < end:  # the percentiles fill in as the library's matrices arrive
        app.processEvents()
        time.sleep(0.05)
    out = Path(args.out)
    w.grab().save(str(out / f"main-window{args.suffix}.png"))
    # B's spectrogram with the compared region marked, beside the Compare panel.
    from PySide6.QtCore import QRect

    w.player.select("B")
    _wait(app, lambda: w.spectrogram.compared() is not None)
    if hasattr(w.spectrogram, "fit"):  # the whole clip, as the A shot shows it
        w.spectrogram.fit()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)

    left = w.centralWidget().geometry().left()
    top = w.centralWidget().geometry().top()
    dock = w.compare_dock.geometry()
    w.grab(QRect(left, top, w.width() - left, dock.bottom() - top + 1)).save(
        str(out / f"compare-panel{args.suffix}.png"))
    w._close_decided = True
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
