"""``perceptlab bench gui``: how fast the app answers a user.

Three figures, each the median of several tries on the demo library (imported
into a temporary library first, so the user's library is untouched):

* time to first window: a fresh ``python`` process, from its start to the
  main window being shown and painted, imports included;
* selection to spectrogram: selecting another clip in the table until its
  image is in the view, with the feature cache warm;
* Space to first audio buffer: the Space key until the audio callback has
  produced its first buffer (needs an audio output device).

Targets: under 2 s, 50 ms and 50 ms.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

TARGETS = {"first_window_s": 2.0, "select_to_spectrogram_ms": 50.0, "space_to_audio_ms": 50.0}

_FIRST_WINDOW = r"""
import time, sys
t0 = time.perf_counter()
from perceptlab.qt.app import create_app
from perceptlab.qt.main_window import QtMainWindow
app = create_app()
w = QtMainWindow(library_path=sys.argv[1])
w.show()
app.processEvents()
w.grab()  # forces a full paint
print(time.perf_counter() - t0)
"""


def _first_window_seconds(library: Path) -> float:
    """Wall time from launching a fresh interpreter to the painted window."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _FIRST_WINDOW, str(library)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    line = proc.stdout.readline()  # printed right after the first paint
    wall = time.perf_counter() - t0
    _, err = proc.communicate(timeout=120)
    try:
        float(line)
    except ValueError:
        raise RuntimeError("the app did not start: " + " / ".join(err.strip().splitlines()[-3:])) from None
    return wall


def run_gui_bench(repeats: int = 5, out: Callable[[str], None] = print) -> dict:
    from perceptlab.cli import demo_dir
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.app import display_problem

    if display_problem():  # a headless machine: measure with Qt's offscreen platform
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        out("no usable display: measuring with QT_QPA_PLATFORM=offscreen (no compositor, no vsync)")

    with tempfile.TemporaryDirectory(prefix="perceptlab-bench-gui-") as tmp:
        lib_path = Path(tmp, "bench.sqlite")
        with Library(lib_path) as lib:
            import_files(lib, [demo_dir()])
        first = [_first_window_seconds(lib_path) for _ in range(3)]

        # The in-process latencies below are measured offscreen, never in a window on the desktop.
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        from perceptlab.qt.app import create_app
        from perceptlab.qt.main_window import QtMainWindow

        app = create_app()
        w = QtMainWindow(library_path=lib_path)
        w.show()
        app.processEvents()
        clips = w.library_panel.model.clips()
        select_ms = []
        for i in range(repeats + 1):
            clip = clips[(i * 7) % len(clips)]
            t0 = time.perf_counter()
            w.library_panel.select_clip(clip.id)
            while not (w.spectrogram.has_image() and clip.name in w.spectrogram.caption.text()):
                app.processEvents()
            if i:  # the first one warms up pyqtgraph
                select_ms.append(1000 * (time.perf_counter() - t0))

        space_ms = []
        reason = ""
        if w.player.available:
            for i in range(repeats):
                w.library_panel.select_clip(clips[i].id)
                deadline = time.perf_counter() + 5
                while not w.audio_ready() and time.perf_counter() < deadline:
                    app.processEvents()
                w.player.stop()
                t0 = time.perf_counter()
                QTest.keyClick(w, Qt.Key_Space)
                while w.player.engine.first_buffer_at is None and time.perf_counter() - t0 < 2:
                    time.sleep(0.0005)
                if w.player.engine.first_buffer_at is not None:
                    space_ms.append(1000 * (w.player.engine.first_buffer_at - t0))
                w.player.stop()
        else:
            reason = w.player.unavailable_reason
        w.close()

    res = {
        "first_window_s": statistics.median(first),
        "select_to_spectrogram_ms": statistics.median(select_ms),
        "space_to_audio_ms": statistics.median(space_ms) if space_ms else None,
    }
    out("perceptlab bench gui (medians; targets in brackets)")
    out(f"  time to first window          {res['first_window_s']:7.2f} s   [< {TARGETS['first_window_s']:g} s]")
    out(f"  selection to spectrogram      {res['select_to_spectrogram_ms']:7.1f} ms  "
        f"[< {TARGETS['select_to_spectrogram_ms']:g} ms] (cache warm)")
    if res["space_to_audio_ms"] is None:
        out(f"  Space to first audio buffer       n/a   (no audio output: {reason})")
    else:
        out(f"  Space to first audio buffer   {res['space_to_audio_ms']:7.1f} ms  "
            f"[< {TARGETS['space_to_audio_ms']:g} ms]")
    return res
