"""Axes and mouse handling shared by the spectrogram panes and the waveform strip.

:class:`QtLoopViewBox` is a ``ViewBox`` for a time axis (x, seconds): the
plain wheel zooms time around the pointer, Ctrl+wheel zooms the other axis
(frequency), Shift+wheel scrolls in time, and Shift+drag marks a time region.
This is Sonic Visualiser's convention (wheel zooms time) with Audacity's
Shift+wheel scroll; the wheel over an axis zooms that axis alone.

:class:`QtMelAxis` labels mel-band positions with round frequencies in Hz,
choosing as many as fit at the current zoom, coarse values (1k, 10k) first.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics

ZOOM_HELP = ("Wheel: zoom time around the pointer  ·  Ctrl+wheel (or wheel over the frequency axis): zoom "
             "frequency  ·  Shift+wheel: scroll in time  ·  drag: pan  ·  Shift+drag: mark a loop  ·  "
             "F or Fit: the whole clip")

# Mantissa ladders, coarse to fine, each holding the one before: 10^k, 1-2-5,
# 1-9, then steps of 0.5, 0.1, 0.05 and 0.01 of a decade's unit. (Nested, so
# where a finer one takes over the coarser values stay and the steps stay even.)
_LADDERS = (
    np.array([1.0]),
    np.array([1.0, 2.0, 5.0]),
    np.arange(1, 10) / 1.0,
    np.arange(2, 20) / 2.0,
    np.arange(10, 100) / 10.0,
    np.arange(20, 200) / 20.0,
    np.arange(100, 1000) / 100.0,
)
# Steps of 0.2 and 0.02 fill, last, what the nested ladders leave bare (a
# short plot zoomed in where the scale is logarithmic).
_FILL_LADDERS = (np.arange(5, 50) / 5.0, np.arange(50, 500) / 50.0)


def hz_label(hz: float) -> str:
    """'500', '1.5k', '10.25k'."""
    return f"{hz / 1000:.6g}k" if hz >= 1000 else f"{hz:.6g}"


class QtLoopViewBox(pg.ViewBox):
    """A time ViewBox: wheel zooms time, Ctrl+wheel the other axis, Shift+drag marks a region.

    Parameters
    ----------
    on_region : callable or None
        Called with (start, end, finished) in seconds while Shift+dragging.
    """

    def __init__(self, on_region=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_region = on_region
        self._drag_start: float | None = None

    def wheelEvent(self, ev, axis=None):
        if axis is None:  # over the data, not over an axis
            mods = ev.modifiers()
            if mods & Qt.ShiftModifier:
                self._scroll_time(ev)
                return
            axis = 1 if mods & Qt.ControlModifier else 0
        super().wheelEvent(ev, axis)

    def _scroll_time(self, ev) -> None:
        # One wheel click moves a tenth of the visible time; the limits stop it at the ends.
        (x0, x1), _ = self.viewRange()
        steps = ev.delta() / 120.0
        self.translateBy(x=-0.1 * steps * (x1 - x0))
        ev.accept()
        self.sigRangeChangedManually.emit([True, False])

    def mouseDragEvent(self, ev, axis=None):
        if self._on_region is not None and ev.button() == Qt.LeftButton and ev.modifiers() & Qt.ShiftModifier:
            ev.accept()
            x = self.mapSceneToView(ev.scenePos()).x()
            if ev.isStart():
                self._drag_start = self.mapSceneToView(ev.buttonDownScenePos()).x()
            if self._drag_start is not None:
                self._on_region(self._drag_start, x, ev.isFinish())
            if ev.isFinish():
                self._drag_start = None
            return
        super().mouseDragEvent(ev, axis)


class QtMelAxis(pg.AxisItem):
    """A left axis over mel-band positions (row i spans [i, i+1)) labelled in Hz.

    Call :meth:`set_bands` with the centre frequency of each band.
    """

    def __init__(self, orientation: str = "left", **kwargs):
        super().__init__(orientation, **kwargs)
        self._pos = np.array([0.0, 1.0])
        self._hz = np.array([0.0, 1.0])
        self._labels: dict[float, str] = {}
        self._memo: tuple | None = None  # (key, ticks): the axis asks again on every repaint

    def set_bands(self, centres: np.ndarray) -> None:
        """Band centres in Hz, low first; extended half a band beyond each end."""
        c = np.asarray(centres, dtype=np.float64)
        if c.ndim != 1 or c.size < 2 or not np.all(np.diff(c) > 0):
            raise ValueError(f"mel band centres must be an increasing 1-D array of 2 or more, got shape {c.shape}")
        if c.shape == self._hz[1:-1].shape and np.array_equal(c, self._hz[1:-1]):
            return  # the same bands: the ticks drawn stay right
        n = c.size
        below = max(c[0] - 0.5 * (c[1] - c[0]), 0.0)  # linear at the low end (mel is linear below 1 kHz)
        above = c[-1] * np.sqrt(c[-1] / c[-2]) if c[-1] >= 1000 else c[-1] + 0.5 * (c[-1] - c[-2])
        self._pos = np.concatenate([[0.0], np.arange(n) + 0.5, [float(n)]])
        self._hz = np.concatenate([[below], c, [above]])
        self._memo = None
        self.picture = None
        self.update()

    def hz_at(self, pos):
        """Frequency in Hz at mel-band position(s)."""
        return np.interp(pos, self._pos, self._hz)

    def position_of(self, hz):
        """Mel-band position(s) of frequencies in Hz."""
        return np.interp(hz, self._hz, self._pos)

    def min_gap_px(self) -> float:
        """The least distance between two labels: a label's height and some air."""
        return 1.8 * QFontMetrics(self.style.get("tickFont") or self.font()).height()

    def tickValues(self, minVal, maxVal, size):
        key = (float(minVal), float(maxVal), float(size), self.min_gap_px())
        if self._memo is not None and self._memo[0] == key:
            self._labels = self._memo[2]
            return self._memo[1]
        ticks = self._tick_values(minVal, maxVal, size)
        self._memo = (key, ticks, self._labels)
        return ticks

    def _tick_values(self, minVal, maxVal, size):
        lo, hi = max(min(minVal, maxVal), self._pos[0]), min(max(minVal, maxVal), self._pos[-1])
        if hi <= lo or size <= 0:
            return []
        px_per_band = size / (abs(maxVal - minVal) or 1.0)
        gap = self.min_gap_px() / px_per_band  # in bands
        f_lo, f_hi = float(self.hz_at(lo)), float(self.hz_at(hi))
        # Each ladder offers the values whose own neighbours on that ladder
        # are far enough away. The finest ladder that fits a stretch of the
        # axis labels all of it (even steps); coarser ones fill the stretches
        # where it does not; no two labels closer than a label's height.
        k_lo = int(np.floor(np.log10(max(f_lo, 1.0)))) - 1
        k_hi = int(np.ceil(np.log10(max(f_hi, 1.0))))
        offers: list[tuple[int, float, float]] = []  # (ladder, Hz, position)
        for level, mantissas in enumerate(_LADDERS + _FILL_LADDERS):
            # Room is judged within each decade: a ladder's step grows tenfold across 10^k.
            for k in range(k_lo, k_hi + 1):
                values = np.round(np.append(mantissas, 10.0) * 10.0 ** k, 6)
                values = values[(values >= self._hz[0]) & (values <= self._hz[-1])]  # beyond, positions clamp
                if values.size == 0:
                    continue
                pos = self.position_of(values)
                d = np.diff(pos)
                room = np.minimum(np.concatenate([[np.inf], d]), np.concatenate([d, [np.inf]]))
                keep = (room >= gap) & (values >= f_lo) & (values <= f_hi) & (values < 10.0 ** (k + 1))
                offers.extend((level, float(hz), float(q)) for hz, q in zip(values[keep], pos[keep]))
        chosen: list[float] = []  # positions, kept sorted
        labels: dict[float, str] = {}
        n_nested = len(_LADDERS)
        order = sorted(offers, key=lambda o: (o[0] >= n_nested, -o[0] if o[0] < n_nested else o[0], o[1]))
        for _level, hz, pos in order:
            i = int(np.searchsorted(chosen, pos))
            if (i > 0 and pos - chosen[i - 1] < gap) or (i < len(chosen) and chosen[i] - pos < gap):
                continue
            chosen.insert(i, pos)
            labels[pos] = hz_label(hz)
        self._labels = labels
        return [(1.0, chosen)]

    def tickStrings(self, values, scale, spacing):
        return [self._labels.get(float(v)) or hz_label(float(self.hz_at(v))) for v in values]
