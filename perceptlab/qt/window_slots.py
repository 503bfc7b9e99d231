"""The main window's slots A and B: a clip's spectrogram and audio, and the player's wiring.

:class:`WindowSlotsMixin` holds the methods of
:class:`~perceptlab.qt.main_window.QtMainWindow` that put a clip in slot A
(the library's selection) or B (a neighbour, a matrix cell, Shift+B), decode
its audio and compute its image in workers, keep the spectrogram, the compare
marks and the loop in step with the slot heard, and audition a map point.
"""

from __future__ import annotations

from PySide6.QtCore import Slot

from perceptlab.audio.decode import load as load_audio
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.features import clip_image
from perceptlab.library.store import Clip, Library, LibraryError
from perceptlab.qt.workers import QtTask


def _compute_image(library_path: str, clip: Clip, config: FeatureConfig, progress=None, cancel=None):
    # Worker thread: its own connection, as SQLite connections are per thread.
    with Library(library_path) as lib:
        return clip_image(lib, clip, config)


class WindowSlotsMixin:
    """Slots A and B of :class:`~perceptlab.qt.main_window.QtMainWindow`."""

    # -- selection -> slot A: spectrogram and audio ----------------------------------
    @Slot(object)
    def _on_clip_selected(self, clip: Clip | None) -> None:
        self.set_slot("A", clip)

    def set_slot(self, slot: str, clip: Clip | None) -> None:
        """Put a clip in slot A or B: its audio in the player, its image in the view.

        A clip that failed to import empties the slot (nothing stale is left
        to hear or see) and the status bar says why. A new clip in the slot
        heard drops the loop region, which was drawn on the old clip.
        """
        previous = self.slots.get(slot)
        self.slots[slot] = clip
        self._images[slot] = None
        # The A/B panes hold both slots; this one's old image and waveform go now.
        self.spectrogram.set_slot_image(slot, None, caption=f"{slot}: {clip.name}" if clip is not None else "")
        self.spectrogram.set_slot_waveform(slot, None)
        active = slot == self.player.engine.active_slot
        if active and clip is not previous and (previous is None or clip is None or previous.id != clip.id):
            self.player.clear_loop()
            self.spectrogram.set_loop(None)
        if slot == "A":
            self.neighbours_panel.set_query(clip)
        self.compare_panel.set_pair(self.slots["A"], self.slots["B"])
        self._show_compared()  # the old pair's marks go until the new pair is compared
        if clip is not None and not clip.ok:
            self._unload_slot(slot)
            reason = clip.error or "unknown reason"
            self.status_label.setText(f"{clip.name} failed to import: {reason}")
            self.status_label.setToolTip(clip.path)
            if active:
                self._show_empty_spectrogram(f"{slot}: {clip.name}  ·  failed to import",
                                             f"{clip.name} could not be decoded: {clip.failure}")
            return
        if clip is None or self.library is None:
            if active:
                self._show_empty_spectrogram("")
            return
        self.player.set_clip_duration(slot, clip.duration)
        if active and not self.player.engine.is_playing:
            self.player.seek(0.0)
        self._load_audio(slot, clip)
        try:
            cached = self.library.get_features(clip.content_hash, self.config.hash)
        except LibraryError as exc:
            self.show_library_problem(str(exc))
            return
        if cached is not None:
            self._on_slot_image(slot, clip, cached)
            return
        if active:
            self._show_empty_spectrogram(f"{clip.name}: computing spectrogram…")
        if self._image_task is not None:
            self._image_task.cancel()
        task = QtTask(_compute_image, str(self.library.path), clip, self.config)
        task.signals.finished.connect(lambda img, s=slot, c=clip, t=task: self._on_image_ready(t, s, c, img))
        task.signals.failed.connect(lambda msg, _tb, c=clip: self._show_empty_spectrogram(f"{c.name}: {msg}"))
        self._image_task = task
        self.tasks.start(task)

    def _unload_slot(self, slot: str) -> None:
        old = self._audio_tasks.pop(slot, None)
        if old is not None:
            old.cancel()
        self.player.unload(slot)

    def _show_empty_spectrogram(self, caption: str, hint: str | None = None) -> None:
        """No image: ``caption`` above, and ``hint`` (default: the view's own) in the empty plot."""
        self.spectrogram.set_empty_hint(hint or "")
        self.spectrogram.set_image(None, caption=caption)

    def _on_image_ready(self, task: QtTask, slot: str, clip: Clip, image) -> None:
        if task is self._image_task:
            self._image_task = None
        if self.slots.get(slot) is clip:
            self._on_slot_image(slot, clip, image)

    def _on_slot_image(self, slot: str, clip: Clip, image) -> None:
        self._images[slot] = image
        self.spectrogram.set_slot_image(slot, image, self.config,
                                        caption=f"{slot}: {clip.name}  ·  {clip.label or 'no label'}")
        if slot == self.player.engine.active_slot:
            self._show_slot(slot)

    def _show_slot(self, slot: str) -> None:
        self.spectrogram.set_active_slot(slot)
        clip, image = self.slots.get(slot), self._images.get(slot)
        if clip is not None and not clip.ok:
            self._show_empty_spectrogram(f"{slot}: {clip.name}  ·  failed to import",
                                         f"{clip.name} could not be decoded: {clip.failure}")
            return
        if clip is None or image is None:
            return
        self.spectrogram.set_empty_hint("")  # the ordinary hint, for when the view is emptied later
        self.spectrogram.set_image(image, self.config, caption=f"{slot}: {clip.name}  ·  {clip.label or 'no label'}")
        self.spectrogram.set_loop(self.player.engine.loop)
        self._show_compared()

    @Slot()
    def _show_compared(self) -> None:
        """Mark on the spectrogram what the compare panel compared of the clip shown (if it is A or B)."""
        shown = self.compare_panel.compared_region(self.player.engine.active_slot, self.slots["A"], self.slots["B"])
        if shown is None or not self.spectrogram.has_image():
            self.spectrogram.set_compared(None)
        else:
            self.spectrogram.set_compared(*shown)
        for s in ("A", "B"):  # each pane marks its own clip's compared region
            region = self.compare_panel.compared_region(s, self.slots["A"], self.slots["B"])
            self.spectrogram.set_slot_compared(s, *(region or (None,)))

    def _load_audio(self, slot: str, clip: Clip) -> None:
        old = self._audio_tasks.pop(slot, None)
        if old is not None:
            old.cancel()
        task = QtTask(load_audio, clip.path, self.config.sample_rate, with_progress=False)
        task.signals.finished.connect(lambda wave, s=slot, c=clip, t=task: self._on_audio_ready(t, s, c, wave))
        task.signals.failed.connect(lambda msg, _tb: self.player.message.setText(msg))
        self._audio_tasks[slot] = task
        self.tasks.start(task)

    def _on_audio_ready(self, task: QtTask, slot: str, clip: Clip, wave) -> None:
        if self._audio_tasks.get(slot) is not task or self.slots.get(slot) is not clip:
            return
        del self._audio_tasks[slot]
        self.player.engine.load(slot, wave)
        self.spectrogram.set_slot_waveform(slot, wave, self.config.sample_rate)
        self.player.set_clip_duration(slot, self.player.engine.duration(slot))
        self._after_audio_loaded(slot)

    def _after_audio_loaded(self, slot: str) -> None:
        if slot == "A" and self.player.engine.active_slot == "A":
            self.player.engine.seek(0.0)
            if self.player.autoplay_box.isChecked():
                self.player.play()
        if slot == "B" and self._play_b_when_ready:
            self._play_b_when_ready = False
            self.player.select("B")
            self.player.seek(0.0)
            self.player.play()

    def audio_ready(self, slot: str = "A") -> bool:
        """True once the clip in ``slot`` can be played (its audio is decoded)."""
        return slot not in self._audio_tasks and self.player.engine.has(slot)

    @Slot(str)
    def _on_slot_changed(self, slot: str) -> None:
        self._show_slot(slot)

    @Slot()
    def _on_load_as_b(self) -> None:
        clip = self.library_panel.current_clip()
        if clip is not None:
            self.set_slot("B", clip)
            self.player.message.setText(f"B: {clip.name}")

    @Slot(object)
    def _on_neighbour_clicked(self, clip: Clip) -> None:
        self.set_slot("B", clip)
        self.player.message.setText(f"B: {clip.name} (press 2 or Tab to hear it)")

    @Slot(object)
    def _on_neighbour_activated(self, clip: Clip) -> None:
        self._play_b_when_ready = True
        if self.slots.get("B") is not clip:
            self.set_slot("B", clip)
        elif self.audio_ready("B"):
            self._after_audio_loaded("B")

    @Slot(object, object)
    def _on_pair_clicked(self, a: Clip, b: Clip) -> None:
        self.library_panel.select_clip(a.id)
        self.set_slot("B", b)
        self.compare_dock.raise_()

    def _on_audition(self, clip: Clip) -> None:
        from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable

        if not self.player.available:
            return
        if self._preview is None:
            self._preview = PlaybackEngine()
        task = QtTask(load_audio, clip.path, self.config.sample_rate, with_progress=False)

        def play(wave):
            self._preview.stop()
            self._preview.load("A", wave)
            try:
                self._preview.play()
            except PlaybackUnavailable:
                pass

        task.signals.finished.connect(play)
        self.tasks.start(task)

    @Slot(float)
    def _on_seek_requested(self, seconds: float) -> None:
        self.player.seek(seconds)

    @Slot(object)
    def _on_loop_changed(self, region) -> None:
        if region is None:
            self.player.engine.set_loop(None, None)
        else:
            self.player.engine.set_loop(*region)

    def _set_loop_point(self, which: int) -> None:
        """a / b keys: loop start / end at the playhead."""
        pos = self.player.engine.position
        current = self.player.engine.loop or (0.0, self.player.engine.duration())
        region = (pos, max(current[1], pos + 0.05)) if which == 0 else (min(current[0], pos - 0.05), pos)
        region = (max(region[0], 0.0), region[1])
        self.player.engine.set_loop(*region)
        self.spectrogram.set_loop(self.player.engine.loop)
