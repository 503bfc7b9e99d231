"""The "Preview" box of the session dialog: render one item of a plan in a worker, then hear its sounds.

:func:`render_preview` renders (or reuses) the stimuli of one item of a
:class:`~perceptlab.listening.create.TripletPlan` or
:class:`~perceptlab.listening.create.MushraPlan` and decodes its sounds, in a
worker thread with its own library connection. :class:`QtSessionPreview`
runs it, lists the sounds and plays them through a
:class:`~perceptlab.audio.playback.PlaybackEngine` (switching keeps the
position); with no audio device it says so and stays usable. The rendered
stimuli are kept: the session made from the plan reuses them.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout

from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable
from perceptlab.listening.designs import HIDDEN_REFERENCE, TRIPLET
from perceptlab.qt.workers import QtTask, QtTaskRunner

_ROLE_NAMES = {"x": "X", "reference": "reference", HIDDEN_REFERENCE: "hidden reference",
               "low_anchor": "low anchor", "mid_anchor": "mid anchor", "condition": "condition",
               "candidate": "candidate"}


def render_preview(library_path: str, design: str, plan, rate: int, *, progress=None, cancel=None) -> list:
    """Render one item of ``plan`` and decode its sounds (worker thread; its own library connection).

    Returns
    -------
    list of (str, str, numpy.ndarray or str)
        (label, what it is, the wave at ``rate`` or why it cannot be loaded),
        reference first.
    """
    from perceptlab.audio.decode import load as load_audio
    from perceptlab.library.store import Library
    from perceptlab.listening.create import preview_item

    from perceptlab.library.stimuli import get_stimulus

    with Library(library_path) as lib:
        item = preview_item(lib, design, plan, progress=progress, cancel=cancel)
        ref = item.x if design == TRIPLET else item.reference
        ref_name = ref["name"]
        if ref.get("stimulus_id") is not None:  # a render's file name spells its recipe: name the clip
            ref_name = get_stimulus(lib, ref["stimulus_id"]).info.get("reference", {}).get("name") or ref_name
    if design == TRIPLET:
        sounds = [("X", item.x), ("A", item.a), ("B", item.b)]
        describe = (lambda d: d["name"]) if item.source == "clips" else (
            lambda d: f"{ref_name} as is" if d["role"] == "x" else d["condition"])
    else:
        sounds = [("reference", item.reference)] + [(str(i), c) for i, c in enumerate(item.conditions, start=1)]

        def describe(d):
            role = _ROLE_NAMES.get(d["role"], d["role"])
            if d["role"] == "reference":
                return ref_name
            if d["role"] == HIDDEN_REFERENCE:
                return f"{role} ({ref_name})"
            return f"{role}: {d['condition']}"
    out = []
    for label, d in sounds:
        try:
            wave = load_audio(d["path"], rate)
        except Exception as exc:  # a stimulus file gone missing: listed, the others still play
            wave = str(exc)
        out.append((label, describe(d), wave))
    return out


class QtSessionPreview(QGroupBox):
    """One rendered item of a plan, listed and playable.

    Parameters
    ----------
    library_path : str
        The library the worker opens (its own connection).
    engine : PlaybackEngine
        What the sounds play through; :meth:`shutdown` closes it.

    Signals
    -------
    ready(int)
        The number of sounds rendered.
    """

    ready = Signal(int)

    def __init__(self, library_path: str, engine: PlaybackEngine, parent=None):
        super().__init__("Preview", parent)
        self.library_path = library_path
        self.engine = engine
        self.runner = QtTaskRunner(self, max_threads=1)
        self._task: QtTask | None = None
        #: (label, what it is) of each rendered sound, the reference first.
        self.sounds: list[tuple[str, str]] = []
        self.button = QPushButton("Preview trial")
        self.stop_button = QPushButton("Stop")
        self.list = QListWidget()
        self.list.setMaximumHeight(160)
        self.message = QLabel("Render one trial of this plan and hear it before creating the session.")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: gray")

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.button)
        row.addWidget(self.stop_button)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.list)
        lay.addWidget(self.message)
        self.stop_button.clicked.connect(self.engine.stop)
        self.list.itemClicked.connect(lambda it: self.play(self.list.row(it)))

    def start(self, design: str, plan) -> None:
        """Render one item of ``plan`` in the background (a preview still rendering is cancelled)."""
        if self._task is not None:
            self._task.cancel()
        self.engine.clear()
        self.list.clear()
        self.sounds = []
        self.message.setText("Rendering one trial…")
        task = QtTask(render_preview, self.library_path, design, plan, self.engine.sample_rate)
        task.signals.finished.connect(lambda res, t=task: self._on_ready(t, res))
        task.signals.failed.connect(lambda msg, _tb, t=task: self._on_failed(t, msg))
        task.signals.progress.connect(
            lambda done, total: self.message.setText(f"Rendering one trial… {done}/{total}"))
        self._task = task
        self.runner.start(task)

    def busy(self) -> bool:
        return self._task is not None

    def _on_failed(self, task, message: str) -> None:
        if task is not self._task:
            return
        self._task = None
        self.message.setText(f"Cannot preview: {message}")

    def _on_ready(self, task, sounds: list) -> None:
        if task is not self._task:
            return
        self._task = None
        failed = []
        for i, (label, what, wave) in enumerate(sounds):
            key = "0" if i == 0 else str(i)
            it = QListWidgetItem(f"[{key}] {label}: {what}")
            self.list.addItem(it)
            self.sounds.append((label, what))
            if isinstance(wave, str):
                failed.append(f"{label}: {wave}")
                it.setFlags(it.flags() & ~Qt.ItemIsEnabled)
            else:
                self.engine.load(label, wave)
        text = f"{len(sounds)} sounds rendered; click one to hear it (switching keeps the position)."
        if failed:
            text += " Cannot load " + "; ".join(failed)
        self.message.setText(text)
        self.ready.emit(len(sounds))

    def play(self, index: int) -> bool:
        """Hear sound ``index`` (0 = the reference); False, saying why, if it cannot play."""
        if not 0 <= index < len(self.sounds):
            return False
        label = self.sounds[index][0]
        if not self.engine.has(label):
            return False
        was_playing = self.engine.is_playing
        self.engine.select(label)
        if was_playing:
            return True
        try:
            self.engine.play()
        except PlaybackUnavailable as exc:
            self.message.setText(f"No audio output, so the preview cannot be heard here: {exc}. "
                                 f"The {len(self.sounds)} sounds are rendered; the session will use them.")
            return False
        return True

    def shutdown(self) -> None:
        """Close the engine and wait (up to 5 s) for a render still running."""
        self.engine.close()
        self.runner.shutdown(5000)
