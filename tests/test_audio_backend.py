"""A broken audio stack turns playback off with a reason; it never takes the process down.

PortAudio aborts (SIGABRT) inside ``Pa_Initialize`` when the ALSA
configuration is missing, so these tests point ``ALSA_CONFIG_PATH`` at a file
that does not exist, or at one full of garbage, and check that the app and the
check itself come through.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from perceptlab.audio import backend
from audio_sink import sink_path

MISSING_CONF = "/nonexistent/alsa.conf"


@pytest.fixture
def garbage_conf(tmp_path):
    path = tmp_path / "garbage.conf"
    path.write_text("this is {{ not an ALSA configuration ;;\n")
    return str(path)


@pytest.fixture
def fresh_status():
    """The process's cached answer is asked again in the test, and again after it."""
    backend.forget_status()
    yield
    backend.forget_status()


@pytest.fixture
def broken_alsa(monkeypatch, fresh_status):
    monkeypatch.setenv("ALSA_CONFIG_PATH", MISSING_CONF)


def _env(**overrides) -> dict:
    return dict(os.environ, **overrides)


# -- the check, in a child process ------------------------------------------------------------
@pytest.mark.audio
@pytest.mark.parametrize("conf", ["missing", "garbage"])
def test_probe_reports_a_broken_alsa_configuration(conf, garbage_conf):
    path = MISSING_CONF if conf == "missing" else garbage_conf
    status = backend.probe_audio_backend(env=_env(ALSA_CONFIG_PATH=path))
    assert not status.available
    assert "PortAudio" in status.reason and "ALSA_CONFIG_PATH" in status.reason, status.reason
    assert path in status.reason
    if conf == "missing":
        assert "aborted" in status.reason and "SIGABRT" in status.reason, status.reason
        assert "does not exist" in status.reason
    assert status.seconds < backend.PROBE_TIMEOUT_S


@pytest.mark.audio
def test_probe_finds_the_output_of_a_working_configuration():
    sink_path()  # the ALSA file sink CI sets up (a failure, not a skip, under PERCEPTLAB_STRICT=1)
    status = backend.probe_audio_backend()
    assert status.available, status.reason
    assert status.device and status.reason == ""


def test_a_child_killed_by_a_signal_is_named_with_its_last_words(monkeypatch):
    monkeypatch.setattr(backend, "_PROBE_SCRIPT",
                        "import os, sys\nsys.stderr.write('pcm.c:2664: assertion failed\\n')\n"
                        "sys.stderr.flush()\nos.abort()\n")
    status = backend.probe_audio_backend()
    assert not status.available
    assert "signal SIGABRT" in status.reason and "pcm.c:2664: assertion failed" in status.reason


def test_a_child_that_hangs_is_given_up_on():
    status = backend.probe_audio_backend(timeout=0.01)
    assert not status.available and "did not answer within" in status.reason


def test_the_answer_is_asked_once_per_process(monkeypatch, fresh_status):
    calls = []
    monkeypatch.setattr(backend, "probe_audio_backend",
                        lambda: calls.append(1) or backend.AudioBackendStatus(False, "test"))
    first = backend.backend_status()
    assert backend.backend_status() is first and backend.backend_status(wait=False) is first
    assert len(calls) == 1


@pytest.mark.audio
def test_playback_engine_in_a_broken_process_raises_instead_of_aborting():
    # In a child: were sounddevice imported in that process, it would die with SIGABRT.
    code = (
        "import numpy as np\n"
        "from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable, audio_output_status\n"
        "ok, why = audio_output_status()\n"
        "assert not ok, why\n"
        "engine = PlaybackEngine()\n"
        "engine.load('A', np.zeros(2048, np.float32))\n"
        "try:\n"
        "    engine.play()\n"
        "except PlaybackUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
        "import sys\n"
        "assert 'sounddevice' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=_env(ALSA_CONFIG_PATH=MISSING_CONF))
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert "unavailable: PortAudio aborted while initialising" in out.stdout


# -- the app --------------------------------------------------------------------------------
@pytest.mark.qt
@pytest.mark.parametrize("conf", ["missing", "garbage"])
def test_app_starts_with_playback_off_under_a_broken_alsa_configuration(conf, garbage_conf, tmp_path):
    pytest.importorskip("PySide6.QtWidgets")
    path = MISSING_CONF if conf == "missing" else garbage_conf
    env = _env(ALSA_CONFIG_PATH=path, QT_QPA_PLATFORM="offscreen", PERCEPTLAB_QUIT_AFTER_MS="3000",
               OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "perceptlab.cli", "gui", "--library", str(tmp_path / "lib.sqlite")],
                         capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode != -signal.SIGABRT, f"the app aborted: {out.stderr}"
    assert out.returncode == 0, out.stderr
    assert "perceptlab: warning: audio output unavailable: PortAudio" in out.stderr, out.stderr
    assert "ALSA_CONFIG_PATH" in out.stderr


@pytest.mark.qt
def test_player_bar_shows_playback_off_and_why(qtbot, broken_alsa):
    from perceptlab.qt.player_bar import QtPlayerBar

    bar = QtPlayerBar()
    qtbot.addWidget(bar)
    qtbot.waitUntil(lambda: bar.audio_checked, timeout=10000)
    assert not bar.available
    assert "PortAudio aborted while initialising" in bar.unavailable_reason
    for w in (bar.play_button, bar.stop_button, bar.loop_box, bar.autoplay_box, bar.volume):
        assert not w.isEnabled()
        assert "PortAudio aborted" in w.toolTip()
    assert bar.message.text().startswith("Playback off: PortAudio aborted")
    assert "ALSA_CONFIG_PATH" in bar.message.text()
    assert bar.play() is False


@pytest.mark.qt
def test_player_bar_says_it_is_checking_until_the_answer_comes(qtbot, monkeypatch):
    from perceptlab.qt import player_bar

    release = threading.Event()

    def slow_status():
        release.wait(10)
        return True, "test device"

    monkeypatch.setattr(player_bar, "audio_output_status", slow_status)
    monkeypatch.setattr(player_bar.QtPlayerBar, "AUDIO_CHECK_WAIT_S", 0.01)
    bar = player_bar.QtPlayerBar()
    qtbot.addWidget(bar)
    assert not bar.audio_checked and not bar.play_button.isEnabled()
    assert "checking" in bar.message.text()
    assert bar.play() is False
    with qtbot.waitSignal(bar.availability_changed, timeout=5000) as blocker:
        release.set()
    assert blocker.args == [True, ""]
    assert bar.available and bar.play_button.isEnabled() and bar.message.text() == ""
    assert bar.play_button.toolTip() == "Play / pause (Space)"


@pytest.mark.qt
def test_main_window_status_bar_says_playback_is_off(broken_alsa, main_window, qtbot):
    qtbot.waitUntil(lambda: main_window.player.audio_checked, timeout=10000)
    assert main_window.audio_status_label.text() == "Playback off"
    assert "PortAudio aborted" in main_window.audio_status_label.toolTip()
    assert "PortAudio aborted" in main_window.player.message.text()
