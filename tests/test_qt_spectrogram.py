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


def test_frequency_ticks_stay_readable_at_every_zoom(view):
    axis = view.plot.getAxis("left")
    at = _scene_point(view, view.plot, 1.0, 64.0)
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
