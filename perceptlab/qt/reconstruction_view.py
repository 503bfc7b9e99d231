"""What an encoder keeps: input vs reconstruction spectrograms, playable.

For a few clips (one per label) the view shows the clip's 128-frame excerpt
beside the autoencoder's reconstruction of it. Both can be heard through
Griffin-Lim inversion (:mod:`perceptlab.audio.invert`), so the comparison is
fair: the input goes through the same inversion as the reconstruction.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from perceptlab.audio.features import FeatureConfig, unit_to_db
from perceptlab.audio.invert import griffin_lim_audio
from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable
from perceptlab.library.store import Clip, Library
from perceptlab.qt.workers import QtTask, QtTaskRunner


def reconstruct_clips(library_path: str, checkpoint: str, per_label: int = 1, max_clips: int = 4,
                      progress=None, cancel=None) -> dict:
    """(clips, inputs, reconstructions, feature config) for a few clips (worker thread)."""
    import torch

    from perceptlab.audio.features import excerpt
    from perceptlab.library.features import clip_image
    from perceptlab.models.encoder import Encoder

    enc = Encoder.load(checkpoint, device="cpu")
    cfg = enc.feature_config
    frames = enc.patch_frames
    with Library(library_path) as lib:
        chosen: list[Clip] = []
        seen: dict[str | None, int] = {}
        for c in lib.clips():
            if seen.get(c.label, 0) < per_label:
                chosen.append(c)
                seen[c.label] = seen.get(c.label, 0) + 1
            if len(chosen) >= max_clips:
                break
        inputs = np.stack([excerpt(clip_image(lib, c, cfg), frames) for c in chosen])  # (N, F, T)
    with torch.no_grad():
        recon = enc.model(torch.from_numpy(inputs)[:, None].to(enc.device))[:, 0].cpu().numpy()
    return {"clips": chosen, "inputs": inputs, "recons": recon, "config": cfg, "name": enc.name}


class QtReconstructionView(QWidget):
    """Input and reconstruction spectrograms of a few clips, with play buttons.

    What plays shows a playhead on its image; Stop (or playing another) stops it.

    Signals
    -------
    position_changed(float)
        Seconds into what plays, while it plays (about 30 times a second).
    """

    position_changed = Signal(float)

    def __init__(self, runner: QtTaskRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.result: dict | None = None
        self.engine = PlaybackEngine()
        self.title = QLabel("Choose a finished run and press Reconstructions")
        self.title.setWordWrap(True)
        self.now_playing = QLabel("")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop what is playing")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.grid = QGridLayout()
        # The images scroll: however many clips, the dock asks for no more room
        # than its title, so opening it does not squeeze the other panels.
        holder = QWidget()
        holder.setLayout(self.grid)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setWidget(holder)
        transport = QHBoxLayout()
        transport.addWidget(self.now_playing, 1)
        transport.addWidget(self.stop_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addLayout(transport)
        lay.addWidget(self.scroll, 1)
        self._task: QtTask | None = None
        self._closed = False
        self._playheads: dict[tuple[int, str], pg.InfiniteLine] = {}
        self.playing: tuple[int, str] | None = None  # (row, "inputs" or "recons") heard now
        self.timer = QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._on_tick)

    def show_checkpoint(self, library_path: str, checkpoint: str) -> QtTask:
        self.title.setText(f"Reconstructing with {checkpoint}…")
        task = QtTask(reconstruct_clips, library_path, checkpoint)
        task.signals.finished.connect(self._on_result)
        task.signals.failed.connect(lambda msg, _tb: self.title.setText(f"Cannot reconstruct: {msg}"))
        self._task = task
        self.runner.start(task)
        return task

    def _on_result(self, result: dict) -> None:
        self.stop()
        self.result = result
        self._playheads = {}
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        cfg: FeatureConfig = result["config"]
        self.title.setText(f"{result['name']}: input (left) and reconstruction (right); "
                           "both played through Griffin-Lim inversion")
        for row, clip in enumerate(result["clips"]):
            for col, (key, label) in enumerate((("inputs", "input"), ("recons", "reconstruction"))):
                image = result[key][row]
                view = pg.PlotWidget()
                view.setMinimumHeight(120)
                item = pg.ImageItem(unit_to_db(image, cfg), levels=(cfg.db_floor, cfg.db_ceiling))
                item.setColorMap(pg.colormap.get("viridis"))
                item.setRect(QRectF(0, 0, image.shape[1] * cfg.seconds_per_frame(), image.shape[0]))
                view.addItem(item)
                head = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("w", width=1.5))
                head.setVisible(False)
                view.addItem(head, ignoreBounds=True)
                self._playheads[(row, key)] = head
                view.setTitle(f"{clip.name} — {label}")
                box = QWidget()
                bl = QVBoxLayout(box)
                bl.setContentsMargins(0, 0, 0, 0)
                bl.addWidget(view)
                button = QPushButton(f"Play {label}")
                button.clicked.connect(lambda _=False, r=row, k=key, b=button: self.play(r, k, b))
                buttons = QHBoxLayout()
                buttons.addWidget(button)
                bl.addLayout(buttons)
                self.grid.addWidget(box, row, col)

    def play(self, row: int, key: str, button: QPushButton | None = None) -> QtTask | None:
        """Invert one image with Griffin-Lim in the background, then play it."""
        if self.result is None:
            return None
        image = self.result[key][row]
        cfg = self.result["config"]
        if button is not None:
            button.setEnabled(False)
        task = QtTask(griffin_lim_audio, image, cfg, with_progress=False)

        def done(wave):
            if button is not None:
                button.setEnabled(True)
            if self._closed:  # the window closed while the inversion ran: play nothing
                return
            self.last_audio = wave
            if self.engine.sample_rate != cfg.sample_rate:  # an encoder trained at another rate
                self.engine.close()
                self.engine = PlaybackEngine(sample_rate=cfg.sample_rate)
            self.stop()
            self.engine.load("A", wave)
            self.engine.select("A")
            self.engine.seek(0.0)
            try:
                self.engine.play()
            except PlaybackUnavailable as exc:
                self.title.setText(f"Playback off: {exc}")
                return
            self.playing = (row, key)
            clip = self.result["clips"][row]
            what = "input" if key == "inputs" else "reconstruction"
            self.now_playing.setText(f"Playing {clip.name} — {what} ({self.engine.duration():.2f} s)")
            self.stop_button.setEnabled(True)
            self.timer.start()
            self._on_tick()

        task.signals.finished.connect(done)
        task.signals.failed.connect(lambda msg, _tb: self.title.setText(f"Cannot invert: {msg}"))
        self.runner.start(task)
        return task

    def stop(self) -> None:
        """Stop what plays and take its playhead away."""
        self.timer.stop()
        self.engine.stop()
        for head in self._playheads.values():
            head.setVisible(False)
        self.playing = None
        self.stop_button.setEnabled(False)
        self.now_playing.setText("")

    def playhead(self) -> float | None:
        """Seconds of the playhead on the image heard, or None when nothing plays."""
        head = self._playheads.get(self.playing) if self.playing is not None else None
        return float(head.value()) if head is not None and head.isVisible() else None

    def _on_tick(self) -> None:
        if self.playing is None:
            return
        head = self._playheads.get(self.playing)
        pos = self.engine.position
        if head is not None:
            head.setPos(pos)
            head.setVisible(True)
        self.position_changed.emit(pos)
        if not self.engine.is_playing:
            self.stop()

    def close_engine(self) -> None:
        self._closed = True
        self.timer.stop()
        self.engine.close()
