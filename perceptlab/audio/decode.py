"""Decoding audio files into mono float32 at the project rate.

Decoding goes through libsndfile (the ``soundfile`` package), which reads WAV,
AIFF, FLAC, OGG/Vorbis, Opus and MP3 at any bit depth and channel count.
Resampling goes through torchaudio. Nothing here ever holds a whole file as
float64: blocks are read as float32, downmixed straight away into one
preallocated mono buffer, and only the requested excerpt is decoded.

Every failure is an :class:`AudioError` subclass whose message names the file
and the reason, so a caller (the importer, the CLI, the GUI) can show it as is.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The rate every clip is resampled to unless a caller asks for another.
PROJECT_SAMPLE_RATE = 22050

#: File extensions the importer treats as audio. Anything else is ignored by a
#: folder scan (a stray README in a dataset folder is not an error).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}
)

# Frames decoded per block; bounds the float32 scratch memory for long files.
_BLOCK_FRAMES = 1 << 18


class AudioError(Exception):
    """A file could not be used as audio.

    Parameters
    ----------
    path : str or Path
        The offending file.
    reason : str
        Why, in words a user understands.
    """

    kind = "unreadable"

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EmptyAudioError(AudioError):
    """The file is empty or holds no audio frames."""

    kind = "empty"


class NotAudioError(AudioError):
    """The file is not in any audio format we can decode."""

    kind = "not-audio"


class TruncatedAudioError(AudioError):
    """The file ends before the length its header declares."""

    kind = "truncated"


class NonFiniteAudioError(AudioError):
    """The file decodes to NaN or infinite samples."""

    kind = "non-finite"


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about it."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _sf():
    # Imported lazily so that `import perceptlab.audio` stays cheap and a
    # missing libsndfile surfaces as a clear error at first use.
    import soundfile

    return soundfile


def _open(path: Path):
    sf = _sf()
    if not path.exists():
        raise AudioError(path, "file does not exist")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    size = path.stat().st_size
    if size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes)")
    try:
        handle = sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        text = str(exc.error_string if hasattr(exc, "error_string") else exc)
        lowered = text.lower()
        if "malformed" in lowered or "truncat" in lowered or "end of file" in lowered:
            raise TruncatedAudioError(path, f"file is damaged or truncated ({text.strip()})") from None
        if "format" in lowered or "recognised" in lowered or "recognized" in lowered:
            raise NotAudioError(path, f"not a recognised audio format ({text.strip()})") from None
        raise AudioError(path, f"cannot be decoded ({text.strip()})") from None
    except RuntimeError as exc:  # older soundfile raised RuntimeError
        raise NotAudioError(path, f"not a recognised audio format ({exc})") from None
    return handle


def _declared_wav_frames(path: Path, block_align: int) -> int | None:
    """Frames a RIFF/WAVE header declares in its data chunk, or None.

    libsndfile quietly shortens a WAV whose data chunk runs past the end of the
    file, so truncation has to be detected from the header itself.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return None
            if head[:4] == b"RF64":
                return None  # sizes live in the ds64 chunk; trust libsndfile
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    if csize in (0, 0xFFFFFFFF):  # streaming writers leave it open
                        return None
                    return csize // block_align if block_align else None
                fh.seek(csize + (csize & 1), os.SEEK_CUR)
    except OSError:
        return None


_WAV_BYTES_PER_SAMPLE = {
    "PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
    "ULAW": 1, "ALAW": 1,
}


def probe(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header without decoding its samples.

    Raises
    ------
    AudioError
        If the file is missing, empty, not audio, or declares no frames.
    """
    path = Path(path)
    with _open(path) as handle:
        info = AudioInfo(
            path=str(path),
            sample_rate=int(handle.samplerate),
            channels=int(handle.channels),
            frames=int(handle.frames),
            format=str(handle.format),
            subtype=str(handle.subtype),
        )
    if info.frames <= 0:
        if info.format == "OGG" and path.stat().st_size > 4096:
            # An Ogg stream's length comes from its last page; a cut file has none.
            raise TruncatedAudioError(path, "file is truncated: the Ogg stream has no final page")
        raise EmptyAudioError(path, "holds no audio frames")
    if info.sample_rate <= 0:
        raise AudioError(path, f"declares an invalid sample rate ({info.sample_rate})")
    if info.format == "WAV" and info.subtype in _WAV_BYTES_PER_SAMPLE:
        declared = _declared_wav_frames(path, _WAV_BYTES_PER_SAMPLE[info.subtype] * info.channels)
        if declared is not None and declared > info.frames:
            raise TruncatedAudioError(
                path,
                f"file is truncated: header declares {declared} frames, "
                f"only {info.frames} are present",
            )
    return info


def load(
    path: str | os.PathLike,
    sample_rate: int | None = PROJECT_SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode a file (or an excerpt of it) to mono float32.

    Parameters
    ----------
    path : str or Path
        Any format libsndfile reads.
    sample_rate : int or None
        Resample to this rate; None keeps the file's own rate.
    offset : float
        Start of the excerpt, in seconds from the start of the file.
    duration : float or None
        Length of the excerpt in seconds; None reads to the end. Only the
        excerpt is decoded (the decoder seeks to ``offset``).

    Returns
    -------
    numpy.ndarray
        Shape (n,), float32, the channels averaged.

    Raises
    ------
    AudioError
        With a message naming the file and the reason: empty, not audio,
        truncated, non-finite samples, or an excerpt outside the file.
    """
    path = Path(path)
    info = probe(path)
    if offset < 0:
        raise ValueError(f"offset must be >= 0 seconds, got {offset}")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    start = int(round(offset * info.sample_rate))
    if start >= info.frames:
        raise AudioError(
            path, f"excerpt starts at {offset:.3f} s, after the end of the file ({info.duration:.3f} s)"
        )
    stop = info.frames if duration is None else min(info.frames, start + int(round(duration * info.sample_rate)))
    wanted = stop - start

    mono = np.empty(wanted, dtype=np.float32)  # (n,)
    got = 0
    sf = _sf()
    with _open(path) as handle:
        try:
            if start:
                handle.seek(start)
            while got < wanted:
                n = min(_BLOCK_FRAMES, wanted - got)
                block = handle.read(n, dtype="float32", always_2d=True)  # (n, C)
                if block.shape[0] == 0:
                    break
                if not np.isfinite(block).all():
                    bad = got + int(np.argwhere(~np.isfinite(block))[0, 0])
                    raise NonFiniteAudioError(
                        path, f"contains non-finite samples (NaN or infinity) at {(start + bad) / info.sample_rate:.3f} s"
                    )
                mono[got : got + block.shape[0]] = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                got += block.shape[0]
        except sf.LibsndfileError as exc:
            raise TruncatedAudioError(path, f"decoding failed after {got} frames ({exc})") from None
    if got == 0:
        raise EmptyAudioError(path, "no audio frames could be decoded")
    if got < wanted:
        # Compressed formats estimate their length from the header; a file that
        # stops early is damaged, and silently using half of it would mislead.
        raise TruncatedAudioError(
            path, f"file is truncated: expected {wanted} frames from the header, decoded {got}"
        )
    if sample_rate is not None and sample_rate != info.sample_rate:
        mono = resample(mono, info.sample_rate, sample_rate)
    return mono


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (windowed sinc), float32 in and out."""
    if orig_rate == new_rate:
        return wave
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), orig_rate, new_rate)
    return out.numpy()
