"""Transport controls: play/pause, stop, loop, A/B, volume, level meter.

The bar drives a :class:`perceptlab.audio.playback.PlaybackEngine` and polls
its position and level with a timer (the audio callback never calls Qt).

Whether there is an audio output at all is asked off the GUI thread (the
check starts PortAudio in a child process, see :mod:`perceptlab.audio.backend`):
the bar waits for the answer a moment, so a quick one is in place before the
window is first painted, and otherwise says it is checking and fills the
answer in when it comes.
"""

from __future__ import annotations

import threading

import numpy as np

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QWidget,
)
from PySide6.QtCore import Qt

from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable, audio_output_status


def _ask_audio_output(answer: list, answered: threading.Event) -> None:
    """Worker thread: no Qt here; the GUI thread picks the answer up."""
    try:
        answer.append(audio_output_status())
    except Exception as exc:  # whatever went wrong, the bar must not stay "checking"
        answer.append((False, f"the audio check failed ({exc})"))
    answered.set()


class QtPlayerBar(QWidget):
    """Transport for slots A and B.

    Signals
    -------
    position_changed(float)
        Seconds, while playing (about 30 times a second).
    slot_changed(str)
        "A" or "B" after a switch.
    availability_changed(bool, str)
        Once the audio check answers after the bar was built: whether
        playback works, and why not ("" if it does).
    """

    position_changed = Signal(float)
    slot_changed = Signal(str)
    availability_changed = Signal(bool, str)

    # How long the constructor waits for the audio check before showing
    # "checking" instead: short enough that a window never waits noticeably.
    AUDIO_CHECK_WAIT_S = 0.5
    CHECKING = "checking the audio output…"

    def __init__(self, engine: PlaybackEngine | None = None, parent=None):
        super().__init__(parent)
        self.engine = engine or PlaybackEngine()
        self.available = False
        self.audio_checked = False
        self.unavailable_reason = self.CHECKING

        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop and rewind (Esc)")
        self.loop_box = QCheckBox("Loop")
        self.loop_box.setToolTip("Loop the region (Shift+Space); set it with a / b or Shift+drag on the spectrogram")
        self.a_button = QPushButton("A")
        self.b_button = QPushButton("B")
        for b, key in ((self.a_button, "1"), (self.b_button, "2")):
            b.setCheckable(True)
            b.setToolTip(f"Hear slot {b.text()} ({key}; Tab switches), keeping the position")
        self.slot_group = QButtonGroup(self)
        self.slot_group.setExclusive(True)
        self.slot_group.addButton(self.a_button)
        self.slot_group.addButton(self.b_button)
        self.a_button.setChecked(True)
        self.match_box = QCheckBox("Match loudness")
        self.match_box.setToolTip("Attenuate the louder of A and B to the quieter one's integrated loudness (ITU-R BS.1770)")
        self.autoplay_box = QCheckBox("Auto-play")
        self.autoplay_box.setToolTip("Play a clip as soon as it is selected")
        self.volume = QSlider(Qt.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setValue(80)
        self.volume.setMaximumWidth(110)
        self.volume.setToolTip("Volume")
        self.meter = QProgressBar()
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.meter.setMaximumWidth(90)
        self.meter.setToolTip("Output peak level")
        self.time_label = QLabel("A  0.00 / 0.00 s")
        self.time_label.setToolTip("The slot heard, the playhead and the length of that slot's clip")
        self.time_label.setMinimumWidth(self.time_label.fontMetrics().horizontalAdvance("B  000.00 / 000.00 s") + 8)
        # Each slot's clip length, from the library as soon as a clip is chosen
        # (its audio may still be decoding), then from the decoded audio.
        self._durations: dict[str, float] = {}
        self.message = QLabel("")
        # Takes the room that is left and is cut there (its tooltip has it all): a long
        # message must not widen the window.
        self.message.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.message.setMinimumWidth(60)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        for w in (self.play_button, self.stop_button, self.loop_box, self.a_button, self.b_button,
                  self.match_box, self.autoplay_box, QLabel("vol"), self.volume, self.meter, self.time_label):
            lay.addWidget(w)
        lay.addWidget(self.message, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._on_tick)
        self.play_button.clicked.connect(self.toggle)
        self.stop_button.clicked.connect(self.stop)
        self.loop_box.toggled.connect(self._on_loop_toggled)
        self.a_button.clicked.connect(lambda: self.select("A"))
        self.b_button.clicked.connect(lambda: self.select("B"))
        self.match_box.toggled.connect(self.engine.set_loudness_match)
        self.volume.valueChanged.connect(self._on_volume_changed)
        self._on_volume_changed(self.volume.value())
        self._tooltips = {w: w.toolTip() for w in self._audio_widgets()}

        # The worker writes into these plain objects, never into the widget,
        # which may be gone by the time a slow check answers.
        self._audio_answer: list[tuple[bool, str]] = []
        self._audio_answered = threading.Event()
        threading.Thread(target=_ask_audio_output, args=(self._audio_answer, self._audio_answered),
                         name="perceptlab-audio-check", daemon=True).start()
        if self._audio_answered.wait(self.AUDIO_CHECK_WAIT_S):
            self._apply_audio_answer(emit=False)
        else:
            self._show_audio_state(False, self.CHECKING)
            self._audio_poll = QTimer(self)
            self._audio_poll.setInterval(50)
            self._audio_poll.timeout.connect(self._on_audio_poll)
            self._audio_poll.start()

    # -- the audio check ---------------------------------------------------------
    def _on_audio_poll(self) -> None:
        if self._audio_answered.is_set():
            self._audio_poll.stop()
            self._apply_audio_answer(emit=True)

    def _apply_audio_answer(self, emit: bool) -> None:
        ok, why = self._audio_answer[0]
        self.audio_checked = True
        self.set_audio_available(ok, "" if ok else why, emit=emit)

    def _audio_widgets(self):
        return (self.play_button, self.stop_button, self.loop_box, self.autoplay_box, self.volume, self.meter)

    def _show_audio_state(self, ok: bool, why: str) -> None:
        for w in self._audio_widgets():
            w.setEnabled(ok)
            w.setToolTip(self._tooltips[w] if ok else f"Playback is off: {why}")
        if ok:
            if self.message.text().startswith("Playback off:"):
                self.message.setText("")
        else:
            self.message.setText(f"Playback off: {why}")
            self.message.setToolTip(f"Playback off: {why}")

    def set_audio_available(self, ok: bool, why: str = "", emit: bool = True) -> None:
        """Enable or disable the transport, showing ``why`` on the bar and in its tooltips."""
        self.available = ok
        self.unavailable_reason = "" if ok else why
        self._show_audio_state(ok, why)
        if emit:
            self.availability_changed.emit(ok, self.unavailable_reason)

    # -- actions -------------------------------------------------------------
    def toggle(self) -> None:
        if self.engine.is_playing:
            self.pause()
        else:
            self.play()

    def play(self) -> bool:
        """Start or resume the active slot; with the loop on, from the loop start unless the playhead is in it."""
        if not self.available:
            self.message.setText(f"Playback off: {self.unavailable_reason}")
            return False
        if not self.engine.has(self.engine.active_slot):
            self.message.setText(f"Nothing to play: slot {self.engine.active_slot} holds no audio")
            return False
        loop = self.engine.loop if self.engine.loop_enabled else None
        if loop is not None and not (loop[0] <= self.engine.position < loop[1]):
            self.engine.seek(loop[0])
        try:
            self.engine.play()
        except PlaybackUnavailable as exc:
            self.set_audio_available(False, str(exc))
            return False
        self.play_button.setText("Pause")
        self.timer.start()
        return True

    def pause(self) -> None:
        self.engine.pause()
        self.play_button.setText("Play")
        self._on_tick()

    def stop(self) -> None:
        self.engine.stop()
        self.play_button.setText("Play")
        self.timer.stop()
        self._on_tick()

    def select(self, slot: str) -> None:
        if not self.engine.has(slot):
            self.message.setText(f"Slot {slot} is empty: choose a clip for it first")
            (self.a_button if self.engine.active_slot == "A" else self.b_button).setChecked(True)
            return
        self.engine.select(slot)
        (self.a_button if slot == "A" else self.b_button).setChecked(True)
        # A slot message is done with; why playback is off is not.
        self.message.setText("" if self.available else f"Playback off: {self.unavailable_reason}")
        self._on_tick()
        self.slot_changed.emit(slot)

    def switch(self) -> None:
        self.select("B" if self.engine.active_slot == "A" else "A")

    def toggle_loop(self) -> None:
        if self.loop_box.isEnabled():  # with playback off the key does what the greyed box would
            self.loop_box.setChecked(not self.loop_box.isChecked())

    def seek(self, seconds: float) -> None:
        self.engine.seek(seconds)
        self._on_tick()

    def set_clip_duration(self, slot: str, seconds: float | None) -> None:
        """The length of the clip now in ``slot`` (None: unknown, the slot's audio says)."""
        if seconds is None:
            self._durations.pop(slot, None)
        else:
            self._durations[slot] = float(seconds)
        self._on_tick()

    def unload(self, slot: str) -> None:
        """Empty ``slot`` (stopping it if it is the one heard): nothing is left in it to play."""
        if slot == self.engine.active_slot:
            self.stop()
        self.engine.load(slot, np.zeros(0, np.float32))
        self._durations[slot] = 0.0
        self._on_tick()

    def clear_loop(self) -> None:
        """Forget the loop region and turn looping off."""
        self.engine.set_loop(None, None)
        self.loop_box.setChecked(False)

    def duration(self, slot: str | None = None) -> float:
        """The length of ``slot``'s clip (default: the slot heard), in seconds."""
        slot = slot or self.engine.active_slot
        return self._durations.get(slot, self.engine.duration(slot))

    # -- slots -----------------------------------------------------------------
    def _on_loop_toggled(self, on: bool) -> None:
        self.engine.loop_enabled = on

    def _on_volume_changed(self, value: int) -> None:
        self.engine.volume = value / 100.0

    def _on_tick(self) -> None:
        pos = self.engine.position
        self.time_label.setText(f"{self.engine.active_slot}  {pos:5.2f} / {self.duration():.2f} s")
        self.meter.setValue(int(min(1.0, self.engine.level) * 100))
        self.position_changed.emit(pos)
        if not self.engine.is_playing and self.timer.isActive():
            self.timer.stop()
            self.play_button.setText("Play")
            self.meter.setValue(0)

    def close_engine(self) -> None:
        self.timer.stop()
        self.engine.close()
