"""One pane of the spectrogram view: a caption, a waveform strip and a log-mel plot on one time axis.

:class:`QtSpectrogramPane` is what :class:`~perceptlab.qt.spectrogram_view.QtSpectrogramView`
shows once, or twice (A above B) with its A/B panes; :class:`Shown` is what a
pane shows (an image in dB, its config, caption, compared region and
waveform), kept per slot by the view. The pane draws; the view owns the
levels, zoom, mouse and the slots' state, and passes its handlers for the
loop region (``view._on_region_dragged``, ``view._on_region_moved``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QGraphicsItem

from perceptlab.audio.features import FeatureConfig, mel_frequencies, unit_to_db
from perceptlab.qt.time_axes import QtLoopViewBox, QtMelAxis
from perceptlab.qt.waveform_strip import QtTimeMarks, QtWaveformStrip

EMPTY_HINT = "Select a clip in the library to see its log-mel spectrogram"
AXIS_WIDTH = 70  # every left axis the same width, so the linked time axes line up


@dataclass
class Shown:
    """What one pane shows: an image in dB, its config, caption, compared region, waveform."""

    db: np.ndarray | None = None  # (F, T) levels in dB
    config: FeatureConfig | None = None
    caption: str = ""
    compared: tuple[float, float] | None = None
    compared_text: str = ""
    samples: np.ndarray | None = None  # (n,) mono
    rate: float = 0.0

    def duration(self) -> float:
        if self.db is None or self.config is None:
            return 0.0
        return self.db.shape[1] * self.config.seconds_per_frame()

    def readout(self, seconds: float, mel_pos: float, freqs: np.ndarray) -> str:
        if self.db is None or self.config is None:
            return ""
        n_mels, n_frames = self.db.shape
        col = int(np.floor(seconds / self.config.seconds_per_frame()))
        row = int(np.floor(mel_pos))
        if not (0 <= col < n_frames and 0 <= row < n_mels):
            return ""
        return f"{seconds:6.2f} s   {freqs[row]:7.0f} Hz   {self.db[row, col]:6.1f} dB"


def as_db_image(image, config: FeatureConfig) -> np.ndarray:
    """A (n_mels, frames) image in [0, 1] as levels in dB, checked against ``config``."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != config.n_mels or arr.shape[1] < 1:
        raise ValueError(f"spectrogram image must be (n_mels={config.n_mels}, frames >= 1), got shape {arr.shape}")
    return unit_to_db(arr, config)


class QtPaneCaption(pg.LabelItem):
    """A pane's caption: one line, cut at the pane's width instead of widening the view."""

    def __init__(self):
        super().__init__("", justify="left", size="9pt")
        self.setFlag(QGraphicsItem.ItemClipsChildrenToShape, True)
        self.setMaximumHeight(24)

    def updateMin(self):
        super().updateMin()
        self.setMinimumWidth(0)
        self._sizeHint[Qt.SizeHint.MinimumSize] = (0, self._sizeHint[Qt.SizeHint.MinimumSize][1])
        self.updateGeometry()


class QtSpectrogramPane:
    """One pane: a caption, a waveform strip and a spectrogram plot, on one time axis."""

    def __init__(self, view, name: str, title: str = ""):
        self.name = name
        self.label = QtPaneCaption()
        self.strip = QtWaveformStrip(on_region=view._on_region_dragged, on_loop_moved=view._on_region_moved)
        self.axis = QtMelAxis("left")
        self.plot = pg.PlotItem(title=title or None, viewBox=QtLoopViewBox(view._on_region_dragged),
                                axisItems={"left": self.axis})
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setLabel("left", "frequency (Hz, mel scale)")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()  # the unlabelled "A" button: Fit does it, without padding
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        for axis in (self.axis, self.strip.getAxis("left")):
            axis.setWidth(AXIS_WIDTH)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.marks = QtTimeMarks(self.plot, view._on_region_moved)
        self.placeholder = pg.TextItem("", color=(190, 190, 190), anchor=(0.5, 0.5))
        self.plot.addItem(self.placeholder, ignoreBounds=True)
        self.strip.setXLink(self.plot)
        self.placeholder.setText(EMPTY_HINT)
        # A long hint (a failed clip's reason) wraps within the plot instead of running off both sides.
        self.viewbox().sigResized.connect(self._wrap_placeholder)
        self.shown = Shown()
        self.freqs = mel_frequencies(FeatureConfig())

    def viewbox(self) -> pg.ViewBox:
        return self.plot.getViewBox()

    def _wrap_placeholder(self, *_) -> None:
        self.placeholder.setTextWidth(max(120.0, 0.85 * self.viewbox().width()))

    def show(self, shown: Shown, config: FeatureConfig, empty_text: str | None, levels) -> None:
        """Draw ``shown``; empty, the pane shows its hint (``empty_text``, None: as it is) over a 5 s frame."""
        self.shown = shown
        cfg = shown.config or config
        self.freqs = mel_frequencies(cfg)
        self.axis.set_bands(self.freqs)
        if shown.db is None:
            self.image.clear()
            if empty_text is not None:
                self.placeholder.setText(empty_text)
            self._wrap_placeholder()
            self.placeholder.setVisible(True)
        else:
            self.placeholder.setVisible(False)
            self.image.setImage(shown.db, autoLevels=False, levels=levels)
            n_mels, n_frames = shown.db.shape
            self.image.setRect(QRectF(0.0, 0.0, n_frames * cfg.seconds_per_frame(), float(n_mels)))
        self.marks.set_compared(shown.compared, shown.duration())
        self.strip.marks.set_compared(shown.compared, shown.duration())
        self.strip.set_waveform(shown.samples, shown.rate or 1.0)

    def n_mels(self, config: FeatureConfig) -> int:
        return self.shown.db.shape[0] if self.shown.db is not None else (self.shown.config or config).n_mels
