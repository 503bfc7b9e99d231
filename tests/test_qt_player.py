"""The player in the main window: keys, A/B switching, loop points, no-device mode."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402

from perceptlab.audio.decode import load  # noqa: E402
from audio_sink import locate, played_samples, sink_path  # noqa: E402

pytestmark = [pytest.mark.qt, pytest.mark.audio]


@pytest.fixture
def window(main_window):
    return main_window


def _select(window, qtbot, name):
    clip = next(c for c in window.library_panel.model.clips() if c.name == name)
    window.library_panel.select_clip(clip.id)
    qtbot.waitUntil(window.audio_ready, timeout=5000)
    return clip


def test_space_plays_the_selected_clip_to_the_device(window, qtbot):
    sink = sink_path()
    assert window.player.available, window.player.unavailable_reason
    clip = _select(window, qtbot, "mid_1.wav")
    window.library_panel.table.setFocus()
    qtbot.keyClick(window.library_panel.table, Qt.Key_Space)
    qtbot.waitUntil(lambda: window.player.engine.first_buffer_at is not None, timeout=3000)
    qtbot.waitUntil(lambda: not window.player.engine.is_playing, timeout=10000)
    expected = load(clip.path) * window.player.engine.volume
    k, err = locate(expected, played_samples(sink))
    assert err < 1e-5


def test_ab_keys_switch_and_keep_position(window, qtbot):
    sink_path()
    _select(window, qtbot, "low_0.wav")
    b = next(c for c in window.library_panel.model.clips() if c.name == "high_2.wav")
    window.set_slot("B", b)
    qtbot.waitUntil(lambda: window.audio_ready("B"), timeout=5000)
    window.player.seek(0.5)
    qtbot.keyClick(window, Qt.Key_2)
    assert window.player.engine.active_slot == "B"
    assert window.player.engine.position == pytest.approx(0.5, abs=1e-3)
    assert "high_2.wav" in window.spectrogram.caption.text()
    qtbot.keyClick(window, Qt.Key_Tab)
    assert window.player.engine.active_slot == "A" and "low_0.wav" in window.spectrogram.caption.text()
    qtbot.keyClick(window, Qt.Key_1)
    assert window.player.engine.active_slot == "A"


def test_loop_keys_and_shift_space(window, qtbot):
    sink_path()
    _select(window, qtbot, "mid_2.wav")
    window.player.seek(0.2)
    qtbot.keyClick(window, Qt.Key_A)
    window.player.seek(0.9)
    qtbot.keyClick(window, Qt.Key_B)
    assert window.player.engine.loop == pytest.approx((0.2, 0.9), abs=1e-3)
    assert window.spectrogram.loop() == pytest.approx((0.2, 0.9), abs=1e-3)
    qtbot.keyClick(window, Qt.Key_Space, Qt.ShiftModifier)
    assert window.player.loop_box.isChecked() and window.player.engine.loop_enabled
    # Moving the region on the spectrogram moves the engine's loop.
    window.spectrogram.loop_region.setRegion((0.3, 0.6))
    window.spectrogram.loop_region.sigRegionChangeFinished.emit(window.spectrogram.loop_region)
    assert window.player.engine.loop == pytest.approx((0.3, 0.6), abs=1e-3)
    # Esc stops and rewinds to the loop start.
    qtbot.keyClick(window, Qt.Key_Escape)
    assert window.player.engine.position == pytest.approx(0.3, abs=1e-3)


def test_click_on_spectrogram_seeks(window, qtbot):
    sink_path()
    _select(window, qtbot, "mid_2.wav")
    window.spectrogram.seek_requested.emit(0.75)
    assert window.player.engine.position == pytest.approx(0.75, abs=1e-3)


def test_autoplay_on_selection(window, qtbot):
    sink_path()
    window.player.autoplay_box.setChecked(True)
    _select(window, qtbot, "high_1.wav")
    qtbot.waitUntil(lambda: window.player.engine.first_buffer_at is not None, timeout=3000)


def test_no_audio_device_disables_playback_and_says_why(qtbot, monkeypatch):
    from perceptlab.qt import player_bar

    monkeypatch.setattr(player_bar, "audio_output_status", lambda: (False, "no audio output device (unplugged)"))
    bar = player_bar.QtPlayerBar()
    qtbot.addWidget(bar)
    assert not bar.play_button.isEnabled()
    assert "unplugged" in bar.play_button.toolTip() and "unplugged" in bar.message.text()
    assert bar.play() is False
