"""The playback engine: sounddevice output with A/B slots, loop and level.

Real-time rules (the audio callback runs on PortAudio's thread):

* the callback only copies frames from preallocated float32 buffers into the
  output, scaled in place; no Qt, no logging, no locks held for long, no new
  arrays (numpy ``out=`` arguments throughout);
* the GUI never waits on the callback: it polls :attr:`PlaybackEngine.position`
  and :attr:`PlaybackEngine.level` with a timer;
* streams are started and stopped from the caller's (GUI) thread.

A/B comparison: clips are loaded into named slots ("A" and "B" for the main
player; a listening test uses "X", "A", "B" or "reference", "1" .. "12");
:meth:`select` switches the slot the callback reads from at the next block
and keeps the playback position, so a listener hears the same moment of the
other clip. With loudness matching on, each slot gets a gain that brings its
integrated loudness (ITU-R BS.1770-4 at the engine's rate, the measure the
features' loudness alignment uses: :func:`perceptlab.audio.loudness.integrated_loudness`)
to the quietest slot's (never a boost, so nothing clips). A slot's loudness
is measured once, when it is loaded, on the calling (GUI) thread.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from perceptlab.audio.backend import backend_status

SLOTS = ("A", "B")


class PlaybackUnavailable(RuntimeError):
    """No audio output can be used; the message says why."""


def audio_output_status() -> tuple[bool, str]:
    """(True, device name) if an output device is usable, else (False, why not).

    PortAudio is first started in a child process (:mod:`perceptlab.audio.backend`,
    asked once per process and waited for here): a broken ALSA configuration
    makes it abort the process it runs in, so sounddevice is imported in this
    one only after the child came through.
    """
    status = backend_status()
    if not status.available:
        return False, status.reason
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        return False, f"PortAudio is not installed ({exc}); on Debian/Ubuntu: apt-get install libportaudio2"
    except ImportError as exc:
        return False, f"the sounddevice package is missing ({exc})"
    except Exception as exc:  # PortAudioError from Pa_Initialize
        return False, f"PortAudio could not initialise ({exc})"
    try:
        dev = sd.query_devices(kind="output")
    except Exception as exc:  # no default output device
        return False, f"no audio output device ({exc})"
    if not dev or dev.get("max_output_channels", 0) < 1:
        return False, "no audio output device with an output channel"
    return True, str(dev.get("name", "default"))


def require_audio_output() -> str:
    """The output device's name; raises :class:`PlaybackUnavailable` (saying why) if there is none.

    For a command that is about to play: it reports the reason instead of
    PortAudio aborting or a traceback.
    """
    ok, why = audio_output_status()
    if not ok:
        raise PlaybackUnavailable(why)
    return why


def loudness_lufs(wave: np.ndarray, rate: int) -> float:
    """Integrated loudness (BS.1770-4) of a mono signal in LUFS; -inf for silence or an empty signal."""
    from perceptlab.audio.loudness import integrated_loudness

    if wave.size == 0:
        return float("-inf")
    return float(integrated_loudness(wave, rate))


class PlaybackEngine:
    """Plays mono float32 buffers through the default output device.

    Parameters
    ----------
    sample_rate : int
        Rate of every buffer loaded (the project rate).
    blocksize : int
        Frames per callback; small for responsive switching.
    """

    def __init__(self, sample_rate: int = 22050, blocksize: int = 512, device=None):
        self.sample_rate = sample_rate
        self.blocksize = blocksize
        self.device = device
        self._buffers: dict[str, np.ndarray] = {s: np.zeros(0, np.float32) for s in SLOTS}
        self._gains: dict[str, float] = {s: 1.0 for s in SLOTS}
        self._loudness: dict[str, float] = {}  # LUFS per slot, measured on demand, dropped on load
        self._active = "A"
        self._pos = 0  # frames into the active buffer
        self._loop: tuple[int, int] | None = None
        self.loop_enabled = False
        self.volume = 1.0
        self.loudness_match = False
        self._level = 0.0
        self._playing = False
        self._stream = None
        self._lock = threading.Lock()  # guards buffer swaps, held for O(1) work
        self.play_requested_at: float | None = None
        self.first_buffer_at: float | None = None

    # -- state ------------------------------------------------------------
    @property
    def position(self) -> float:
        """Playback position of the active slot, in seconds."""
        return self._pos / self.sample_rate

    @property
    def level(self) -> float:
        """Peak of the last block sent to the device, 0..1 (after volume)."""
        return self._level

    @property
    def is_playing(self) -> bool:
        return self._playing and self._stream is not None and self._stream.active

    @property
    def active_slot(self) -> str:
        return self._active

    def duration(self, slot: str | None = None) -> float:
        return self._buffers[slot or self._active].size / self.sample_rate

    def has(self, slot: str) -> bool:
        return slot in self._buffers and self._buffers[slot].size > 0

    @property
    def slots(self) -> list[str]:
        """Names of the slots holding audio."""
        return [s for s, b in self._buffers.items() if b.size]

    def clear(self) -> None:
        """Empty every slot (a new listening trial)."""
        self.stop()
        with self._lock:
            self._buffers = {s: np.zeros(0, np.float32) for s in SLOTS}
            self._active = "A"
            self._pos = 0
        self._loudness.clear()
        self._update_gains()

    # -- loading ------------------------------------------------------------
    def load(self, slot: str, wave: np.ndarray) -> None:
        """Put a mono signal in a named slot (copied once, here, not in the callback)."""
        if not isinstance(slot, str) or not slot:
            raise ValueError(f"a slot is named by a non-empty string, got {slot!r}")
        buf = np.ascontiguousarray(wave, dtype=np.float32).ravel().copy()
        with self._lock:
            self._buffers[slot] = buf
            if slot == self._active:
                self._pos = min(self._pos, buf.size)
        self._loudness.pop(slot, None)
        self._update_gains()

    def set_loudness_match(self, on: bool) -> None:
        self.loudness_match = bool(on)
        self._update_gains()

    def loudness(self, slot: str) -> float:
        """Integrated loudness of a slot's audio in LUFS (BS.1770-4; -inf for silence), kept until it is reloaded."""
        if slot not in self._loudness:
            self._loudness[slot] = loudness_lufs(self._buffers.get(slot, np.zeros(0, np.float32)),
                                                 self.sample_rate)
        return self._loudness[slot]

    def _update_gains(self) -> None:
        gains = {s: 1.0 for s in self._buffers}
        loaded = self.slots
        if self.loudness_match and len(loaded) >= 2:
            levels = {s: self.loudness(s) for s in loaded}
            finite = [v for v in levels.values() if np.isfinite(v)]
            if finite:
                target = min(finite)  # attenuate the louder ones; never boost
                gains.update({s: float(10 ** ((target - v) / 20)) for s, v in levels.items() if np.isfinite(v)})
        self._gains = gains

    def gain(self, slot: str) -> float:
        return self._gains.get(slot, 1.0)

    # -- transport ------------------------------------------------------------
    def select(self, slot: str) -> None:
        """Switch slots, keeping the position (clamped to the other clip's length)."""
        if slot not in self._buffers:
            raise ValueError(f"no slot named {slot!r} (slots: {', '.join(self._buffers)})")
        with self._lock:
            self._active = slot
            self._pos = min(self._pos, self._buffers[slot].size)

    def seek(self, seconds: float) -> None:
        with self._lock:
            n = self._buffers[self._active].size
            self._pos = int(min(max(seconds, 0.0) * self.sample_rate, n))

    def set_loop(self, start: float | None, end: float | None) -> None:
        """Loop region in seconds (None clears it); used when :attr:`loop_enabled`."""
        if start is None or end is None:
            self._loop = None
            return
        a, b = sorted((start, end))
        a_i, b_i = int(a * self.sample_rate), int(b * self.sample_rate)
        self._loop = (a_i, b_i) if b_i - a_i >= self.blocksize else None

    @property
    def loop(self) -> tuple[float, float] | None:
        if self._loop is None:
            return None
        return self._loop[0] / self.sample_rate, self._loop[1] / self.sample_rate

    def play(self) -> None:
        """Start (or resume) playback from the current position.

        Raises
        ------
        PlaybackUnavailable
            If no output device can be opened (the message says why).
        """
        if not self.has(self._active):
            return
        if self._pos >= self._buffers[self._active].size:
            self._pos = self._loop[0] if (self.loop_enabled and self._loop) else 0
        self.play_requested_at = time.perf_counter()
        self.first_buffer_at = None
        if self._stream is None:
            self._open_stream()
        self._playing = True
        if not self._stream.active:
            if self._stream.stopped is False:  # finished by CallbackStop: restart cleanly
                self._stream.stop()
            self._stream.start()

    def pause(self) -> None:
        self._playing = False
        if self._stream is not None and self._stream.active:
            self._stream.stop()

    def toggle(self) -> None:
        if self.is_playing:
            self.pause()
        else:
            self.play()

    def stop(self) -> None:
        """Stop and rewind to the start (or the loop start)."""
        self.pause()
        with self._lock:
            self._pos = self._loop[0] if (self.loop_enabled and self._loop) else 0
        self._level = 0.0

    def close(self) -> None:
        self.pause()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _open_stream(self) -> None:
        ok, why = audio_output_status()
        if not ok:
            raise PlaybackUnavailable(why)
        import sounddevice as sd

        try:
            self._stream = sd.OutputStream(
                samplerate=self.sample_rate, channels=1, dtype="float32", blocksize=self.blocksize,
                device=self.device, callback=self._callback,
            )
        except Exception as exc:
            raise PlaybackUnavailable(f"cannot open the audio output ({exc})") from None

    # -- the real-time callback ------------------------------------------------------
    def _callback(self, outdata, frames, _time, _status) -> None:
        import sounddevice as sd

        if self.first_buffer_at is None:
            self.first_buffer_at = time.perf_counter()
        out = outdata[:, 0]
        if not self._playing:
            out.fill(0.0)
            self._level = 0.0
            return
        with self._lock:
            buf = self._buffers[self._active]
            gain = self._gains.get(self._active, 1.0) * self.volume
            pos = self._pos
            loop = self._loop if self.loop_enabled else None
            written = 0
            if loop is not None:
                # A region past the end of a shorter clip (after an A/B switch) is clamped.
                loop = (min(loop[0], buf.size), min(loop[1], buf.size))
                if loop[1] - loop[0] <= 0:
                    loop = None
            while written < frames:
                if loop is not None and pos == loop[1]:
                    pos = loop[0]
                end = loop[1] if loop is not None and pos < loop[1] else buf.size
                n = min(frames - written, end - pos)
                if n <= 0:
                    break
                np.multiply(buf[pos : pos + n], gain, out=out[written : written + n])
                written += n
                pos += n
            self._pos = pos
        if written < frames:
            out[written:].fill(0.0)
        if written:
            seg = out[:written]
            self._level = max(float(seg.max()), -float(seg.min()))
        if written < frames:
            self._playing = False
            raise sd.CallbackStop
