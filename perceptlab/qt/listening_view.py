"""The listening screen: triplet (2AFC) and MUSHRA tests, driven by keyboard.

MUSHRA lays each condition out as one row: its play button, its 0-100
slider and its score with the band name ("72 · Good"), so a slider sits
beside the button that plays what it rates. "New session…" opens
:class:`perceptlab.qt.session_dialog.QtSessionDialog`; the session is built
in a worker thread. The session box counts answers as they are given, and a
finished session shows a summary (answers, listening time, catch trials) and
what to do next instead of the last trial.

Keys (the whole flow works without a mouse):

* ``0`` or ``r`` play the reference (X); ``1``-``9`` play a candidate
  (triplet: A, B; MUSHRA: conditions 1..9). Switching keeps the playback
  position, so listeners compare the same moment.
* Space play/pause, ``a`` / ``b`` set the loop start / end at the playhead,
  Shift+Space toggles the loop.
* Triplet: the candidate played last is the tentative answer; Enter answers
  "this one is closer to X" and moves on.
* MUSHRA: ``j`` / ``k`` lower / raise the current condition's score by 5
  (Shift: by 1); Enter submits the item once every condition is rated (and,
  with the must-play rule, played).

Every answer is committed to the library before the next trial shows, so a
crash loses nothing and reopening the session resumes at the first
unanswered trial.

The sessions (box, opening, creating, the completion screen) are in
:mod:`perceptlab.qt.listening_sessions`, the sound buttons and MUSHRA sliders
in :mod:`~perceptlab.qt.listening_rating`; this module lays out the screen,
shows a trial, plays and answers.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QKeySequence, QShortcut, QTextOption
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from perceptlab.audio.decode import load as load_audio
from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable
from perceptlab.library.store import Library
from perceptlab.qt.listening_rating import ListeningRatingMixin
from perceptlab.qt.listening_sessions import ListeningSessionsMixin
from perceptlab.qt.workers import QtTask, QtTaskRunner


def _decode_sounds(sounds, rate: int) -> dict:
    """{label: wave or the error message} for a trial's sounds (worker thread)."""
    out = {}
    for sound in sounds:
        try:
            out[sound.label] = load_audio(sound.path, rate)
        except Exception as exc:  # a missing stimulus file: reported, the session goes on
            out[sound.label] = str(exc)
    return out


class QtListeningView(ListeningSessionsMixin, ListeningRatingMixin, QWidget):
    """Runs one listening session at a time.

    Signals
    -------
    answered(int)
        The position just answered (and committed).
    finished(int)
        The session id, when its last trial was answered.
    """

    answered = Signal(int)
    finished = Signal(int)

    def __init__(self, parent=None, engine: PlaybackEngine | None = None):
        super().__init__(parent)
        self.library_path: str | None = None
        self.library: Library | None = None
        self.session = None
        self.trial = None
        self.engine = engine or PlaybackEngine()
        self.current: str | None = None  # label of the sound being heard / chosen
        self.played: set[str] = set()
        self._shown_at = 0.0
        self.sliders: dict[str, QSlider] = {}
        # Decoding a trial's sounds (up to 13 files) stays off the GUI thread;
        # a key pressed before they are ready plays as soon as they are.
        self.runner = QtTaskRunner(self, max_threads=1)
        self._audio_task: QtTask | None = None
        self._pending_play: int | None = None
        self.creating: QtTask | None = None
        self.session_dialog = None

        self.session_box = QComboBox()
        self.open_button = QPushButton("Open")
        self.new_button = QPushButton("New session…")
        self.title = QLabel("Open or create a listening session")
        self.title.setWordWrap(True)
        self.prompt = QLabel("")
        self.prompt.setStyleSheet("font-size: 15px; font-weight: bold")
        self.progress = QProgressBar()
        self.sound_row = QHBoxLayout()
        self.rating_grid = QGridLayout()
        self.choice_label = QLabel("")
        self.next_button = QPushButton("Next (Enter)")
        self.message = QLabel("")
        self.message.setStyleSheet("color: #c0392b")
        self.playhead = QLabel("")
        # The completion screen: what was answered and what to do next.
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.summary.setStyleSheet("font-size: 14px")
        self.summary.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.summary.hide()
        # Copyable commands; a long library path wraps inside the box instead of widening the page.
        self.commands = QPlainTextEdit()
        self.commands.setReadOnly(True)
        self.commands.setWordWrapMode(QTextOption.WrapAtWordBoundaryOrAnywhere)
        self.commands.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.commands.setFixedHeight(4 * self.commands.fontMetrics().lineSpacing() + 12)
        self.commands.hide()
        self.value_labels: dict[str, QLabel] = {}
        self.sound_buttons: dict[str, QPushButton] = {}
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._on_tick)
        # The test's keys are shortcuts of this widget and its children: it
        # must be able to hold the keyboard focus itself.
        self.setFocusPolicy(Qt.StrongFocus)

        top = QHBoxLayout()
        top.addWidget(QLabel("Session"))
        top.addWidget(self.session_box, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.new_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.title)
        lay.addWidget(self.progress)
        lay.addWidget(self.prompt)
        lay.addLayout(self.sound_row)
        lay.addLayout(self.rating_grid)
        lay.addWidget(self.summary)
        lay.addWidget(self.commands)
        lay.addStretch(1)
        lay.addWidget(self.choice_label)
        lay.addWidget(self.playhead)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(self.next_button)
        lay.addLayout(bottom)
        keys = QLabel("Keys: 0/r reference · 1-9 candidates · Space play/pause · a/b loop points · "
                      "Shift+Space loop · j/k rating −/+ · Enter answer and next")
        keys.setStyleSheet("color: gray")
        keys.setWordWrap(True)  # a narrow window wraps the key list instead of scrolling the page
        lay.addWidget(keys)

        self.open_button.clicked.connect(self._on_open_clicked)
        self.new_button.clicked.connect(self._on_new_clicked)
        self.next_button.clicked.connect(self.submit)
        self.next_button.setEnabled(False)
        self._install_keys()

    # -- keys -----------------------------------------------------------------------
    def _install_keys(self) -> None:
        def add(seq, fn):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)

        add("0", lambda: self.play_sound(0))
        add("R", lambda: self.play_sound(0))
        for i in range(1, 10):
            add(str(i), lambda i=i: self.play_sound(i))
        add("Space", self.toggle_play)
        add("Shift+Space", self._toggle_loop)
        add("A", lambda: self._loop_point(0))
        add("B", lambda: self._loop_point(1))
        add("J", lambda: self.nudge(-5))
        add("K", lambda: self.nudge(5))
        add("Shift+J", lambda: self.nudge(-1))
        add("Shift+K", lambda: self.nudge(1))
        add("Return", self.submit)
        add("Enter", self.submit)

    # -- a trial -----------------------------------------------------------------------------
    def show_trial(self, position: int) -> None:
        self.trial = self.session.trial(position)
        t = self.trial
        self.engine.clear()
        self.played = set()
        self.current = None
        self.message.setText("")
        self.choice_label.setText("")
        self.playhead.setText("")
        self.summary.hide()
        self.commands.hide()
        self.next_button.setEnabled(True)
        prog = self.session.progress()
        self.progress.setRange(0, prog.total)
        self.progress.setValue(prog.answered)
        self.progress.setFormat(f"trial {position + 1} of {t.n_trials} · %v answered")
        self.title.setText(f"Session #{t.session_id} ({t.design}) · listener {self.session.info().listener}")
        self.prompt.setText(t.prompt)
        self._pending_play = None
        if self._audio_task is not None:
            self._audio_task.cancel()
        task = QtTask(_decode_sounds, t.sounds, self.engine.sample_rate, with_progress=False)
        task.signals.finished.connect(lambda waves, tk=task: self._on_sounds_ready(tk, waves))
        self._audio_task = task
        self.runner.start(task)
        self._build_sound_buttons()
        self._build_rating()
        self._shown_at = time.monotonic()
        self.setFocus()

    def sounds_ready(self) -> bool:
        """True once the current trial's sounds are decoded."""
        return self.trial is not None and self._audio_task is None

    def _on_sounds_ready(self, task: QtTask, waves: dict) -> None:
        if task is not self._audio_task:
            return  # a trial the listener already left
        self._audio_task = None
        failed = []
        for label, wave in waves.items():
            if isinstance(wave, str):
                failed.append(f"{label}: {wave}")
            else:
                self.engine.load(label, wave)
        if failed:
            self.message.setText("Cannot load " + "; ".join(failed))
        if self._pending_play is not None:
            index, self._pending_play = self._pending_play, None
            self.play_sound(index)

    def _clear_layout(self, layout) -> None:
        while layout.count():
            item = layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    def _clear_trial(self) -> None:
        """Nothing of the last trial stays on screen: sounds, ratings, choice, playhead."""
        self.trial = None
        if self._audio_task is not None:
            self._audio_task.cancel()
            self._audio_task = None
        self._pending_play = None
        self.timer.stop()
        self.engine.clear()
        self._clear_layout(self.sound_row)
        self._clear_layout(self.rating_grid)
        self.sliders = {}
        self.value_labels = {}
        self.sound_buttons = {}
        self.played = set()
        self.current = None
        self.prompt.setText("")
        self.choice_label.setText("")
        self.playhead.setText("")
        self.message.setText("")
        self.next_button.setEnabled(False)

    # -- playing ------------------------------------------------------------------------------
    def play_sound(self, index: int) -> None:
        """Hear sound ``index`` (0 = reference), keeping the playback position."""
        if self.trial is None or index >= len(self.trial.sounds):
            return
        label = self.trial.sounds[index].label
        self.played.add(label)
        for lab, b in self.sound_buttons.items():
            b.setChecked(lab == label)
        if index > 0:
            self.current = label
            if self.trial.design == "triplet":
                self.choose(label, submit=False)
        if not self.engine.has(label):
            if self._audio_task is not None:  # still decoding: play it when ready
                self._pending_play = index
            return
        was_playing = self.engine.is_playing
        self.engine.select(label)
        if not was_playing:
            try:
                self.engine.play()
            except PlaybackUnavailable as exc:
                self.message.setText(f"Playback off: {exc}")
        self.timer.start()

    def toggle_play(self) -> None:
        if self.engine.is_playing:
            self.engine.pause()
        elif self.trial is not None:
            try:
                self.engine.play()
            except PlaybackUnavailable as exc:
                self.message.setText(f"Playback off: {exc}")
            self.timer.start()

    def _toggle_loop(self) -> None:
        self.engine.loop_enabled = not self.engine.loop_enabled
        self.playhead.setText(self._playhead_text())

    def _loop_point(self, which: int) -> None:
        pos = self.engine.position
        cur = self.engine.loop or (0.0, self.engine.duration())
        region = (pos, max(cur[1], pos + 0.05)) if which == 0 else (min(cur[0], pos - 0.05), pos)
        self.engine.set_loop(max(region[0], 0.0), region[1])
        self.playhead.setText(self._playhead_text())

    def _playhead_text(self) -> str:
        loop = self.engine.loop
        text = f"{self.engine.active_slot}: {self.engine.position:5.2f} s"
        if loop:
            text += f" · loop {loop[0]:.2f}-{loop[1]:.2f} s" + (" (on)" if self.engine.loop_enabled else " (off)")
        return text

    def _on_tick(self) -> None:
        self.playhead.setText(self._playhead_text())
        if not self.engine.is_playing:
            self.timer.stop()

    # -- answering -----------------------------------------------------------------------------
    def choose(self, label: str, submit: bool = False) -> None:
        """Triplet: mark ``label`` as the closer candidate (and answer when ``submit``)."""
        self.current = label
        self.choice_label.setText(f"Your choice: {label} is closer to {self.trial.reference.label} "
                                  "(Enter to confirm)")
        if submit:
            self.submit()

    def current_answer(self) -> dict | None:
        t = self.trial
        if t is None:
            return None
        answer = {"played": sorted(self.played), "rt_ms": 1000.0 * (time.monotonic() - self._shown_at)}
        if t.design == "triplet":
            if self.current not in t.choices:
                return None
            answer["choice"] = self.current
        else:
            unrated = [lab for lab, s in self.sliders.items() if not s.property("rated")]
            if unrated:
                self.message.setText(f"Rate every condition first (not yet: {', '.join(unrated)})")
                return None
            answer["scores"] = {lab: float(s.value()) for lab, s in self.sliders.items()}
        return answer

    def submit(self) -> bool:
        """Commit the answer to the library and show the next trial."""
        from perceptlab.listening.session import SessionError

        if self.trial is None or self.session is None:
            return False
        answer = self.current_answer()
        if answer is None:
            if self.trial.design == "triplet":
                self.message.setText("Play A or B (1 / 2) and choose the one closer to X first")
            return False
        try:
            self.session.answer(self.trial.position, answer)
        except SessionError as exc:
            self.message.setText(str(exc))
            return False
        pos = self.trial.position
        self.answered.emit(pos)
        nxt = self.session.next_position()
        self.engine.stop()
        if nxt is None:
            self.session.complete()
            self._update_session_item()
            self._show_summary()
            self.finished.emit(self.session.id)
        else:
            self._update_session_item()
            self.show_trial(nxt)
        return True

    def close_engine(self) -> None:
        import shiboken6

        dlg = self.session_dialog
        if dlg is not None and shiboken6.isValid(dlg) and dlg.isVisible():
            dlg.done(0)  # stops its preview's worker and audio before the window goes
        if self._audio_task is not None:
            self._audio_task.cancel()
        self.runner.shutdown(5000)
        self.engine.close()
        if self.library is not None:
            self.library.close()
            self.library = None
