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
"""

from __future__ import annotations

import html
import shlex
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
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from perceptlab.audio.decode import load as load_audio
from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable
from perceptlab.library.store import Library
from perceptlab.listening.designs import band_of
from perceptlab.qt.workers import QtTask, QtTaskRunner


def _create_session_in_worker(library_path: str, design: str, listener: str, plan, *,
                              progress=None, cancel=None) -> int:
    """Create a session on its own library connection (worker thread); returns its id."""
    from perceptlab.listening.create import create_session

    with Library(library_path) as lib:
        try:
            return create_session(lib, design, listener, plan, progress=progress, cancel=cancel).id
        except KeyError as exc:  # an unknown clip id: its message, without KeyError's quotes
            raise ValueError(exc.args[0] if exc.args else str(exc)) from None


def _decode_sounds(sounds, rate: int) -> dict:
    """{label: wave or the error message} for a trial's sounds (worker thread)."""
    out = {}
    for sound in sounds:
        try:
            out[sound.label] = load_audio(sound.path, rate)
        except Exception as exc:  # a missing stimulus file: reported, the session goes on
            out[sound.label] = str(exc)
    return out


class QtListeningView(QWidget):
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

    # -- sessions -------------------------------------------------------------------------
    def set_library(self, path: str | None) -> None:
        if self.library is not None:
            self.library.close()
        self.library_path = path
        self.library = Library(path) if path else None
        self.session = None
        self._clear_trial()  # nothing of another library's session stays on screen
        self.summary.hide()
        self.commands.hide()
        self.progress.reset()
        self.title.setText("Open or create a listening session")
        self.refresh_sessions()

    def refresh_sessions(self) -> None:
        from perceptlab.listening.session import list_sessions

        self.session_box.clear()
        if self.library is None:
            return
        for info in list_sessions(self.library):
            self.session_box.addItem(self._session_text(info), info.id)
        self._select_session_item()

    @staticmethod
    def _session_text(info) -> str:
        return (f"#{info.id} {info.design} · {info.listener} · {info.status} · "
                f"{info.n_answered}/{info.n_trials}")

    def _select_session_item(self) -> None:
        """Point the session box at the open session."""
        if self.session is None:
            return
        i = self.session_box.findData(self.session.id)
        if i >= 0:
            self.session_box.setCurrentIndex(i)

    def _update_session_item(self) -> None:
        """Rewrite the open session's entry (answered count, status) after an answer."""
        if self.session is None:
            return
        i = self.session_box.findData(self.session.id)
        if i < 0:
            self.refresh_sessions()
            return
        self.session_box.setItemText(i, self._session_text(self.session.info()))
        self.session_box.setCurrentIndex(i)

    def open_session(self, session_id: int) -> bool:
        """Open a session at its first unanswered trial (resume)."""
        from perceptlab.listening.session import Session

        self.engine.stop()
        self.session = Session.open(self.library, session_id)
        self._select_session_item()
        pos = self.session.next_position()
        if pos is None:
            self._show_summary()
            return False
        self.show_trial(pos)
        return True

    def create_session(self, design: str, listener: str, **plan) -> int:
        """Create a session from the library (see :mod:`perceptlab.listening.create`) and open it."""
        from perceptlab.listening.create import MushraPlan, TripletPlan, create_session

        plan_obj = (TripletPlan if design == "triplet" else MushraPlan)(**plan)
        session = create_session(self.library, design, listener, plan_obj)
        self.refresh_sessions()
        self.open_session(session.id)
        return session.id

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

    def summary_text(self) -> str:
        """What the completion screen says about the open session (rich text)."""
        s = self.session
        trials = s.answered_trials(include_unanswered=True)
        answers = [t for t in trials if t.answer is not None]
        rt = sum(float(t.answer.get("rt_ms", 0.0)) for t in answers) / 1000.0
        minutes, seconds = divmod(int(round(rt)), 60)
        took = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"

        def count(n, word):
            return f"{n} {word}" + ("" if n == 1 else "s")

        lines = [f"{count(len(answers), 'answer')} to {count(len(trials), 'trial')}, {took} of listening "
                 "(the sum of the time spent on each trial)."]
        if s.design == "triplet":
            catch = [t for t in answers if t.spec.get("catch")]
            if catch:
                right = sum(t.answer.get("choice") == t.spec.get("expected") for t in catch)
                lines.append(f"{count(len(catch), 'catch trial')} "
                             f"(the copy of X among A and B): {right} picked correctly.")
            else:
                lines.append("No catch trials in this session.")
        else:
            low = 0
            for t in answers:
                hidden = [c["label"] for c in t.spec.get("conditions", []) if c.get("role") == "hidden_reference"]
                low += any(t.answer["scores"].get(lab, 100.0) < 90 for lab in hidden)
            lines.append(f"Hidden reference rated below 90 on {low} of {len(answers)} items "
                         "(BS.1534 post-screening excludes a listener above 15 %).")
        return ("".join(f"<p>{html.escape(line)}</p>" for line in lines)
                + "<p><b>Next</b>: open the <b>Agreement tab</b> to see how well each metric agrees with "
                  "these answers, or run the commands below. For another listener, <b>New session…</b> "
                  "starts from this session's plan and seed: the items stay the same, their order changes.</p>")

    def summary_commands(self) -> str:
        """The command lines that analyse and export the open session."""
        lib = shlex.quote(str(self.library.path))
        return (f"perceptlab agreement --session {self.session.id} --library {lib}\n"
                f"perceptlab listen export {self.session.id} --out answers.csv --library {lib}")

    def _show_summary(self) -> None:
        """The completion screen of the open (fully answered) session."""
        self._clear_trial()
        s = self.session
        self.progress.setRange(0, max(1, s.n_trials))
        self.progress.setValue(s.n_trials)
        self.progress.setFormat(f"{s.n_trials} of {s.n_trials} answered")
        self.title.setText(f"Session #{s.id} ({s.design}) · listener {s.listener} · complete: thank you!")
        self.summary.setText(self.summary_text())
        self.summary.show()
        self.commands.setPlainText(self.summary_commands())
        self.commands.show()

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

    def nudge(self, step: int) -> None:
        """MUSHRA: move the current condition's score."""
        if self.trial is None or self.trial.design != "mushra":
            return
        label = self.current or (self.trial.candidates[0].label if self.trial.candidates else None)
        if label in self.sliders:
            s = self.sliders[label]
            s.setValue(s.value() + step)
            self._on_slider_moved(label)

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

    # -- buttons ---------------------------------------------------------------------------------
    def _on_open_clicked(self) -> None:
        sid = self.session_box.currentData()
        if sid is not None:
            self.open_session(int(sid))

    def _on_new_clicked(self) -> None:
        self.new_session_dialog()

    def new_session_dialog(self):
        """Open the session-authoring dialog (window-modal); accepting it creates the session."""
        from perceptlab.qt.session_dialog import QtSessionDialog

        if self.library is None:
            self.message.setText("Open a library first: sessions are stored in it")
            return None
        self.engine.pause()
        metrics = list(getattr(self.window(), "metric_names", None) or []) or None
        dlg = QtSessionDialog(self.library, self, metrics=metrics, sample_rate=self.engine.sample_rate)
        if self.session is not None:
            # The next listener of the same test: the open session's plan, a new name.
            from perceptlab.listening.create import MushraPlan, TripletPlan

            stored = dict(self.session.config.get("plan") or {})
            cls = TripletPlan if self.session.design == "triplet" else MushraPlan
            try:
                plan = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
                dlg.set_plan(self.session.design, plan)
            except (TypeError, ValueError):
                pass  # a plan stored by an older version: the dialog keeps its defaults
        dlg.accepted.connect(lambda d=dlg: self.create_from_plan(d.design(), d.listener(), d.plan()))
        dlg.finished.connect(dlg.deleteLater)
        self.session_dialog = dlg
        dlg.open()
        return dlg

    def create_from_plan(self, design: str, listener: str, plan) -> QtTask:
        """Build the session in a worker (rendering stimuli can take a while), then open it."""
        self.new_button.setEnabled(False)
        self.message.setText("")
        self.title.setText(f"Preparing a {design} session for {listener}…")
        task = QtTask(_create_session_in_worker, self.library_path, design, listener, plan)
        task.signals.progress.connect(
            lambda done, total: self.title.setText(f"Preparing a {design} session for {listener}… "
                                                   f"{done}/{total} stimuli"))
        task.signals.finished.connect(self._on_session_created)
        task.signals.failed.connect(self._on_session_failed)
        task.signals.cancelled.connect(lambda: self.new_button.setEnabled(True))
        self.creating = task
        return self.runner.start(task)

    def _on_session_created(self, session_id: int) -> None:
        self.creating = None
        self.new_button.setEnabled(True)
        self.refresh_sessions()
        self.open_session(int(session_id))

    def _on_session_failed(self, message: str, _tb: str) -> None:
        self.creating = None
        self.new_button.setEnabled(True)
        self.title.setText("Open or create a listening session")
        self.message.setText(f"Cannot create the session: {message}")

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
