"""Decoding audio files into mono float32 at the project rate.

Decoding goes through libsndfile (the ``soundfile`` package), which reads WAV,
AIFF, FLAC, OGG/Vorbis, Opus and MP3 at any bit depth and channel count.
Resampling goes through libsoxr (alias-free, streamed). Nothing here holds
more of a file than one block at a time: :func:`iter_blocks` reads float32
blocks, downmixes them and resamples them as a stream, so memory does not
grow with a file's duration; :func:`load` joins the blocks for callers that
want the whole signal. Only the requested excerpt is decoded.

Every failure is an :class:`AudioError` subclass whose message names the file
and the reason, so a caller (the importer, the CLI, the GUI) can show it as is.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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
        with open(path, "rb") as fh:
            is_ogg = fh.read(4) == b"OggS"
        if is_ogg:
            check_ogg_pages(path)  # names the damaged page's time, when that is the cause
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


# Ogg pages carry a CRC-32 (polynomial 0x04C11DB7, not bit-reflected, no
# initial or final XOR). zlib's CRC-32 is the bit-reflected form of the same
# polynomial, so the Ogg checksum is zlib's over bit-reversed bytes, bit-reversed
# back: C speed with no table of our own.
_REVERSE_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _ogg_crc(data: bytes) -> int:
    import zlib

    raw = zlib.crc32(data.translate(_REVERSE_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def _ogg_granule_rate(head: bytes) -> int:
    """Samples per second that an Ogg stream's granule positions count."""
    at = head.find(b"\x01vorbis")
    if at >= 0 and len(head) >= at + 16:
        return struct.unpack_from("<I", head, at + 12)[0] or 48000
    return 48000  # Opus counts 48 kHz samples whatever the stream's rate


def check_ogg_pages(path: str | os.PathLike) -> None:
    """Walk an Ogg file's pages and verify each page's checksum and sequence.

    libsndfile decodes past a damaged Ogg page without an error: it drops or
    garbles the audio there and may report a shorter length, so a damaged
    file would import as a different sound. This check reads the file once
    (it costs about as much as hashing it).

    Raises
    ------
    TruncatedAudioError
        Naming the time of the last good page when a page is damaged, out of
        sequence, cut short, or when bytes that are not Ogg pages follow.
    """
    path = Path(path)
    data = path.read_bytes()
    pos, last_granule, expected_seq = 0, 0, {}
    rate = _ogg_granule_rate(data[:512])

    def fail(why: str) -> None:
        raise TruncatedAudioError(
            path, f"decoding failed at {last_granule / rate:.3f} s: the file is damaged ({why} at byte {pos})"
        )

    while pos < len(data):
        head = data[pos : pos + 27]
        if len(head) < 27 or head[:4] != b"OggS":
            fail("not an Ogg page" if len(head) >= 27 else "a page cut short")
        n_segments = head[26]
        table = data[pos + 27 : pos + 27 + n_segments]
        size = 27 + n_segments + sum(table)
        page = data[pos : pos + size]
        if len(table) < n_segments or len(page) < size:
            fail("a page cut short")
        stored = struct.unpack_from("<I", page, 22)[0]
        if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != stored:
            fail("a page fails its checksum")
        granule, serial, seq = struct.unpack_from("<qII", page, 6)
        if serial in expected_seq and seq != expected_seq[serial]:
            fail(f"page {expected_seq[serial]} is missing")
        expected_seq[serial] = seq + 1
        if granule >= 0:
            last_granule = granule
        pos += size


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
    info = probe(path)
    seconds = info.duration - offset if duration is None else min(duration, info.duration - offset)
    rate = info.sample_rate if sample_rate is None else sample_rate
    # One preallocated buffer (a list of blocks joined at the end would hold
    # the signal twice); a resampler's rounding may add a sample or two.
    out = np.empty(max(1, int(np.ceil(max(seconds, 0.0) * rate)) + 8), dtype=np.float32)  # (n,)
    n = 0
    for block in iter_blocks(path, sample_rate, offset=offset, duration=duration):
        if n + block.size > out.size:
            out = np.resize(out, n + block.size)
        out[n : n + block.size] = block
        n += block.size
    return out[:n]


def iter_blocks(
    path: str | os.PathLike,
    sample_rate: int | None = PROJECT_SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
    block_frames: int = _BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Decode a file block by block: mono float32 at ``sample_rate``.

    Memory stays bounded by ``block_frames`` whatever the file's length:
    each block is read as float32, downmixed, and pushed through a streaming
    resampler (:class:`StreamResampler`). The concatenated blocks equal
    :func:`load` of the same arguments.

    Raises
    ------
    AudioError
        As :func:`load`; a failure mid-file names the time where decoding
        stopped. Blocks already yielded are valid audio up to that point.
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
    if info.format == "OGG" and start == 0:
        check_ogg_pages(path)
    resampler = None
    if sample_rate is not None and sample_rate != info.sample_rate:
        resampler = StreamResampler(info.sample_rate, sample_rate)

    def at(frames_done: int) -> str:
        return f"{(start + frames_done) / info.sample_rate:.3f} s"

    got = 0
    sf = _sf()
    with _open(path) as handle:
        if start:
            handle.seek(start)
        while got < wanted:
            n = min(block_frames, wanted - got)
            try:
                block = handle.read(n, dtype="float32", always_2d=True)  # (n, C)
            except sf.LibsndfileError as exc:
                raise TruncatedAudioError(path, f"decoding failed at {at(got)} ({exc})") from None
            if block.shape[0] < n:
                # libsndfile returns a short read where a compressed stream is
                # damaged and then carries on after the damage; reading on
                # would splice garbled audio together. A short read before
                # the declared end is an error, wherever it happens.
                if got + block.shape[0] == 0:
                    raise EmptyAudioError(path, "no audio frames could be decoded")
                raise TruncatedAudioError(
                    path,
                    f"decoding failed at {at(got + block.shape[0])}: the file is damaged or truncated "
                    f"(expected {wanted} frames from the header, decoded {got + block.shape[0]})",
                )
            if not np.isfinite(block).all():
                bad = got + int(np.argwhere(~np.isfinite(block))[0, 0])
                raise NonFiniteAudioError(path, f"contains non-finite samples (NaN or infinity) at {at(bad)}")
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]  # (n,)
            got += block.shape[0]
            last = got >= wanted
            if resampler is not None:
                mono = resampler.push(mono, last=last)
            if mono.size:
                yield np.ascontiguousarray(mono, dtype=np.float32)


class StreamResampler:
    """Alias-free streaming resampling with libsoxr's very-high-quality filter.

    Chosen by measurement over torchaudio's default windowed sinc, which
    folds a 12 kHz tone at 44.1 kHz down to 10.05 kHz at -13 dB when going
    to 22.05 kHz. libsoxr's VHQ filter (linear phase, passband to 91% of the
    new Nyquist, stopband from the new Nyquist, about 175 dB rejection):

    * any tone above 11.025 kHz leaves a 22.05 kHz log-mel image at its
      floor (tests/test_measurement.py checks 11.5-18 kHz from 44.1, 48 and
      96 kHz files);
    * a tone at 10 kHz keeps its level within 0.003 dB;
    * the filter delay is compensated, so output sample k lines up with
      input time k / new_rate, and a stream pushed in blocks gives the same
      samples as one call (to float32 rounding).

    Throughput is several thousand times real time for 44.1 kHz mono on one
    core, so it costs an import nothing next to decoding.
    """

    def __init__(self, orig_rate: int, new_rate: int):
        import soxr

        self.orig_rate, self.new_rate = int(orig_rate), int(new_rate)
        self._stream = soxr.ResampleStream(self.orig_rate, self.new_rate, 1, dtype="float32", quality="VHQ")

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next (n,) block; ``last=True`` flushes the filter's tail."""
        return self._stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Alias-free resampling of a whole (n,) signal (see :class:`StreamResampler`)."""
    if orig_rate == new_rate:
        return wave
    import soxr

    return soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), int(orig_rate), int(new_rate), quality="VHQ")
