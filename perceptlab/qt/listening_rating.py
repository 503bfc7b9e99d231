"""The listening screen's answer widgets: the sound buttons and, for MUSHRA, a slider per condition.

:class:`ListeningRatingMixin` holds the methods of
:class:`~perceptlab.qt.listening_view.QtListeningView` that build a trial's
play buttons (triplet: X, A, B in a row; MUSHRA: each condition's button,
0-100 slider and score with its band name on one row) and move the scores.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QWidget

from perceptlab.listening.designs import band_of


class ListeningRatingMixin:
    """Sound buttons and ratings of :class:`~perceptlab.qt.listening_view.QtListeningView`."""

    def _sound_button(self, index: int, text: str) -> QPushButton:
        key = "0" if index == 0 else str(index)
        b = QPushButton(f"{text}  [{key}]")
        b.setCheckable(True)
        b.setMinimumHeight(36)
        # The keys belong to the view: a focused button must not eat Space or Enter.
        b.setFocusPolicy(Qt.NoFocus)
        # The sound being heard stands out: the listener always knows which one it is.
        b.setStyleSheet("QPushButton:checked { font-weight: bold; background-color: #cfe0f4; "
                        "border: 1px solid #3b78c3; border-radius: 3px; }")
        b.clicked.connect(lambda _=False, i=index: self.play_sound(i))
        return b

    def _build_sound_buttons(self) -> None:
        """Triplet: X, A, B in one row. MUSHRA puts each play button on its condition's row instead."""
        self._clear_layout(self.sound_row)
        self.sound_buttons = {}
        if self.trial.design != "triplet":
            return
        for i, sound in enumerate(self.trial.sounds):
            b = self._sound_button(i, sound.label)
            b.setMinimumHeight(40)
            self.sound_row.addWidget(b)
            self.sound_buttons[sound.label] = b

    def _build_rating(self) -> None:
        self._clear_layout(self.rating_grid)
        self.sliders = {}
        self.value_labels = {}
        t = self.trial
        for col in range(max(3, self.rating_grid.columnCount())):
            self.rating_grid.setColumnStretch(col, 0)
        if t.design == "triplet":
            for col, label in enumerate(t.choices):
                self.rating_grid.setColumnStretch(col, 1)
                b = QPushButton(f"{label} is closer to {t.reference.label}")
                b.setMinimumHeight(36)
                b.setFocusPolicy(Qt.NoFocus)
                b.clicked.connect(lambda _=False, lab=label: self.choose(lab, submit=True))
                self.rating_grid.addWidget(b, 0, col)
            return
        # One row per sound: its play button, its slider, its score -- a slider
        # sits beside the button that plays what it rates.
        scale = t.scale
        grid = self.rating_grid
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(4)
        bands = QWidget()
        band_row = QHBoxLayout(bands)
        band_row.setContentsMargins(0, 0, 0, 0)
        band_row.setSpacing(0)
        for name, lo, hi in reversed(scale.bands):  # worst on the left, as the slider runs
            lab = QLabel(f"{name}\n{lo}-{hi}", alignment=Qt.AlignHCenter)
            lab.setStyleSheet("color: #555")
            band_row.addWidget(lab, hi - lo)
        grid.addWidget(bands, 0, 1)
        grid.addWidget(QLabel("score", alignment=Qt.AlignCenter), 0, 2)
        ref = self._sound_button(0, t.reference.label)
        self.sound_buttons[t.reference.label] = ref
        grid.addWidget(ref, 1, 0)
        hint = QLabel("the open reference: rate each condition against it")
        hint.setStyleSheet("color: gray")
        grid.addWidget(hint, 1, 1, 1, 2)
        for row, sound in enumerate(t.candidates, start=2):
            b = self._sound_button(row - 1, sound.label)
            self.sound_buttons[sound.label] = b
            s = QSlider(Qt.Horizontal)
            s.setRange(scale.minimum, scale.maximum)
            s.setValue(scale.minimum)
            s.setTickPosition(QSlider.TicksBelow)
            s.setTickInterval(20)
            s.setSingleStep(1)
            s.setPageStep(5)
            s.setFocusPolicy(Qt.NoFocus)
            s.setMinimumWidth(220)
            s.setProperty("rated", False)
            s.setToolTip(f"score of {sound.label} (j/k ±5, Shift+j/k ±1 for the condition last played)")
            value = QLabel("not rated", alignment=Qt.AlignVCenter | Qt.AlignLeft)
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("100 · Excellent") + 8)
            value.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Preferred)
            s.valueChanged.connect(lambda _v, lab=sound.label: self._on_slider_moved(lab))
            s.sliderPressed.connect(lambda lab=sound.label: self._on_slider_moved(lab))
            grid.addWidget(b, row, 0)
            grid.addWidget(s, row, 1)
            grid.addWidget(value, row, 2)
            self.sliders[sound.label] = s
            self.value_labels[sound.label] = value
        grid.setColumnStretch(1, 1)
        stored = (t.answer or {}).get("scores") if t.answer else None
        if stored:
            for lab, v in stored.items():
                if lab in self.sliders:
                    self.sliders[lab].setValue(int(round(v)))
                    self._on_slider_moved(lab)
            self.current = None

    def value_text(self, label: str) -> str:
        """What the score label beside a slider says: ``"72 · Good"``, or ``"not rated"``."""
        s = self.sliders[label]
        if not s.property("rated"):
            return "not rated"
        return f"{s.value()} · {band_of(s.value())}"

    def _on_slider_moved(self, label: str) -> None:
        s = self.sliders.get(label)
        if s is None:
            return
        s.setProperty("rated", True)
        self.current = label  # j/k now move this one
        self.value_labels[label].setText(self.value_text(label))

    def nudge(self, step: int) -> None:
        """MUSHRA: move the current condition's score."""
        if self.trial is None or self.trial.design != "mushra":
            return
        label = self.current or (self.trial.candidates[0].label if self.trial.candidates else None)
        if label in self.sliders:
            s = self.sliders[label]
            s.setValue(s.value() + step)
            self._on_slider_moved(label)
