"""The log-mel spectrogram view.

An ``ImageItem`` whose pixels are mapped (``setRect``) to seconds on x and mel
bins on y, labelled in Hz; a perceptually uniform colour map with a colour bar
in dB whose handles set the displayed dB range, never beyond the feature
config's floor and ceiling; a hover readout of time, frequency and level; a
playhead; click to seek.

Zoom (:data:`~perceptlab.qt.time_axes.ZOOM_HELP`, the Sonic Visualiser
convention): the wheel zooms time around the pointer, Ctrl+wheel (or the
wheel over the frequency axis) zooms frequency, Shift+wheel scrolls in time,
never past the clip; **Fit** (F while the view has focus) shows the whole clip
with no margin. Frequency ticks are chosen for the zoom, several at any.

Above the spectrogram a waveform strip (:class:`QtWaveformStrip`) shows the
clip's min/max envelope on the same, linked time axis, once the view is given
samples (:meth:`QtSpectrogramView.set_waveform` or ``set_slot_waveform``).

**A/B panes** (a checkable button): A and B one above the other, as Sonic
Visualiser's panes, with linked time (and frequency) axes and one colour bar,
so the two are read on the same scale. The panes are fed per slot
(:meth:`QtSpectrogramView.set_slot_image`, ``set_slot_waveform``,
``set_slot_compared``); the single view is what :meth:`set_image` shows.

After the A/B pair was compared, the part of the shown clip the metrics
compared is marked (:meth:`QtSpectrogramView.set_compared`): dashed amber
lines at its ends, what lies outside it dimmed, and a caption saying what it
is. The marks take no mouse input, and sit under the loop region.

One pane (caption, waveform strip, plot) and what it shows are
:mod:`perceptlab.qt.spectrogram_pane`.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from perceptlab.audio.features import FeatureConfig, mel_frequencies
from perceptlab.qt.spectrogram_pane import EMPTY_HINT, QtSpectrogramPane, Shown, as_db_image
from perceptlab.qt.time_axes import ZOOM_HELP
from perceptlab.qt.waveform_strip import COMPARED_COLOUR, QtTimeMarks

COLORMAPS = ("viridis", "magma", "inferno", "plasma", "cividis")
COMPARED_HELP = ("Between the dashed amber lines: the part of this clip the metrics compared with the other "
                 "clip of the pair (see the Compare panel). Dimmed parts were left out to time-align the two.")
PANES_HELP = ("A/B panes: A above, B below, with linked time and frequency axes and one colour scale "
              "(Sonic Visualiser's panes). Off: the selected slot's clip alone.")
SLOTS = ("A", "B")
MIN_FRAMES_SHOWN = 4  # the deepest time zoom, in spectrogram frames
MIN_BANDS_SHOWN = 4  # the deepest frequency zoom, in mel bands
_EMPTY_SECONDS = 5.0


def _check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise ValueError(f"no slot named {slot!r} (slots: {', '.join(SLOTS)})")
    return slot


class QtSpectrogramView(QWidget):
    """Shows one clip's log-mel image, or A and B in two panes.

    Signals
    -------
    seek_requested(float)
        The user clicked at this time (seconds).
    loop_changed(object)
        (start, end) in seconds after the user set or moved the loop region,
        or None when it was cleared.
    panes_changed(bool)
        The A/B panes were switched on or off.
    """

    seek_requested = Signal(float)
    loop_changed = Signal(object)
    panes_changed = Signal(bool)

    def __init__(self, parent=None, title: str = ""):
        super().__init__(parent)
        pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
        self.config = FeatureConfig()
        self._single = Shown()
        self._slots = {s: Shown() for s in SLOTS}
        self._active_slot: str | None = None
        self._panes_on = False
        self._show_strips = False  # set once the view is given a waveform: no empty strip before
        self._loop: tuple[float, float] | None = None
        self._playhead: float | None = None
        self._single_hint = EMPTY_HINT

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setToolTip(ZOOM_HELP)
        self.graphics.ci.layout.setVerticalSpacing(2)
        self.panes = [QtSpectrogramPane(self, "", title), QtSpectrogramPane(self, "B")]
        main, other = self.panes
        other.plot.setXLink(main.plot)
        other.plot.setYLink(main.plot)
        # The names the rest of the app and the tests know: the main pane's items.
        self.plot = main.plot
        self.image = main.image
        self.placeholder = main.placeholder
        self.strip = main.strip
        self.playhead = main.marks.playhead
        self.loop_region = main.marks.loop_region
        self.compared_lines = main.marks.compared_lines
        self.compared_dims = main.marks.compared_dims
        for pane in self.panes:
            pane.image.setLevels((self.config.db_floor, self.config.db_ceiling))
        self.colorbar = pg.ColorBarItem(
            values=(self.config.db_floor, self.config.db_ceiling),
            limits=(self.config.db_floor, self.config.db_ceiling), rounding=0.5,
            colorMap=pg.colormap.get("viridis"), label="level (dB re full-scale sine)", interactive=True, width=14,
        )
        self.colorbar.setImageItem([p.image for p in self.panes])
        self._set_db_limits(self.config)

        self.cmap_box = QComboBox()
        self.cmap_box.addItems(COLORMAPS)
        self.cmap_box.setToolTip("Colour map (all perceptually uniform)")
        self.fit_action = QAction("Fit", self)
        self.fit_action.setShortcut(QKeySequence(Qt.Key_F))
        self.fit_action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        self.fit_action.setToolTip("Fit: show the whole clip, all its time and frequency range, no margin (F)")
        self.fit_action.triggered.connect(self.fit)
        self.addAction(self.fit_action)
        self.fit_button = QToolButton()
        self.fit_button.setDefaultAction(self.fit_action)
        self.panes_button = QToolButton()
        self.panes_button.setText("A/B panes")
        self.panes_button.setCheckable(True)
        self.panes_button.setToolTip(PANES_HELP)
        self.panes_button.toggled.connect(self.set_panes)
        self.readout = QLabel("")
        widest = "B:    00.00 s     00000 Hz    -00.0 dB  "  # the readout keeps its place as it changes
        self.readout.setMinimumWidth(self.readout.fontMetrics().horizontalAdvance(widest))
        self.readout.setToolTip("Time, frequency and level under the pointer")
        self.caption = QLabel("")
        self.compared_label = QLabel("")
        self.compared_label.setStyleSheet("color: rgb(%d, %d, %d);" % COMPARED_COLOUR)
        # Takes the room left beside the caption and is cut there: it must not widen the window.
        self.compared_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.caption.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.compared_label.setToolTip(COMPARED_HELP)
        # The caption, and under it what the metrics compared (a line kept
        # even when empty, so the image does not jump when a result arrives).
        self.compared_label.setMinimumHeight(self.compared_label.fontMetrics().height())
        # Two rows: the caption and the view's buttons; what was compared and the hover readout.
        controls = QHBoxLayout()
        controls.addWidget(self.caption, 1)
        controls.addWidget(self.fit_button)
        controls.addWidget(self.panes_button)
        controls.addWidget(QLabel("colours"))
        controls.addWidget(self.cmap_box)
        info = QHBoxLayout()
        info.addWidget(self.compared_label, 1)
        info.addWidget(self.readout)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(controls)
        lay.addLayout(info)
        lay.addWidget(self.graphics, 1)

        self.cmap_box.currentTextChanged.connect(self._on_cmap_changed)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._relayout()
        self._refresh(fit=True)

    # -- public API ---------------------------------------------------------
    def set_image(self, image: np.ndarray | None, config: FeatureConfig | None = None, caption: str = "") -> None:
        """Show a (n_mels, T) image in [0, 1] in the single view (None clears it)."""
        self._set_config(config)
        self.caption.setText(caption)
        db = None if image is None else as_db_image(image, self.config)
        self._single = Shown(db=db, config=self.config, caption=caption, samples=self._single.samples,
                              rate=self._single.rate)
        self.set_compared(None)  # marks belong to the image they were set for
        if not self._panes_on:
            self._refresh(fit=True)

    def set_slot_image(self, slot: str, image: np.ndarray | None, config: FeatureConfig | None = None,
                       caption: str = "") -> None:
        """Give the A/B panes slot ``slot``'s (n_mels, T) image in [0, 1] (None clears it)."""
        shown = self._slots[_check_slot(slot)]
        self._set_config(config)
        shown.db = None if image is None else as_db_image(image, self.config)
        shown.config = self.config
        shown.caption = caption
        shown.compared, shown.compared_text = None, ""
        if self._panes_on:
            self._refresh(fit=True)

    def set_waveform(self, samples: np.ndarray | None, rate: float = 22050.0) -> None:
        """The single view's waveform strip: mono samples at ``rate`` Hz (None clears it)."""
        self._single.samples, self._single.rate = self._checked_wave(samples, rate)
        self._waveform_given()
        if not self._panes_on:
            self._refresh()

    def set_slot_waveform(self, slot: str, samples: np.ndarray | None, rate: float = 22050.0) -> None:
        """Slot ``slot``'s waveform, for its pane (and the single view while that slot is active)."""
        shown = self._slots[_check_slot(slot)]
        shown.samples, shown.rate = self._checked_wave(samples, rate)
        if slot == self._active_slot:
            self._single.samples, self._single.rate = shown.samples, shown.rate
        self._waveform_given()
        self._refresh()

    def set_active_slot(self, slot: str | None) -> None:
        """The slot being played: its pane's playhead is solid; the single view takes its waveform."""
        self._active_slot = None if slot is None else _check_slot(slot)
        if slot is not None and self._slots[slot].samples is not None:
            self._single.samples, self._single.rate = self._slots[slot].samples, self._slots[slot].rate
        self._refresh()

    def active_slot(self) -> str | None:
        return self._active_slot

    def set_slot_compared(self, slot: str, region: tuple[float, float] | None, text: str = "") -> None:
        """Mark (start, end) seconds of slot ``slot``'s clip as compared, in its pane (None clears)."""
        shown = self._slots[_check_slot(slot)]
        shown.compared = None if region is None or shown.db is None else (float(region[0]), float(region[1]))
        shown.compared_text = text if shown.compared is not None else ""
        if self._panes_on:
            self._refresh()

    def slot_compared(self, slot: str) -> tuple[float, float] | None:
        return self._slots[_check_slot(slot)].compared

    def set_panes(self, on: bool) -> None:
        """Show A and B in two panes (True) or the single view (False)."""
        on = bool(on)
        if self.panes_button.isChecked() != on:
            self.panes_button.setChecked(on)  # comes back here through toggled
            return
        if on == self._panes_on:
            return
        self._panes_on = on
        if on:
            self._single_hint = self.panes[0].placeholder.toPlainText()
        else:
            self.panes[0].placeholder.setText(self._single_hint)
        self._relayout()
        self._show_compared_label()
        self._refresh(fit=True)
        self.panes_changed.emit(on)

    def panes_shown(self) -> bool:
        """True while A and B are shown in two panes."""
        return self._panes_on

    def pane(self, slot: str) -> QtSpectrogramPane:
        """The pane that shows slot ``slot`` in the A/B panes."""
        return self.panes[SLOTS.index(_check_slot(slot))]

    def fit(self) -> None:
        """Show the whole of what is shown: all its time and frequency range, with no padding."""
        extent = self._time_extent()
        for pane in self._visible_panes():
            pane.viewbox().setRange(xRange=(0.0, extent), yRange=(0.0, float(pane.n_mels(self.config))), padding=0)

    def set_empty_hint(self, text: str) -> None:
        """The text the single view shows while it has no image (default: how to get one)."""
        self._single_hint = text or EMPTY_HINT
        if not self._panes_on:
            self.panes[0].placeholder.setText(self._single_hint)

    def set_levels(self, low_db: float, high_db: float) -> None:
        """Set the displayed dB range (what the colour bar handles do), within the config's dB range."""
        low, high = float(low_db), float(high_db)
        floor, ceiling = self.config.db_floor, self.config.db_ceiling
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"colour levels must be finite dB values, got {low_db}, {high_db}")
        if not low < high:
            raise ValueError(f"the low colour level must be below the high one, got {low:g} dB >= {high:g} dB")
        if low < floor or high > ceiling:
            raise ValueError(f"colour levels {low:g}..{high:g} dB lie outside the features' range "
                             f"{floor:g}..{ceiling:g} dB")
        self.colorbar.setLevels((low, high))

    def levels(self) -> tuple[float, float]:
        return tuple(self.colorbar.levels())

    def set_colormap(self, name: str) -> None:
        self.cmap_box.setCurrentText(name)

    def set_playhead(self, seconds: float | None) -> None:
        self._playhead = None if seconds is None else float(seconds)
        self._draw_playheads()

    def set_compared(self, region: tuple[float, float] | None, text: str = "") -> None:
        """Mark (start, end) seconds of the single view's clip as what the metrics compared (None clears).

        ``text`` is shown under the caption (what it is compared with).
        """
        s = self._single
        s.compared = None if region is None or s.db is None else (float(region[0]), float(region[1]))
        s.compared_text = text if s.compared is not None else ""
        self._show_compared_label()
        if not self._panes_on:
            main = self.panes[0]
            main.marks.set_compared(s.compared, s.duration())
            main.strip.marks.set_compared(s.compared, s.duration())

    def _show_compared_label(self) -> None:
        # In the panes each pane's caption says what was compared of its clip.
        text = "" if self._panes_on or self._single.compared is None else self._single.compared_text
        self.compared_label.setText(f"▮ {text}" if text else "")
        self.compared_label.setToolTip(f"{text}\n\n{COMPARED_HELP}" if text else COMPARED_HELP)

    def compared(self) -> tuple[float, float] | None:
        """The marked compared region of the single view, in seconds, or None."""
        return self._single.compared

    def set_loop(self, region: tuple[float, float] | None) -> None:
        """Show (start, end) seconds as the loop region, or hide it."""
        self._loop = None if region is None else tuple(sorted((float(region[0]), float(region[1]))))
        for marks in self._all_marks():
            marks.set_loop(self._loop)

    def loop(self) -> tuple[float, float] | None:
        return tuple(self.loop_region.getRegion()) if self.loop_region.isVisible() else None

    def duration(self) -> float:
        """Length in seconds of the single view's image (0 without one)."""
        return self._single.duration()

    def has_image(self) -> bool:
        return self._single.db is not None

    def readout_at(self, seconds: float, mel_pos: float, slot: str | None = None) -> str:
        """The hover text for a point in plot coordinates ('' outside the image).

        ``slot`` None reads the single view; "A" or "B" reads that slot's pane.
        """
        if slot is None:
            shown = self._single
        else:
            shown = self._slots[_check_slot(slot)]
        freqs = mel_frequencies(shown.config or self.config)
        return shown.readout(seconds, mel_pos, freqs)

    # -- drawing --------------------------------------------------------------
    def _set_config(self, config: FeatureConfig | None) -> None:
        if config is not None and config != self.config:
            self.config = config
            self._set_db_limits(config)

    def _set_db_limits(self, config: FeatureConfig) -> None:
        # The handles cannot take the scale past the dB range the images can hold.
        bar = self.colorbar
        bar.lo_lim, bar.hi_lim = config.db_floor, config.db_ceiling
        low, high = bar.levels()
        low, high = max(low, config.db_floor), min(high, config.db_ceiling)
        bar.setLevels((low, high) if low < high else (config.db_floor, config.db_ceiling))

    @staticmethod
    def _checked_wave(samples, rate):
        if samples is None:
            return None, 0.0
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"waveform samples must be mono (n,), got shape {x.shape}")
        if not (np.isfinite(rate) and rate > 0):
            raise ValueError(f"waveform sample rate must be a positive number of Hz, got {rate}")
        if x.size and not np.all(np.isfinite(x)):
            raise ValueError("waveform samples must be finite (found NaN or infinity)")
        return x, float(rate)

    def _waveform_given(self) -> None:
        if not self._show_strips:
            self._show_strips = True
            self._relayout()

    def _visible_panes(self) -> list[QtSpectrogramPane]:
        return self.panes if self._panes_on else self.panes[:1]

    def _all_marks(self) -> list[QtTimeMarks]:
        return [m for p in self.panes for m in (p.marks, p.strip.marks)]

    def _relayout(self) -> None:
        """Place the visible panes' items in the graphics layout, the colour bar beside the spectrograms."""
        ci = self.graphics.ci
        geometry = ci.geometry()  # an emptied layout shrinks its widget; put it back after
        ci.clear()
        row, plot_rows = 0, []
        for pane in self._visible_panes():
            # Captions and strips keep their height; the spectrograms share what is left.
            if self._panes_on:
                ci.addItem(pane.label, row, 0)
                ci.layout.setRowStretchFactor(row, 0)
                row += 1
            if self._show_strips:
                ci.addItem(pane.strip, row, 0)
                ci.layout.setRowStretchFactor(row, 0)
                row += 1
            ci.addItem(pane.plot, row, 0)
            ci.layout.setRowStretchFactor(row, 10)
            plot_rows.append(row)
            row += 1
        # Time is read on the bottom pane; the upper one keeps its ticks, not the label.
        self.panes[0].plot.setLabel("bottom", "" if self._panes_on else "time", units=None if self._panes_on else "s")
        ci.addItem(self.colorbar, plot_rows[0], 1, rowspan=plot_rows[-1] - plot_rows[0] + 1)
        ci.setGeometry(geometry)

    def _pane_contents(self) -> list[tuple[QtSpectrogramPane, Shown, str]]:
        if not self._panes_on:
            return [(self.panes[0], self._single, None)]  # the single view's hint is what was last set
        return [(pane, self._slots[s], f"{s}: no clip yet (Shift+B makes the selected clip B; then select A)")
                for pane, s in zip(self.panes, SLOTS)]

    def _refresh(self, fit: bool = False) -> None:
        for pane, shown, empty_text in self._pane_contents():
            pane.show(shown, self.config, empty_text, self.colorbar.levels())
            if self._panes_on:
                pane.label.setText(self._pane_caption(pane, shown))
        self._update_limits()
        extent = self._time_extent()
        for pane, _shown, _t in self._pane_contents():
            # An empty pane's hint sits in the middle of what the panes span.
            pane.placeholder.setPos(extent / 2, pane.n_mels(self.config) / 2)
        for marks in self._all_marks():
            marks.set_loop(self._loop)
        self._draw_playheads()
        if fit:
            self.fit()

    def _pane_caption(self, pane: QtSpectrogramPane, shown: Shown) -> str:
        slot = SLOTS[self.panes.index(pane)]
        text = shown.caption or f"{slot}: —"
        if slot == self._active_slot:
            text = f"▶ {text}"
        if shown.compared_text:
            r, g, b = COMPARED_COLOUR
            text += f"   <span style='color: rgb({r},{g},{b})'>▮ {shown.compared_text}</span>"
        return text

    def _time_extent(self) -> float:
        durations = [shown.duration() for _p, shown, _t in self._pane_contents()]
        extent = max(durations) if durations else 0.0
        return extent if extent > 0 else _EMPTY_SECONDS

    def _update_limits(self) -> None:
        extent = self._time_extent()
        min_x = min(extent, MIN_FRAMES_SHOWN * self.config.seconds_per_frame())
        for pane in self.panes:
            n_mels = float(pane.n_mels(self.config))
            pane.viewbox().setLimits(xMin=0.0, xMax=extent, minXRange=min_x, maxXRange=extent,
                                     yMin=0.0, yMax=n_mels, minYRange=min(MIN_BANDS_SHOWN, n_mels),
                                     maxYRange=n_mels)
            pane.strip.getViewBox().setLimits(xMin=0.0, xMax=extent, minXRange=min_x, maxXRange=extent)

    def _draw_playheads(self) -> None:
        for pane, _shown, _t in self._pane_contents():
            slot = SLOTS[self.panes.index(pane)]
            active = not self._panes_on or self._active_slot in (None, slot)
            pane.marks.set_playhead(self._playhead, active)
            pane.strip.marks.set_playhead(self._playhead, active)

    # -- slots --------------------------------------------------------------
    def _on_cmap_changed(self, name: str) -> None:
        self.colorbar.setColorMap(pg.colormap.get(name))

    def _pane_at(self, scene_pos):
        """(pane, its shown data, 'plot' or 'strip') under a scene point, or None."""
        for pane, shown, _t in self._pane_contents():
            if pane.plot.scene() is None:
                continue
            if pane.viewbox().sceneBoundingRect().contains(scene_pos):
                return pane, shown, "plot"
            if self._show_strips and pane.strip.getViewBox().sceneBoundingRect().contains(scene_pos):
                return pane, shown, "strip"
        return None

    def _on_mouse_moved(self, pos) -> None:
        hit = self._pane_at(pos)
        if hit is None:
            self.readout.setText("")
            return
        pane, shown, part = hit
        prefix = f"{SLOTS[self.panes.index(pane)]}:  " if self._panes_on else ""
        if part == "strip":
            t = pane.strip.getViewBox().mapSceneToView(pos).x()
            self.readout.setText(f"{prefix}{t:6.2f} s" if 0 <= t <= shown.duration() else "")
            return
        p = pane.viewbox().mapSceneToView(pos)
        text = shown.readout(p.x(), p.y(), pane.freqs)
        self.readout.setText(f"{prefix}{text}" if text else "")

    def _on_mouse_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton:  # (an enum: never equal to the int 1)
            return
        hit = self._pane_at(event.scenePos())
        if hit is None or hit[1].db is None:
            return
        pane, shown, part = hit
        vb = pane.viewbox() if part == "plot" else pane.strip.getViewBox()
        p = vb.mapSceneToView(event.scenePos())
        if 0 <= p.x() <= shown.duration():
            self.seek_requested.emit(float(p.x()))

    def _on_region_dragged(self, start: float, end: float, finished: bool) -> None:
        d = self.duration() if not self._panes_on else self._time_extent()
        a, b = sorted((min(max(start, 0.0), d), min(max(end, 0.0), d)))
        self.set_loop((a, b))
        if finished:
            self.loop_changed.emit((a, b) if b > a else None)

    def _on_region_moved(self, region_item=None) -> None:
        item = region_item if isinstance(region_item, pg.LinearRegionItem) else self.loop_region
        region = tuple(item.getRegion())
        self.set_loop(region)
        self.loop_changed.emit(region)
