"""The playback engine through the real audio stack (ALSA file sink in CI)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable, audio_output_status, loudness_lufs
from audio_sink import locate, played_samples, sink_path

pytestmark = pytest.mark.audio


def _signal(seconds=0.5, rate=22050, freq=330.0, amp=0.4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _play_to_end(engine, timeout=10.0):
    engine.play()
    deadline = time.monotonic() + timeout
    while engine.is_playing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine.is_playing


def test_played_audio_reaches_the_device_unchanged():
    sink = sink_path()
    ok, why = audio_output_status()
    assert ok, why
    x = _signal()
    engine = PlaybackEngine()
    engine.load("A", x)
    try:
        _play_to_end(engine)
    finally:
        engine.close()
    k, err = locate(x, played_samples(sink))
    assert k >= 0 and err < 1e-6, f"played audio differs from the clip (max error {err})"
    assert engine.first_buffer_at is not None


def test_volume_and_loudness_matching():
    sink = sink_path()
    loud, quiet = _signal(amp=0.6), _signal(amp=0.15, seed=1)
    engine = PlaybackEngine()
    engine.load("A", loud)
    engine.load("B", quiet)
    engine.set_loudness_match(True)
    rate = engine.sample_rate
    assert loudness_lufs(loud * engine.gain("A"), rate) == pytest.approx(loudness_lufs(quiet * engine.gain("B"), rate),
                                                                         abs=0.01)
    assert engine.gain("B") == pytest.approx(1.0)  # the quieter one is never boosted
    engine.volume = 0.5
    try:
        _play_to_end(engine)
    finally:
        engine.close()
    expected = loud * engine.gain("A") * 0.5
    k, err = locate(expected, played_samples(sink))
    assert err < 1e-6


def test_loudness_matching_uses_bs1770_not_rms():
    from perceptlab.audio.loudness import integrated_loudness

    rate = 44100
    t = np.arange(2 * rate) / rate
    # Equal RMS; K-weighting hears the 3 kHz tone about 4.5 dB louder than the 100 Hz one.
    low = (0.3 * np.sin(2 * np.pi * 100.0 * t)).astype(np.float32)
    high = (0.3 * np.sin(2 * np.pi * 3000.0 * t)).astype(np.float32)
    engine = PlaybackEngine(sample_rate=rate)
    engine.load("A", low)
    engine.load("B", high)
    assert engine.gain("A") == engine.gain("B") == 1.0  # matching is off
    engine.set_loudness_match(True)
    assert engine.loudness("B") == pytest.approx(integrated_loudness(high, rate), abs=1e-9)
    assert engine.loudness("B") - engine.loudness("A") > 3.0
    assert engine.gain("A") == pytest.approx(1.0)  # the quieter one is never boosted
    assert engine.gain("B") < 10 ** (-3.0 / 20)
    assert loudness_lufs(high * engine.gain("B"), rate) == pytest.approx(loudness_lufs(low, rate), abs=0.01)
    # Reloading a slot measures it again; silence is never boosted and sets no target.
    engine.load("B", np.zeros(rate, np.float32))
    assert engine.loudness("B") == float("-inf")
    assert engine.gain("A") == engine.gain("B") == 1.0
    engine.set_loudness_match(False)
    engine.load("B", high)
    assert engine.gain("B") == 1.0
    engine.close()


def test_ab_switch_keeps_position_and_loop_wraps():
    sink_path()
    a, b = _signal(1.0, freq=200.0), _signal(1.0, freq=800.0, seed=3)
    engine = PlaybackEngine()
    engine.load("A", a)
    engine.load("B", b)
    engine.seek(0.4)
    engine.select("B")
    assert engine.active_slot == "B" and engine.position == pytest.approx(0.4, abs=1e-4)
    # Callback driven directly: loop 0.2-0.3 s wraps inside the region.
    engine.set_loop(0.2, 0.3)
    engine.loop_enabled = True
    engine.seek(0.29)
    engine._playing = True
    out = np.zeros((512, 1), np.float32)
    engine._callback(out, 512, None, None)
    start = int(0.29 * 22050)
    first = int(0.3 * 22050) - start
    np.testing.assert_array_equal(out[:first, 0], b[start : start + first])
    np.testing.assert_array_equal(out[first:, 0], b[int(0.2 * 22050) : int(0.2 * 22050) + 512 - first])
    assert 0.2 <= engine.position < 0.3
    assert engine.level == pytest.approx(np.abs(out).max())


def test_unavailable_device_is_a_clear_error(monkeypatch):
    from perceptlab.audio import playback

    monkeypatch.setattr(playback, "audio_output_status", lambda: (False, "no audio output device (test)"))
    engine = PlaybackEngine()
    engine.load("A", _signal())
    with pytest.raises(PlaybackUnavailable, match="no audio output device"):
        engine.play()
