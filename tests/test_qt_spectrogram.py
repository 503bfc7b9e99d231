"""The spectrogram view driven as a user would: wheel zoom per axis, Fit, colour-bar
limits, frequency ticks, the waveform strip and the A/B panes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QFontMetrics, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

pytestmark = pytest.mark.qt

N_MELS = 128


def _image(n_frames: int = 430, seed: int = 0) -> np.ndarray:
    """A (128, T) image in [0, 1]: a ramp in time, texture on top."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.1, 0.9, n_frames)[None, :]
    return np.clip(ramp + 0.05 * rng.standard_normal((N_MELS, n_frames)), 0, 1).astype(np.float32)


@pytest.fixture
def view(qtbot):
    from perceptlab.qt.spectrogram_view import QtSpectrogramView

    v = QtSpectrogramView()
    qtbot.addWidget(v)
    v.resize(900, 560)
    v.show()
    qtbot.waitExposed(v)
    v.set_image(_image())
    return v


def _scene_point(view, plot, tx: float, ty: float) -> QPoint:
    """Viewport pixel of data point (tx, ty) in ``plot``."""
    scene = plot.getViewBox().mapViewToScene(QPointF(tx, ty))
    return view.graphics.mapFromScene(scene)


def _wheel(view, pos: QPoint, clicks: int = 1, modifiers=Qt.NoModifier) -> None:
    """Real wheel events at a viewport pixel: +clicks zooms in, -clicks out."""
    vp = view.graphics.viewport()
    for _ in range(abs(clicks)):
        delta = 120 if clicks > 0 else -120
        ev = QWheelEvent(QPointF(pos), QPointF(vp.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, delta),
                         Qt.NoButton, modifiers, Qt.NoScrollPhase, False)
        QApplication.sendEvent(vp, ev)


def _ranges(plot):
    (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
    return x0, x1, y0, y1


def test_plain_wheel_zooms_time_only_around_the_pointer(view):
    d = view.duration()
    x0, x1, y0, y1 = _ranges(view.plot)
    assert (x0, x1, y0, y1) == pytest.approx((0.0, d, 0.0, N_MELS), abs=1e-6)
    at = _scene_point(view, view.plot, 0.7 * d, 64.0)
    t_before = view.plot.getViewBox().mapSceneToView(view.graphics.mapToScene(at)).x()
    _wheel(view, at, 3)
    nx0, nx1, ny0, ny1 = _ranges(view.plot)
    assert (nx1 - nx0) < 0.6 * d  # three clicks zoomed in time
    assert (ny0, ny1) == pytest.approx((0.0, N_MELS), abs=1e-6)  # frequency untouched
    t_after = view.plot.getViewBox().mapSceneToView(view.graphics.mapToScene(at)).x()
    assert t_after == pytest.approx(t_before, abs=0.01 * d)  # the time under the pointer stays put


def test_ctrl_wheel_zooms_frequency_only(view):
    d = view.duration()
    at = _scene_point(view, view.plot, 0.5 * d, 100.0)
    _wheel(view, at, 3, Qt.ControlModifier)
    x0, x1, y0, y1 = _ranges(view.plot)
    assert (x0, x1) == pytest.approx((0.0, d), abs=1e-6)
    assert (y1 - y0) < 0.6 * N_MELS and y0 <= 100.0 <= y1


def test_zoom_never_leaves_the_data(view):
    d = view.duration()
    at = _scene_point(view, view.plot, 0.9 * d, 120.0)
    _wheel(view, at, 4)
    _wheel(view, at, 4, Qt.ControlModifier)
    _wheel(view, at, -30)
    _wheel(view, at, -30, Qt.ControlModifier)
    x0, x1, y0, y1 = _ranges(view.plot)
    assert x0 >= -1e-9 and x1 <= d + 1e-9 and y0 >= -1e-9 and y1 <= N_MELS + 1e-9
    assert (x0, x1, y0, y1) == pytest.approx((0.0, d, 0.0, N_MELS), abs=1e-3)
    # Zoomed in as far as it goes, the view still shows a few frames and bands.
    _wheel(view, at, 60)
    _wheel(view, at, 60, Qt.ControlModifier)
    x0, x1, y0, y1 = _ranges(view.plot)
    assert x1 - x0 > 0.0 and y1 - y0 >= 2.0
    assert x0 >= -1e-9 and x1 <= d + 1e-9 and y0 >= -1e-9 and y1 <= N_MELS + 1e-9


def test_fit_button_and_key_fit_the_image_exactly(view, qtbot):
    d = view.duration()
    at = _scene_point(view, view.plot, 0.3 * d, 40.0)
    _wheel(view, at, 5)
    _wheel(view, at, 5, Qt.ControlModifier)
    assert _ranges(view.plot)[1] - _ranges(view.plot)[0] < 0.5 * d
    assert view.fit_button.text() == "Fit" and "F" in view.fit_button.toolTip()
    qtbot.mouseClick(view.fit_button, Qt.LeftButton)
    assert _ranges(view.plot) == pytest.approx((0.0, d, 0.0, N_MELS), abs=1e-9)  # no padding
    # The F key fits too, while the view has focus.
    _wheel(view, at, 5)
    view.graphics.setFocus()
    qtbot.waitUntil(view.graphics.hasFocus)
    qtbot.keyClick(view.graphics, Qt.Key_F)
    assert _ranges(view.plot) == pytest.approx((0.0, d, 0.0, N_MELS), abs=1e-9)
    # pyqtgraph's unlabelled auto-range button is gone.
    assert view.plot.autoBtn is None or not view.plot.autoBtn.isVisible()


@pytest.mark.parametrize("band, height", [(64.0, 560), (126.0, 560), (2.0, 560), (126.0, 300)])
def test_frequency_ticks_stay_readable_at_every_zoom(view, qtbot, band, height):
    view.resize(900, height)
    qtbot.waitUntil(lambda: view.graphics.height() < height - 20)
    view.fit()
    axis = view.plot.getAxis("left")
    at = _scene_point(view, view.plot, 1.0, band)
    for step in range(12):
        y0, y1 = view.plot.getViewBox().viewRange()[1]
        height = view.plot.getViewBox().height()
        levels = axis.tickValues(y0, y1, height)
        ticks = sorted(v for _spacing, values in levels for v in values if y0 <= v <= y1)
        assert len(ticks) >= 3, f"only {len(ticks)} frequency ticks over bands {y0:.1f}-{y1:.1f}"
        gaps = np.diff(ticks) * height / (y1 - y0)
        assert gaps.min() >= QFontMetrics(axis.font()).height(), "frequency tick labels overlap"
        labels = axis.tickStrings(ticks, 1.0, 1.0)
        assert len(set(labels)) == len(labels) and all(labels)
        _wheel(view, at, 1, Qt.ControlModifier)


def test_colour_bar_handles_stay_within_the_feature_db_range(view):
    from perceptlab.audio.features import FeatureConfig

    cfg = FeatureConfig()
    bar = view.colorbar
    assert view.levels() == pytest.approx((cfg.db_floor, cfg.db_ceiling))
    # Drag the top handle far up, the bottom one far down (what a mouse drag does).
    bar.region.setRegion((0.0, 256.0))
    bar.region.sigRegionChangeFinished.emit(bar.region)
    low, high = view.levels()
    assert low >= cfg.db_floor - 1e-9 and high <= cfg.db_ceiling + 1e-9
    axis_lo, axis_hi = bar.axis.range
    assert axis_lo >= cfg.db_floor - 1e-9 and axis_hi <= cfg.db_ceiling + 1e-9  # no rescale past the ceiling
    with pytest.raises(ValueError, match="dB"):
        view.set_levels(-90.0, 0.0)
    with pytest.raises(ValueError, match="below"):
        view.set_levels(-10.0, -20.0)
    view.set_levels(-60.0, 0.0)
    assert view.levels() == pytest.approx((-60.0, 0.0))


def _mouse_move(view, pos: QPoint) -> None:
    """A real mouse-move event over the viewport (what the hover readout listens to)."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent

    vp = view.graphics.viewport()
    ev = QMouseEvent(QEvent.MouseMove, QPointF(pos), QPointF(vp.mapToGlobal(pos)), Qt.NoButton, Qt.NoButton,
                     Qt.NoModifier)
    QApplication.sendEvent(vp, ev)


def _two_part_wave(rate: int = 22050):
    """1 s of silence, then 1 s alternating +-0.5 (every slice of it spans -0.5..0.5)."""
    loud = 0.5 * (-1.0) ** np.arange(rate)
    return np.concatenate([np.zeros(rate), loud]).astype(np.float32)


def test_envelope_is_the_min_and_max_of_each_slice():
    from perceptlab.qt.waveform_strip import envelope

    x = np.array([0.0, 1.0, -1.0, 0.5, 0.2, -0.3, 0.0, 0.9], np.float32)
    t, low, high = envelope(np.tile(x, 100), 8.0, 0.0, 100.0, 100)  # 100 slices of 8 samples
    assert t.size == 100 and np.allclose(low, -1.0) and np.allclose(high, 1.0)
    assert t[1] == pytest.approx(1.0)
    # Fewer samples than columns: the samples themselves.
    t, low, high = envelope(x, 8.0, 0.0, 1.0, 400)
    assert np.array_equal(low, x) and np.array_equal(high, x) and t[-1] == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="mono"):
        envelope(np.zeros((4, 2)), 8.0, 0.0, 1.0, 10)
    with pytest.raises(ValueError, match="rate"):
        envelope(x, 0.0, 0.0, 1.0, 10)


def test_waveform_strip_follows_the_spectrogram_and_shows_the_marks(view, qtbot):
    from perceptlab.audio.features import FeatureConfig

    cfg = FeatureConfig()
    wave = _two_part_wave(cfg.sample_rate)
    frames = cfg.frames_for(wave.size)
    view.set_image(_image(frames), cfg, caption="two parts")
    assert view.strip.scene() is None  # no strip before there is a waveform
    view.set_waveform(wave, cfg.sample_rate)
    strip = view.strip
    assert strip.scene() is view.graphics.scene() and strip.has_waveform()
    qtbot.waitUntil(lambda: strip.envelope_shown()[0].size > 0)
    t, low, high = strip.envelope_shown()
    quiet, loud = t < 0.95, t > 1.05
    assert np.abs(np.concatenate([low[quiet], high[quiet]])).max() < 1e-6
    assert high[loud].min() == pytest.approx(0.5, abs=0.02) and low[loud].max() == pytest.approx(-0.5, abs=0.02)
    # The strip sits on the spectrogram's time axis: plot and strip start and end at the same pixel.
    assert strip.getViewBox().sceneBoundingRect().left() == pytest.approx(
        view.plot.getViewBox().sceneBoundingRect().left(), abs=1.0)
    assert strip.getViewBox().sceneBoundingRect().right() == pytest.approx(
        view.plot.getViewBox().sceneBoundingRect().right(), abs=1.0)
    # Zooming the spectrogram zooms the strip; the envelope is redrawn for the visible part, finer.
    at = _scene_point(view, view.plot, 1.5, 64.0)
    _wheel(view, at, 12)
    x0, x1 = view.plot.getViewBox().viewRange()[0]
    assert strip.getViewBox().viewRange()[0] == pytest.approx([x0, x1], abs=1e-6) and x1 - x0 < 0.2
    t, low, high = strip.envelope_shown()
    assert t.min() >= x0 - 0.01 and t.max() <= x1 + 0.01 and t.size >= 50
    # Wheel over the strip zooms time as well.
    s_at = view.graphics.mapFromScene(strip.getViewBox().mapViewToScene(QPointF(0.5 * (x0 + x1), 0.0)))
    _wheel(view, s_at, -3)
    nx0, nx1 = view.plot.getViewBox().viewRange()[0]
    assert nx1 - nx0 > 1.5 * (x1 - x0)
    # Playhead, loop and compared region show on the strip too.
    view.set_playhead(1.25)
    view.set_loop((0.4, 0.9))
    view.set_compared((0.1, 1.8), "compared with B")
    assert strip.marks.playhead.isVisible() and strip.marks.playhead.value() == pytest.approx(1.25)
    assert strip.marks.loop_region.isVisible() and strip.marks.loop_region.getRegion() == pytest.approx((0.4, 0.9))
    assert all(line.isVisible() for line in strip.marks.compared_lines)
    assert [line.value() for line in strip.marks.compared_lines] == pytest.approx([0.1, 1.8])
    with pytest.raises(ValueError, match="mono"):
        view.set_waveform(np.zeros((10, 2), np.float32), cfg.sample_rate)
    with pytest.raises(ValueError, match="finite"):
        view.set_waveform(np.array([0.0, np.nan], np.float32), cfg.sample_rate)


def _pane_point(view, pane, tx, ty) -> QPoint:
    return view.graphics.mapFromScene(pane.plot.getViewBox().mapViewToScene(QPointF(tx, ty)))


def test_ab_panes_show_both_images_with_linked_axes_and_their_own_readout(view, qtbot):
    from perceptlab.audio.features import FeatureConfig, unit_to_db

    cfg = FeatureConfig()
    img_a, img_b = _image(300, seed=1), _image(520, seed=2)
    view.set_slot_image("A", img_a, cfg, "A: first.wav")
    view.set_slot_image("B", img_b, cfg, "B: second.wav")
    view.set_active_slot("B")
    single = view.image.image.copy()
    assert not view.panes_shown() and view.pane("B").plot.scene() is None  # single view by default
    qtbot.mouseClick(view.panes_button, Qt.LeftButton)
    assert view.panes_shown() and view.panes_button.isChecked()
    pa, pb = view.pane("A"), view.pane("B")
    assert pa.plot.scene() is view.graphics.scene() and pb.plot.scene() is view.graphics.scene()
    np.testing.assert_allclose(pa.image.image, unit_to_db(img_a, cfg), atol=1e-4)
    np.testing.assert_allclose(pb.image.image, unit_to_db(img_b, cfg), atol=1e-4)
    assert "first.wav" in pa.label.text and "second.wav" in pb.label.text and "▶" in pb.label.text
    assert pa.plot.getViewBox().sceneBoundingRect().bottom() <= pb.plot.getViewBox().sceneBoundingRect().top()
    # Both panes span the longer clip; time zoom in B follows in A, and the other way.
    d_b = 520 * cfg.seconds_per_frame()
    assert pa.plot.getViewBox().viewRange()[0] == pytest.approx([0.0, d_b], abs=1e-6)
    _wheel(view, _pane_point(view, pb, 0.6 * d_b, 64.0), 4)
    xb = pb.plot.getViewBox().viewRange()[0]
    assert xb[1] - xb[0] < 0.5 * d_b
    assert pa.plot.getViewBox().viewRange()[0] == pytest.approx(xb, abs=1e-6)
    _wheel(view, _pane_point(view, pa, 0.5 * (xb[0] + xb[1]), 64.0), 2)
    assert pb.plot.getViewBox().viewRange()[0] == pytest.approx(pa.plot.getViewBox().viewRange()[0], abs=1e-6)
    _wheel(view, _pane_point(view, pa, xb[0], 30.0), 3, Qt.ControlModifier)
    assert pb.plot.getViewBox().viewRange()[1] == pytest.approx(pa.plot.getViewBox().viewRange()[1], abs=1e-6)
    # One colour scale for both.
    view.set_levels(-50.0, -5.0)
    assert pa.image.getLevels() == pytest.approx((-50.0, -5.0)) and pb.image.getLevels() == pytest.approx((-50.0, -5.0))
    # The hover readout reads the pane under the pointer: time, Hz and that clip's dB.
    view.fit()
    spf = cfg.seconds_per_frame()
    for pane, img, slot in ((pa, img_a, "A"), (pb, img_b, "B")):
        t, band = 150.5 * spf, 40.5
        qtbot.wait(60)  # pyqtgraph drops mouse moves that come faster than its rate limit
        _mouse_move(view, _pane_point(view, pane, t, band))
        text = view.readout.text()
        assert text.startswith(f"{slot}:") and "Hz" in text, text
        p = pane.plot.getViewBox().mapSceneToView(view.graphics.mapToScene(_pane_point(view, pane, t, band)))
        expected = float(unit_to_db(img[int(p.y()), int(p.x() / spf)], cfg))
        assert float(text.split("Hz")[1].split("dB")[0]) == pytest.approx(expected, abs=0.06)
        assert text == f"{slot}:  " + view.readout_at(p.x(), p.y(), slot)
    # A's clip ends before B's: beyond it, A reads nothing and B still does.
    assert view.readout_at(400 * spf, 40.5, "A") == "" and view.readout_at(400 * spf, 40.5, "B") != ""
    # Compared regions per pane.
    view.set_slot_compared("A", (0.5, 2.0), "compared with B")
    assert view.slot_compared("A") == (0.5, 2.0) and "compared with B" in pa.label.text
    assert all(line.isVisible() for line in pa.marks.compared_lines)
    assert not any(line.isVisible() for line in pb.marks.compared_lines)
    # Off again: the single view as it was.
    qtbot.mouseClick(view.panes_button, Qt.LeftButton)
    assert not view.panes_shown() and pb.plot.scene() is None
    np.testing.assert_array_equal(view.image.image, single)
    with pytest.raises(ValueError, match="slot"):
        view.set_slot_image("C", img_a, cfg)
    with pytest.raises(ValueError, match="n_mels"):
        view.set_slot_image("A", np.zeros((10, 20), np.float32), cfg)


def test_a_pane_without_a_clip_says_so(view, qtbot):
    view.set_panes(True)
    pa, pb = view.pane("A"), view.pane("B")
    assert pa.placeholder.isVisible() and pb.placeholder.isVisible()
    assert "B" in pb.placeholder.textItem.toPlainText()
    view.set_slot_image("B", _image(200))
    assert pa.placeholder.isVisible() and not pb.placeholder.isVisible()


def test_shift_wheel_scrolls_time_and_the_wheel_over_an_axis_zooms_that_axis(view):
    d = view.duration()
    at = _scene_point(view, view.plot, 0.5 * d, 64.0)
    _wheel(view, at, 6)
    x0, x1, y0, y1 = _ranges(view.plot)
    _wheel(view, at, 2, Qt.ShiftModifier)  # scroll towards the start, same width
    sx0, sx1, sy0, sy1 = _ranges(view.plot)
    assert sx1 - sx0 == pytest.approx(x1 - x0, rel=1e-6) and sx0 < x0 - 0.1 * (x1 - x0)
    assert (sy0, sy1) == pytest.approx((y0, y1))
    _wheel(view, at, 200, Qt.ShiftModifier)  # never before the clip's start
    assert _ranges(view.plot)[0] == pytest.approx(0.0, abs=1e-9)
    _wheel(view, at, -200, Qt.ShiftModifier)  # nor after its end
    assert _ranges(view.plot)[1] == pytest.approx(d, abs=1e-9)
    # The plain wheel over the frequency axis zooms frequency (Audacity's vertical ruler).
    view.fit()
    axis = view.plot.getAxis("left")
    over_axis = view.graphics.mapFromScene(axis.mapToScene(axis.boundingRect().center()))
    _wheel(view, over_axis, 3)
    x0, x1, y0, y1 = _ranges(view.plot)
    assert (x0, x1) == pytest.approx((0.0, d), abs=1e-6) and y1 - y0 < 0.6 * N_MELS


def test_the_f_key_fits_only_while_the_view_has_focus(qtbot):
    from PySide6.QtWidgets import QLineEdit, QVBoxLayout, QWidget

    from perceptlab.qt.spectrogram_view import QtSpectrogramView

    box = QWidget()
    qtbot.addWidget(box)
    search = QLineEdit()
    view = QtSpectrogramView()
    lay = QVBoxLayout(box)
    lay.addWidget(search)
    lay.addWidget(view)
    box.resize(900, 600)
    box.show()
    qtbot.waitExposed(box)
    view.set_image(_image())
    _wheel(view, _scene_point(view, view.plot, 2.0, 64.0), 5)
    zoomed = _ranges(view.plot)
    search.setFocus()
    qtbot.waitUntil(search.hasFocus)
    qtbot.keyClick(search, Qt.Key_F)
    assert search.text() == "f" and _ranges(view.plot) == pytest.approx(zoomed)  # typing, not fitting
    view.graphics.setFocus()
    qtbot.waitUntil(view.graphics.hasFocus)
    qtbot.keyClick(view.graphics, Qt.Key_F)
    assert _ranges(view.plot) == pytest.approx((0.0, view.duration(), 0.0, N_MELS), abs=1e-9)


def test_click_on_the_strip_seeks_and_hovering_it_reads_the_time(view, qtbot):
    view.set_waveform(_two_part_wave(), 22050)
    strip = view.strip
    qtbot.wait(60)
    at = view.graphics.mapFromScene(strip.getViewBox().mapViewToScene(QPointF(1.5, 0.0)))
    t = strip.getViewBox().mapSceneToView(view.graphics.mapToScene(at)).x()
    _mouse_move(view, at)
    assert view.readout.text().strip() == f"{t:.2f} s"
    with qtbot.waitSignal(view.seek_requested, timeout=2000) as seek:
        qtbot.mouseClick(view.graphics.viewport(), Qt.LeftButton, pos=at)
    assert seek.args[0] == pytest.approx(t, abs=1e-6)


def test_a_real_click_on_the_spectrogram_seeks(view, qtbot):
    at = _scene_point(view, view.plot, 2.0, 50.0)
    t = view.plot.getViewBox().mapSceneToView(view.graphics.mapToScene(at)).x()
    with qtbot.waitSignal(view.seek_requested, timeout=2000) as seek:
        qtbot.mouseClick(view.graphics.viewport(), Qt.LeftButton, pos=at)
    assert seek.args[0] == pytest.approx(t, abs=1e-6)
    # A click beside the image (on the colour bar) does not.
    bar_at = view.graphics.mapFromScene(view.colorbar.mapToScene(view.colorbar.boundingRect().center()))
    with qtbot.assertNotEmitted(view.seek_requested, wait=300):
        qtbot.mouseClick(view.graphics.viewport(), Qt.LeftButton, pos=bar_at)


def test_the_single_view_keeps_its_empty_hint_through_the_panes(view):
    view.set_image(None)
    view.set_empty_hint("bad.wav could not be decoded: truncated")
    assert view.placeholder.isVisible() and view.placeholder.toPlainText() == "bad.wav could not be decoded: truncated"
    view.set_active_slot("A")  # redraws: the hint stays
    view.set_panes(True)
    assert view.pane("A").placeholder.toPlainText().startswith("A:")
    view.set_panes(False)
    assert view.placeholder.toPlainText() == "bad.wav could not be decoded: truncated"
    view.placeholder.setText("computing…")  # set directly, as the main window does
    view.set_slot_waveform("A", np.zeros(100, np.float32), 22050)
    assert view.placeholder.toPlainText() == "computing…"
