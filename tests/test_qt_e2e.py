"""End to end: the real main window on a fresh library, the demo clips, the audio stack, the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QTimer, Qt  # noqa: E402

from perceptlab.audio.decode import load  # noqa: E402
from conftest import run_cli  # noqa: E402
from audio_sink import locate, played_samples, sink_path  # noqa: E402

pytestmark = [pytest.mark.qt, pytest.mark.audio, pytest.mark.slow]


def _cli(*args):
    return json.loads(run_cli(*args).stdout)


def test_app_end_to_end(qtbot, tmp_path):
    from perceptlab.library.demo import demo_dir
    from perceptlab.qt.main_window import QtMainWindow

    sink = sink_path()
    lib_path = tmp_path / "e2e.sqlite"
    w = QtMainWindow(library_path=lib_path)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    assert w.library_panel.model.rowCount() == 0

    # Import the demo clips (what a folder drop does), in the background.
    w.import_paths([str(demo_dir())])
    qtbot.waitUntil(lambda: w._import_task is None, timeout=120000)
    n = w.library_panel.model.rowCount()
    assert n >= 48

    # Select a clip, press Space: the device receives the clip.
    clips = w.library_panel.model.clips()
    a, b = clips[3], clips[30]
    w.library_panel.select_clip(a.id)
    qtbot.waitUntil(w.audio_ready, timeout=5000)
    w.library_panel.table.setFocus()
    qtbot.keyClick(w.library_panel.table, Qt.Key_Space)
    qtbot.waitUntil(lambda: w.player.engine.first_buffer_at is not None, timeout=3000)
    qtbot.waitUntil(lambda: not w.player.engine.is_playing, timeout=15000)
    expected = load(a.path) * w.player.engine.volume
    _, err = locate(expected, played_samples(sink))
    assert err < 1e-5, f"the audio at the device differs from {a.name} (max error {err})"

    # Set B, switch to it and back.
    w.set_slot("B", b)
    qtbot.waitUntil(lambda: w.audio_ready("B"), timeout=5000)
    qtbot.keyClick(w, Qt.Key_2)
    assert w.player.engine.active_slot == "B" and b.name in w.spectrogram.caption.text()
    qtbot.keyClick(w, Qt.Key_1)
    assert w.player.engine.active_slot == "A"

    # The compare panel shows what `perceptlab distance --json` prints.
    qtbot.waitUntil(lambda: w.compare_panel.result is not None and w.compare_panel.result["b"].id == b.id,
                    timeout=30000)
    cli = _cli("distance", a.id, b.id, "--json", "--library", lib_path)
    shown = w.compare_panel.values()
    for name, value in cli["distances"].items():
        assert shown[name] == pytest.approx(value, abs=1e-9), name
    # ... and the neighbours panel what `perceptlab neighbours --json` prints.
    qtbot.waitUntil(lambda: w.neighbours_panel.result is not None
                    and w.neighbours_panel.result["query"].id == a.id, timeout=30000)
    cli = _cli("neighbours", a.id, "--json", "--library", lib_path)
    for metric, rows in cli["neighbours"].items():
        got = w.neighbours_panel.top(metric)
        assert [r.clip.id for r in got] == [r["id"] for r in rows], metric
    w.close()


def test_event_loop_never_stalls_during_a_300_clip_matrix(qtbot, tmp_path):
    """A heartbeat timer on the GUI thread keeps ticking while matrices compute."""
    import soundfile as sf

    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.main_window import QtMainWindow

    rng = np.random.default_rng(0)
    root = tmp_path / "many"
    for i in range(300):
        p = root / f"c{i % 5}" / f"clip{i:03d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(3.0 * 22050)) / 22050
        x = 0.3 * np.sin(2 * np.pi * (100 + 7 * i) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(p, x.astype(np.float32), 22050)
    lib_path = tmp_path / "big.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [root])
    w = QtMainWindow(library_path=lib_path)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    # The app loads torch and the metric registry in a worker after the first
    # paint. Loading torch's C extensions holds the interpreter lock for a
    # second or two, once per process: a start-up cost (see `perceptlab bench
    # gui`), not the matrix work this test is about. Measure from when it is done.
    qtbot.waitUntil(lambda: w.metrics_loaded, timeout=60000)

    gaps, last = [], [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    timer.start()
    for metric in ("nlpd", "msssim", "mse"):
        w.analysis.request(metric)
    qtbot.waitUntil(lambda: not w.analysis.busy(), timeout=240000)
    timer.stop()
    assert w.analysis.matrix("msssim")[1].shape == (300, 300)
    # Wall-clock gaps between 10 ms heartbeats, on a machine whose cores are
    # shared with the workers and with other jobs: the OS may deschedule the
    # GUI thread now and then, so a single late tick says nothing about the
    # app. Work done on the GUI thread shows instead as many long gaps (a
    # per-row slot that blocks) or one huge one (a matrix computed in place,
    # seconds long). Hence: the 95th percentile under 100 ms (the GUI answers
    # input within a frame or so nearly all the time) and the worst gap under
    # 1 s (nothing blocks it for a noticeable while, scheduler hiccups
    # included).
    assert len(gaps) > 20, f"only {len(gaps)} heartbeats: the work was too short to judge"
    ms = 1000 * np.asarray(gaps)
    p50, p95, worst = np.percentile(ms, 50), np.percentile(ms, 95), ms.max()
    summary = f"{ms.size} gaps: median {p50:.0f} ms, 95th percentile {p95:.0f} ms, max {worst:.0f} ms"
    assert p95 < 100, f"the event loop was often blocked: {summary}"
    assert worst < 1000, f"the event loop stalled: {summary}"
    w.close()
