"""The waveform strip above a spectrogram: the clip's min/max envelope on a time axis.

Its time axis is linked to the spectrogram's (``setXLink``), so zooming and
panning either moves both. The envelope is recomputed for the visible time
span at the strip's pixel width, so it stays sharp at every zoom; below one
sample per pixel it draws the samples themselves. The playhead, the loop and
the compared region are drawn as on the spectrogram (:class:`QtTimeMarks`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from perceptlab.qt.time_axes import QtLoopViewBox

COMPARED_COLOUR = (255, 190, 40)
ENVELOPE_COLOUR = (120, 180, 255)
STRIP_HEIGHT = 64


def envelope(samples: np.ndarray, rate: float, t0: float, t1: float, columns: int):
    """Min/max of ``samples`` in ``columns`` equal slices of [t0, t1] seconds.

    Returns
    -------
    times, low, high : numpy.ndarray
        Each (m,): the start time of each non-empty slice and its extremes.
        With fewer samples than columns, one entry per sample (low == high).
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"waveform samples must be mono (n,), got shape {x.shape}")
    if not rate > 0:
        raise ValueError(f"waveform sample rate must be positive, got {rate}")
    if columns < 1:
        raise ValueError(f"envelope needs at least one column, got {columns}")
    i0 = max(int(np.floor(t0 * rate)), 0)
    i1 = min(int(np.ceil(t1 * rate)) + 1, x.size)
    if i1 <= i0:
        empty = np.zeros(0, np.float32)
        return empty, empty, empty
    part = x[i0:i1]
    if part.size <= 2 * columns:
        t = (i0 + np.arange(part.size)) / rate
        return t, part, part
    edges = np.linspace(0, part.size, columns + 1).astype(np.int64)
    low = np.minimum.reduceat(part, edges[:-1])
    high = np.maximum.reduceat(part, edges[:-1])
    return (i0 + edges[:-1]) / rate, low, high


class QtTimeMarks:
    """Playhead, loop region and compared region drawn on one plot with a time axis.

    The compared marks (dashed amber ends, the rest dimmed) take no mouse
    input and sit under the loop region.
    """

    def __init__(self, plot: pg.PlotItem, on_loop_moved=None, loop_movable: bool = True):
        self.plot = plot
        self.playhead = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("w", width=1.5))
        self.playhead.setZValue(20)
        self.playhead.setVisible(False)
        plot.addItem(self.playhead, ignoreBounds=True)
        self.loop_region = pg.LinearRegionItem(brush=pg.mkBrush(255, 255, 255, 40), movable=loop_movable)
        self.loop_region.setZValue(10)
        self.loop_region.setVisible(False)
        if not loop_movable:
            self.loop_region.setAcceptedMouseButtons(Qt.NoButton)
            for line in self.loop_region.lines:
                line.setAcceptedMouseButtons(Qt.NoButton)
        plot.addItem(self.loop_region, ignoreBounds=True)
        if on_loop_moved is not None:
            self.loop_region.sigRegionChangeFinished.connect(on_loop_moved)
        self.compared_lines = [
            pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(COMPARED_COLOUR, width=2, style=Qt.DashLine))
            for _ in range(2)]
        self.compared_dims = [pg.LinearRegionItem(movable=False, brush=pg.mkBrush(0, 0, 0, 150),
                                                  pen=pg.mkPen(None)) for _ in range(2)]
        for item in self.compared_dims:
            item.setZValue(4)
            item.setAcceptedMouseButtons(Qt.NoButton)
            for line in item.lines:
                line.setAcceptedMouseButtons(Qt.NoButton)
        for item in self.compared_lines:
            item.setZValue(5)
            item.setAcceptedMouseButtons(Qt.NoButton)
        for item in (*self.compared_dims, *self.compared_lines):
            item.setVisible(False)
            plot.addItem(item, ignoreBounds=True)

    def set_playhead(self, seconds: float | None, active: bool = True) -> None:
        if seconds is None:
            self.playhead.setVisible(False)
            return
        # The pane of the slot not playing shows where it would go on, fainter.
        self.playhead.setPen(pg.mkPen("w", width=1.5) if active else pg.mkPen(200, 200, 200, 150, width=1,
                                                                              style=Qt.DashLine))
        self.playhead.setPos(seconds)
        self.playhead.setVisible(True)

    def set_loop(self, region: tuple[float, float] | None) -> None:
        if region is None:
            self.loop_region.setVisible(False)
            return
        self.loop_region.blockSignals(True)
        self.loop_region.setRegion(sorted(region))
        self.loop_region.blockSignals(False)
        self.loop_region.setVisible(True)

    def set_compared(self, region: tuple[float, float] | None, duration: float) -> None:
        shown = region is not None
        for item in (*self.compared_dims, *self.compared_lines):
            item.setVisible(shown)
        if not shown:
            return
        start, end = region
        for line, x in zip(self.compared_lines, (start, end)):
            line.setPos(x)
        before, after = self.compared_dims
        before.setRegion((0.0, max(start, 0.0)))
        before.setVisible(start > 0.0)
        after.setRegion((min(end, duration), duration))
        after.setVisible(end < duration)


class QtWaveformStrip(pg.PlotItem):
    """A short plot of one clip's waveform envelope over time (amplitude -1..1).

    Parameters
    ----------
    on_region : callable or None
        Shift+drag marks a loop region: called with (start, end, finished).
    """

    def __init__(self, on_region=None, on_loop_moved=None):
        super().__init__(viewBox=QtLoopViewBox(on_region))
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setMouseEnabled(x=True, y=False)
        self.hideAxis("bottom")
        left = self.getAxis("left")
        left.setTicks([[(-1.0, "−1"), (0.0, "0"), (1.0, "1")], []])
        self.setMaximumHeight(STRIP_HEIGHT)
        self.setMinimumHeight(STRIP_HEIGHT * 0.6)
        # Room above +1 and below -1 for the tick labels to stand whole.
        self.getViewBox().setYRange(-1.4, 1.4, padding=0)
        self.getViewBox().setLimits(yMin=-1.4, yMax=1.4)
        self.curve = pg.PlotDataItem(pen=pg.mkPen(ENVELOPE_COLOUR, width=1), connect="pairs", antialias=False)
        self.addItem(self.curve)
        self.zero_line = pg.InfiniteLine(pos=0.0, angle=0, movable=False, pen=pg.mkPen(90, 90, 90))
        self.addItem(self.zero_line, ignoreBounds=True)
        self.marks = QtTimeMarks(self, on_loop_moved)
        self._samples: np.ndarray | None = None
        self._rate = 1.0
        self.getViewBox().sigXRangeChanged.connect(self._redraw)
        self.getViewBox().sigResized.connect(self._redraw)

    def set_waveform(self, samples: np.ndarray | None, rate: float = 22050.0) -> None:
        """Show mono samples at ``rate`` Hz (None clears the strip)."""
        if samples is None:
            self._samples = None
            self.curve.setData([], [])
            return
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"waveform samples must be mono (n,), got shape {x.shape}")
        if not (rate > 0 and np.isfinite(rate)):
            raise ValueError(f"waveform sample rate must be a positive number of Hz, got {rate}")
        if x.size and not np.all(np.isfinite(x)):
            raise ValueError("waveform samples must be finite (found NaN or infinity)")
        self._samples, self._rate = x, float(rate)
        self._redraw()

    def has_waveform(self) -> bool:
        return self._samples is not None

    def duration(self) -> float:
        return 0.0 if self._samples is None else self._samples.size / self._rate

    def envelope_shown(self):
        """What is drawn: (times, low, high) for the visible time span."""
        x, y = self.curve.getData()
        if x is None or len(x) == 0:
            empty = np.zeros(0)
            return empty, empty, empty
        return x[0::2], y[0::2], y[1::2]

    def _redraw(self, *_):
        if self._samples is None:
            return
        (t0, t1), _ = self.getViewBox().viewRange()
        columns = max(int(self.getViewBox().width()), 50)
        t, low, high = envelope(self._samples, self._rate, t0, t1, columns)
        if t.size == 0:
            self.curve.setData([], [])
            return
        if low is high:  # a sample per point: a line through them, drawn as short segments
            x = np.repeat(t, 2)[1:-1]
            y = np.repeat(low, 2)[1:-1]
            if x.size < 2:
                x, y = np.repeat(t, 2), np.repeat(low, 2)
            self.curve.setData(x, y)
            return
        self.curve.setData(np.repeat(t, 2), np.stack([low, high], axis=1).ravel())
