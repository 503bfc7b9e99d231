"""The log-mel spectrogram view.

An ``ImageItem`` whose pixels are mapped (``setRect``) to seconds on x and mel
bins on y, labelled in Hz; a perceptually uniform colour map with a colour bar
in dB whose handles set the displayed dB range; zoom and pan with the mouse;
a hover readout of time, frequency and level; a playhead; click to seek.

After the A/B pair was compared, the part of the shown clip the metrics
compared is marked (:meth:`QtSpectrogramView.set_compared`): dashed amber
lines at its ends, what lies outside it dimmed, and a caption saying what it
is. The marks take no mouse input, and sit under the loop region.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from perceptlab.audio.features import FeatureConfig, mel_frequencies, unit_to_db

COLORMAPS = ("viridis", "magma", "inferno", "plasma", "cividis")
COMPARED_COLOUR = (255, 190, 40)
COMPARED_HELP = ("Between the dashed amber lines: the part of this clip the metrics compared with the other "
                 "clip of the pair (see the Compare panel). Dimmed parts were left out to time-align the two.")
_HZ_TICKS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:g}k" if hz >= 1000 else f"{hz:g}"


class QtLoopViewBox(pg.ViewBox):
    """A ViewBox where Shift+drag marks a time region instead of panning."""

    def __init__(self, on_region, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_region = on_region
        self._drag_start: float | None = None

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == Qt.LeftButton and ev.modifiers() & Qt.ShiftModifier:
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


class QtSpectrogramView(QWidget):
    """Shows one clip's log-mel image.

    Signals
    -------
    seek_requested(float)
        The user clicked at this time (seconds).
    loop_changed(object)
        (start, end) in seconds after the user set or moved the loop region,
        or None when it was cleared.
    """

    seek_requested = Signal(float)
    loop_changed = Signal(object)

    def __init__(self, parent=None, title: str = ""):
        super().__init__(parent)
        pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
        self.config = FeatureConfig()
        self._db: np.ndarray | None = None  # (F, T) levels in dB
        self._freqs = mel_frequencies(self.config)

        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = self.graphics.addPlot(title=title or None, viewBox=QtLoopViewBox(self._on_region_dragged))
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setLabel("left", "frequency (Hz, mel scale)")
        self.plot.setMenuEnabled(False)
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(
            values=(self.config.db_floor, self.config.db_ceiling), colorMap=pg.colormap.get("viridis"),
            label="level (dB re full-scale sine)", interactive=True, width=14,
        )
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.playhead = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("w", width=1.5))
        self.playhead.setVisible(False)
        self.plot.addItem(self.playhead)
        self.loop_region = pg.LinearRegionItem(brush=pg.mkBrush(255, 255, 255, 40), movable=True)
        self.loop_region.setZValue(10)
        self.loop_region.setVisible(False)
        self.plot.addItem(self.loop_region)
        self.loop_region.sigRegionChangeFinished.connect(self._on_region_moved)
        # The compared region: under the loop region (z 10), over the image.
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
            self.plot.addItem(item, ignoreBounds=True)
        self._compared: tuple[float, float] | None = None
        self.placeholder = pg.TextItem("Select a clip in the library to see its log-mel spectrogram",
                                       color=(190, 190, 190), anchor=(0.5, 0.5))
        self.plot.addItem(self.placeholder)

        self.cmap_box = QComboBox()
        self.cmap_box.addItems(COLORMAPS)
        self.cmap_box.setToolTip("Colour map (all perceptually uniform)")
        self.readout = QLabel("")
        self.readout.setMinimumWidth(260)
        self.caption = QLabel("")
        self.compared_label = QLabel("")
        self.compared_label.setStyleSheet("color: rgb(%d, %d, %d);" % COMPARED_COLOUR)
        # Takes the room left beside the caption and is cut there: it must not widen the window.
        self.compared_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.compared_label.setToolTip(COMPARED_HELP)
        # The caption, and under it what the metrics compared (a line kept
        # even when empty, so the image does not jump when a result arrives).
        self.compared_label.setMinimumHeight(self.compared_label.fontMetrics().height())
        captions = QVBoxLayout()
        captions.setSpacing(0)
        captions.addWidget(self.caption)
        captions.addWidget(self.compared_label)
        controls = QHBoxLayout()
        controls.addLayout(captions, 1)
        controls.addWidget(self.readout)
        controls.addWidget(QLabel("colours"))
        controls.addWidget(self.cmap_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(controls)
        lay.addWidget(self.graphics, 1)

        self.cmap_box.currentTextChanged.connect(self._on_cmap_changed)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._set_hz_ticks()
        self._show_empty()

    def _show_empty(self) -> None:
        """No clip yet: a hint, and axes over a 5 s mel-scale frame instead of an arbitrary unit square."""
        n_mels = float(self.config.n_mels)
        self.placeholder.setPos(2.5, n_mels / 2)
        self.placeholder.setVisible(True)
        self.plot.getViewBox().setRange(xRange=(0.0, 5.0), yRange=(0.0, n_mels), padding=0)

    # -- public API ---------------------------------------------------------
    def set_image(self, image: np.ndarray | None, config: FeatureConfig | None = None, caption: str = "") -> None:
        """Show a (n_mels, T) image in [0, 1] (None clears the view)."""
        if config is not None and config != self.config:
            self.config = config
            self._freqs = mel_frequencies(config)
            self._set_hz_ticks()
        self.caption.setText(caption)
        self.set_compared(None)  # marks belong to the image they were set for
        if image is None:
            self._db = None
            self.image.clear()
            self._show_empty()
            return
        self.placeholder.setVisible(False)
        self._db = unit_to_db(np.asarray(image, dtype=np.float32), self.config)
        levels = self.colorbar.levels()
        self.image.setImage(self._db, autoLevels=False, levels=levels)
        n_mels, n_frames = self._db.shape
        self.image.setRect(QRectF(0.0, 0.0, n_frames * self.config.seconds_per_frame(), float(n_mels)))
        self.plot.getViewBox().autoRange(padding=0)

    def set_levels(self, low_db: float, high_db: float) -> None:
        """Set the displayed dB range (what the colour bar handles do)."""
        self.colorbar.setLevels((low_db, high_db))

    def levels(self) -> tuple[float, float]:
        return tuple(self.colorbar.levels())

    def set_colormap(self, name: str) -> None:
        self.cmap_box.setCurrentText(name)

    def set_playhead(self, seconds: float | None) -> None:
        if seconds is None:
            self.playhead.setVisible(False)
        else:
            self.playhead.setPos(seconds)
            self.playhead.setVisible(True)

    def set_compared(self, region: tuple[float, float] | None, text: str = "") -> None:
        """Mark (start, end) seconds of the shown clip as what the metrics compared (None clears).

        ``text`` is shown under the caption (what it is compared with).
        """
        self._compared = None if region is None or self._db is None else (float(region[0]), float(region[1]))
        shown = self._compared is not None
        for item in (*self.compared_dims, *self.compared_lines):
            item.setVisible(shown)
        self.compared_label.setText(f"▮ {text}" if shown and text else "")
        self.compared_label.setToolTip(f"{text}\n\n{COMPARED_HELP}" if shown and text else COMPARED_HELP)
        if not shown:
            return
        start, end = self._compared
        d = self.duration()
        for line, x in zip(self.compared_lines, (start, end)):
            line.setPos(x)
        before, after = self.compared_dims
        before.setRegion((0.0, max(start, 0.0)))
        before.setVisible(start > 0.0)
        after.setRegion((min(end, d), d))
        after.setVisible(end < d)

    def compared(self) -> tuple[float, float] | None:
        """The marked compared region, in seconds, or None."""
        return self._compared

    def set_loop(self, region: tuple[float, float] | None) -> None:
        """Show (start, end) seconds as the loop region, or hide it."""
        if region is None:
            self.loop_region.setVisible(False)
            return
        self.loop_region.blockSignals(True)
        self.loop_region.setRegion(sorted(region))
        self.loop_region.blockSignals(False)
        self.loop_region.setVisible(True)

    def loop(self) -> tuple[float, float] | None:
        return tuple(self.loop_region.getRegion()) if self.loop_region.isVisible() else None

    def duration(self) -> float:
        return 0.0 if self._db is None else self._db.shape[1] * self.config.seconds_per_frame()

    def has_image(self) -> bool:
        return self._db is not None

    def readout_at(self, seconds: float, mel_pos: float) -> str:
        """The hover text for a point in plot coordinates ('' outside the image)."""
        if self._db is None:
            return ""
        n_mels, n_frames = self._db.shape
        col = int(seconds / self.config.seconds_per_frame())
        row = int(mel_pos)
        if not (0 <= col < n_frames and 0 <= row < n_mels):
            return ""
        return f"{seconds:6.2f} s   {self._freqs[row]:7.0f} Hz   {self._db[row, col]:6.1f} dB"

    # -- slots --------------------------------------------------------------
    def _on_cmap_changed(self, name: str) -> None:
        self.colorbar.setColorMap(pg.colormap.get(name))

    def _on_mouse_moved(self, pos) -> None:
        p = self.plot.getViewBox().mapSceneToView(pos)
        self.readout.setText(self.readout_at(p.x(), p.y()))

    def _on_mouse_clicked(self, event) -> None:
        if event.button() != 1 or self._db is None:
            return
        p = self.plot.getViewBox().mapSceneToView(event.scenePos())
        duration = self._db.shape[1] * self.config.seconds_per_frame()
        if 0 <= p.x() <= duration and 0 <= p.y() <= self._db.shape[0]:
            self.seek_requested.emit(float(p.x()))

    def _on_region_dragged(self, start: float, end: float, finished: bool) -> None:
        d = self.duration()
        a, b = sorted((min(max(start, 0.0), d), min(max(end, 0.0), d)))
        self.set_loop((a, b))
        if finished:
            self.loop_changed.emit((a, b) if b > a else None)

    def _on_region_moved(self) -> None:
        self.loop_changed.emit(tuple(self.loop_region.getRegion()))

    def _set_hz_ticks(self) -> None:
        # Place round Hz values at their (fractional) mel-bin position.
        centres = self._freqs
        ticks = []
        for hz in _HZ_TICKS:
            if centres[0] <= hz <= centres[-1]:
                ticks.append((float(np.interp(hz, centres, np.arange(len(centres)) + 0.5)), _hz_label(hz)))
        self.plot.getAxis("left").setTicks([ticks, []])
