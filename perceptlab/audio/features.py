"""Log-mel spectrograms on a fixed, absolute [0, 1] scale.

The perceptual metrics treat a spectrogram as a grey-level image, and their
constants are absolute: SSIM's C1 and C2 assume a data range of 1, NLPD's
divisive-normalisation sigmas were fitted to images in [0, 1]. So the mapping
from decibels to [0, 1] is FIXED and global, never a per-clip min-max:

* the STFT magnitude is scaled so that a full-scale sine (amplitude 1) gives
  magnitude 1 in its peak bin, and mel filters are unit-height triangles, so a
  full-scale sine reads close to 0 dB in its mel band;
* ``value = (dB - db_floor) / (db_ceiling - db_floor)``, clipped to [0, 1].
  With the defaults (-80 dB floor, +3 dB ceiling) a full-scale sine peaks near
  0.97-0.99 and anything 80 dB below it is 0.

A copy of a clip 6 dB quieter therefore gives a uniformly darker image
(6/83 = 0.072 lower wherever it is above the floor), not a rescaled copy.

Image orientation, used by every metric: rows are mel bins with the lowest
frequency first, columns are time frames. Tensors are (n_mels, T) for one clip
and (B, 1, n_mels, T) for a batch.

Comparing whole clips (the comparison rule)
-------------------------------------------
By default the metrics compare WHOLE clips: no frame of either clip is left
out. Two images are brought to one width by padding them at the end with
the floor (0, i.e. silence: a listener hears the shorter clip end), to
:func:`compared_width` of the longer one. That width is the longer clip's
length rounded up on a fixed ladder (at least 32 frames, then steps of
2^(1/8), about 9%, each a multiple of 8 frames), so

* the rule depends on the pair alone: a distance is the same in
  ``distance``, a matrix, or a neighbour list;
* it is symmetric, and 0 for identical clips;
* a change anywhere in either clip changes the distance;
* clips whose lengths fall on one rung share a width, so a library's matrix
  is a few batched blocks rather than N^2 separate shapes.

The padding on both images compares silence with silence, which costs
nothing (a distance of 0 there) and dilutes a distance by at most the
rung's 9% for clips of equal length.

The centre excerpt (``excerpt="centre"``, :func:`excerpt`) is kept as the
fast option: a clip at least ``n`` frames long gives its CENTRE ``n`` frames;
a shorter clip is LOOPED up to ``n`` frames. Long recordings can instead be
cut into windows of ``n`` frames every ``hop`` frames by :func:`windows` (the
training data and the genre-classification protocol do this).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from functools import cached_property, lru_cache

import numpy as np

# Bump when the computation changes in a way the config fields don't show, so
# cached features keyed by the config hash are recomputed.
_ALGORITHM_VERSION = 2

#: The resamplers a feature config may name.
RESAMPLERS = ("soxr-vhq",)

#: Default length, in frames, of the excerpt the metrics compare (about 2.97 s
#: at 22,050 Hz with a 512-sample hop; also the autoencoder's patch width).
DEFAULT_EXCERPT_FRAMES = 128


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that defines a log-mel image.

    Attributes
    ----------
    sample_rate : int
        Audio is resampled to this rate before analysis.
    n_fft : int
        FFT size (Hann window of the same length).
    hop_length : int
        Samples between frames.
    n_mels : int
        Mel bands (image rows).
    f_min, f_max : float
        Frequency range of the mel filterbank in Hz.
    db_floor : float
        Level mapped to 0; anything quieter is clipped to 0.
    db_ceiling : float
        Level mapped to 1 (a little above a full-scale sine's 0 dB).
    resampler : str
        How audio at another rate reaches ``sample_rate``: ``"soxr-vhq"``,
        libsoxr's alias-free very-high-quality filter (see
        :class:`perceptlab.audio.decode.StreamResampler`).
    loudness_target : float or None
        Loudness alignment: each clip is brought to this integrated loudness
        (LUFS, ITU-R BS.1770-4; see :mod:`perceptlab.audio.loudness`) before
        its log-mel image, so a quieter copy of a sound gives the same image.
        None (spelled ``off`` in configs and on the command line) keeps the
        level as recorded. Digital silence is never boosted.
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 11025.0
    db_floor: float = -80.0
    db_ceiling: float = 3.0
    resampler: str = "soxr-vhq"
    loudness_target: float | None = -23.0

    def __post_init__(self):
        problems = []
        if self.resampler not in RESAMPLERS:
            problems.append(f"resampler must be one of {RESAMPLERS}, got {self.resampler!r}")
        if self.loudness_target is not None and not -70.0 < float(self.loudness_target) <= 0.0:
            problems.append(f"loudness_target must be in (-70, 0] LUFS or off, got {self.loudness_target}")
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive, got {self.sample_rate}")
        if self.n_fft < 16:
            problems.append(f"n_fft must be at least 16, got {self.n_fft}")
        if not 0 < self.hop_length <= self.n_fft:
            problems.append(f"hop_length must be in (0, n_fft], got {self.hop_length}")
        if self.n_mels < 8:
            problems.append(f"n_mels must be at least 8, got {self.n_mels}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            problems.append(
                f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min}, f_max={self.f_max}"
            )
        if not self.db_floor < self.db_ceiling:
            problems.append(f"db_floor must be below db_ceiling, got {self.db_floor} >= {self.db_ceiling}")
        if problems:
            raise ValueError("invalid FeatureConfig: " + "; ".join(problems))

    @cached_property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of the config (cache key)."""
        payload = json.dumps({"v": _ALGORITHM_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        # Floats are written as floats so 0 and 0.0 hash alike.
        out = asdict(self)
        for f in fields(self):
            if f.type in ("float", float) or (f.type == "float | None" and out[f.name] is not None):
                out[f.name] = float(out[f.name])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        """Rebuild a config; one written before loudness alignment existed
        (no ``loudness_target`` key, e.g. in an older checkpoint) keeps the
        level as recorded, as it was computed then."""
        from perceptlab.jsonable import dataclass_from_dict

        data = dict(data)
        if data.get("loudness_target") in ("off", "none"):
            data["loudness_target"] = None
        return dataclass_from_dict(cls, data, "feature config", defaults={"loudness_target": None})

    def frames_for(self, n_samples: int) -> int:
        """Number of frames a signal of ``n_samples`` gives (centred frames)."""
        return 1 + n_samples // self.hop_length

    def seconds_per_frame(self) -> float:
        return self.hop_length / self.sample_rate


@lru_cache(maxsize=8)
def _analysis_kernels(cfg: FeatureConfig):
    import torch
    import torchaudio.functional as AF

    window = torch.hann_window(cfg.n_fft, periodic=True)  # (n_fft,)
    # A sine of amplitude A has |X| = A * sum(w) / 2 in its peak bin.
    scale = 2.0 / float(window.sum())
    fbank = AF.melscale_fbanks(
        cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate,
        norm=None, mel_scale="slaney",
    )  # (n_freqs, n_mels), unit-height triangles
    return window, scale, fbank.T.contiguous()  # (n_mels, n_freqs)


def mel_frequencies(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band (row of the image), low first.

    Pure numpy (the GUI's axes need it without importing torch); the Slaney
    formula matches the filterbank's ``mel_scale="slaney"``.
    """

    def hz_to_mel(f):
        # Slaney: linear below 1 kHz, logarithmic above.
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    mels = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2)
    return mel_to_hz(mels[1:-1])


def db_to_unit(db, cfg: FeatureConfig):
    """Map decibels to the fixed [0, 1] scale (works on numpy or torch)."""
    v = (db - cfg.db_floor) / (cfg.db_ceiling - cfg.db_floor)
    return v.clip(0.0, 1.0) if isinstance(v, np.ndarray) else v.clamp(0.0, 1.0)


def unit_to_db(v, cfg: FeatureConfig):
    """Inverse of :func:`db_to_unit` (levels below the floor read as the floor)."""
    return v * (cfg.db_ceiling - cfg.db_floor) + cfg.db_floor


def log_mel(wave: np.ndarray, cfg: FeatureConfig = FeatureConfig(), chunk_frames: int = 4096) -> np.ndarray:
    """Log-mel image of a mono signal at ``cfg.sample_rate``.

    Parameters
    ----------
    wave : numpy.ndarray
        (n,) float32 samples at ``cfg.sample_rate``.
    cfg : FeatureConfig
    chunk_frames : int
        Frames computed per STFT call; bounds memory on hour-long input
        without changing the result.

    Returns
    -------
    numpy.ndarray
        (n_mels, T) float32 in [0, 1], T = 1 + n // hop_length.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"log_mel expects a mono (n,) signal, got shape {wave.shape}")
    return log_mel_blocks([wave], cfg, chunk_frames=chunk_frames)


def log_mel_blocks(blocks, cfg: FeatureConfig = FeatureConfig(), chunk_frames: int = 4096,
                   meter=None) -> np.ndarray:
    """Log-mel image of a signal that arrives in blocks (see :func:`log_mel`).

    The signal is never held whole: frames are computed as soon as their
    samples have arrived, and only the last ``n_fft`` samples are kept, so
    memory is the output image plus a few blocks however long the input.
    The result equals :func:`log_mel` of the joined blocks (up to float32
    rounding of the STFT's summation order).

    Parameters
    ----------
    blocks : iterable of numpy.ndarray
        (n_i,) float32 blocks at ``cfg.sample_rate``, e.g.
        :func:`perceptlab.audio.decode.iter_blocks`.
    meter : perceptlab.audio.loudness.LoudnessMeter, optional
        Measures the signal's loudness on the way (read ``meter.lufs()``
        afterwards); with loudness alignment on, the same measure aligns the
        image, so the signal is metered once.
    """
    stream = _LogMelStream(cfg, chunk_frames, meter)
    for block in blocks:
        stream.push(np.asarray(block, dtype=np.float32).ravel())
    return stream.finish()


class _LogMelStream:
    """Centred STFT frames (as ``torch.stft(center=True)`` with reflect padding)
    computed incrementally. Frame t covers padded[t*hop : t*hop + n_fft] where
    padded is the signal with n_fft/2 reflected samples added at each end."""

    def __init__(self, cfg: FeatureConfig, chunk_frames: int, meter=None):
        self.cfg, self.chunk_frames = cfg, chunk_frames
        self.half = cfg.n_fft // 2
        self.head: list[np.ndarray] = []  # samples before the start padding is known
        self.head_len = 0
        self.buf = None  # padded samples not yet consumed by a frame
        self.n = 0  # signal samples seen
        self.frames: list[np.ndarray] = []  # (F, t) pieces of the image, in dB
        self.meter = meter
        if meter is None and cfg.loudness_target is not None:
            from perceptlab.audio.loudness import LoudnessMeter

            self.meter = LoudnessMeter(cfg.sample_rate)
        #: Integrated loudness of the input (LUFS), once finished with alignment on.
        self.lufs: float | None = None

    def push(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        self.n += x.size
        if self.meter is not None:
            self.meter.push(x)
        if self.buf is None:
            # The start padding reflects samples 1..half: wait for them.
            self.head.append(x)
            self.head_len += x.size
            if self.head_len <= self.half:
                return
            x = np.concatenate(self.head)
            self.head = []
            self.buf = np.concatenate([x[1 : self.half + 1][::-1], x])
        else:
            self.buf = np.concatenate([self.buf, x])
        self._emit(final=False)

    def finish(self) -> np.ndarray:
        cfg = self.cfg
        if self.n == 0:
            raise ValueError("log_mel got an empty signal")
        if self.buf is None:
            # Too short to reflect: zero padding, as torch.stft falls back to.
            x = np.concatenate(self.head)
            self.buf = np.concatenate([np.zeros(self.half, np.float32), x, np.zeros(self.half, np.float32)])
        else:
            # The end padding reflects the last samples but one.
            tail = self.buf[-(self.half + 1) : -1][::-1]
            self.buf = np.concatenate([self.buf, tail])
        self._emit(final=True)
        db = self.frames[0] if len(self.frames) == 1 else np.concatenate(self.frames, axis=1)  # (F, T)
        self.frames = []
        expected = cfg.frames_for(self.n)
        assert db.shape[1] == expected, (db.shape, expected)
        if self.meter is not None and cfg.loudness_target is not None:
            from perceptlab.audio.loudness import alignment_gain_db

            # A gain on the signal is a shift of every power in dB: aligning
            # the image is exact, with no second pass over the audio.
            self.lufs = self.meter.lufs()
            db += alignment_gain_db(self.lufs, cfg.loudness_target)
        return np.ascontiguousarray(db_to_unit(db, cfg))

    def _emit(self, final: bool) -> None:
        import torch

        cfg = self.cfg
        window, scale, fbank = _analysis_kernels(cfg)
        # Compute only in whole chunks until the end, so that the frames each
        # STFT call sees do not depend on how the input was blocked.
        while True:
            available = 0 if self.buf.size < cfg.n_fft else 1 + (self.buf.size - cfg.n_fft) // cfg.hop_length
            if available == 0 or (not final and available < self.chunk_frames):
                return
            t = min(available, self.chunk_frames)
            seg = torch.from_numpy(np.ascontiguousarray(self.buf[: (t - 1) * cfg.hop_length + cfg.n_fft]))
            with torch.no_grad():
                spec = torch.stft(
                    seg, cfg.n_fft, cfg.hop_length, window=window, center=False, return_complex=True
                )  # (n_freqs, t)
                power = (spec.real.square() + spec.imag.square()) * (scale * scale)
                mel = fbank @ power  # (F, t)
                db = 10.0 * torch.log10(mel.clamp_min(1e-12))
                self.frames.append(db.numpy())
            self.buf = self.buf[t * cfg.hop_length :]


#: The shortest width two clips are compared at, in frames (0.74 s).
MIN_COMPARED_FRAMES = 32


@lru_cache(maxsize=1)
def _width_ladder() -> tuple[int, ...]:
    # MIN * 2^(k/8), each rounded up to a multiple of 8 frames, up to ~30 h.
    rungs = {-(-int(np.ceil(MIN_COMPARED_FRAMES * 2 ** (k / 8) - 1e-9)) // 8) * 8 for k in range(0, 200)}
    return tuple(sorted(rungs))


def compared_width(n_frames: int) -> int:
    """Width, in frames, at which a clip of ``n_frames`` (the longer of a pair) is compared.

    The smallest rung of the ladder at or above ``n_frames``; see the
    module notes (the comparison rule).
    """
    import bisect

    if n_frames <= 0:
        raise ValueError(f"a clip has at least one frame, got {n_frames}")
    ladder = _width_ladder()
    i = bisect.bisect_left(ladder, n_frames)
    if i == len(ladder):
        raise ValueError(f"a clip of {n_frames} frames is longer than perceptlab compares")
    return ladder[i]


def pad_frames(spec: np.ndarray, width: int) -> np.ndarray:
    """A (F, T) image padded at the end with the floor (silence) to ``width`` frames."""
    f, t = spec.shape
    if t > width:
        raise ValueError(f"cannot pad a {t}-frame image to {width} frames")
    if t == width:
        return np.ascontiguousarray(spec)
    out = np.zeros((f, width), dtype=np.float32)
    out[:, :t] = spec
    return out


def excerpt(spec: np.ndarray, n_frames: int = DEFAULT_EXCERPT_FRAMES) -> np.ndarray:
    """Reduce a (F, T) image to exactly ``n_frames`` columns by the excerpt rule.

    T >= n: the centre n frames. T < n: the clip looped (tiled) to n frames.
    """
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    f, t = spec.shape
    if t == 0:
        raise ValueError("cannot take an excerpt of an image with no frames")
    if t >= n_frames:
        start = (t - n_frames) // 2
        return np.ascontiguousarray(spec[:, start : start + n_frames])
    reps = -(-n_frames // t)
    return np.ascontiguousarray(np.tile(spec, (1, reps))[:, :n_frames])


def windows(spec: np.ndarray, n_frames: int, hop: int | None = None) -> np.ndarray:
    """Cut a (F, T) image into windows of ``n_frames`` every ``hop`` frames.

    The last window is aligned to the end of the clip, so the tail is never
    dropped; a clip shorter than one window gives one looped window
    (see :func:`excerpt`).

    Returns
    -------
    numpy.ndarray
        (W, F, n_frames)
    """
    hop = n_frames if hop is None else hop
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    f, t = spec.shape
    if t <= n_frames:
        return excerpt(spec, n_frames)[None]
    starts = list(range(0, t - n_frames + 1, hop))
    if starts[-1] != t - n_frames:
        starts.append(t - n_frames)
    return np.stack([spec[:, s : s + n_frames] for s in starts])
