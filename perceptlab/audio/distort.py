"""Graded distortions of a reference signal: the stimuli of listening tests.

A distortion is described by a :class:`Recipe` -- a kind, its parameters and
a seed -- that serialises to JSON. :func:`apply` turns (recipe, signal, rate)
into the distorted signal, bit for bit the same every time for the same
recipe (noise and reverb draw from ``numpy.random.default_rng(seed)``; every
other step is a fixed FFT or phase-vocoder computation). The output has the
input's length, except ``time_stretch`` (``round(n / rate)`` samples).

Kinds and their parameters (``kind:param=value`` is the text form, see
:meth:`Recipe.parse`):

``identity``
    The reference itself (rendered through the same mono pipeline, so it can
    serve as a MUSHRA reference and hidden reference).
``white_noise: snr_db``, ``pink_noise: snr_db``
    Gaussian noise (pink: 1/f power above 20 Hz) scaled so that
    ``10 log10(sum x^2 / sum n^2)`` over the whole signal is exactly
    ``snr_db``.
``lowpass: cutoff_hz [, transition_hz]``
    FFT low-pass over the whole (zero-padded) signal: gain 1 up to
    ``cutoff_hz``, a raised-cosine roll-off to 0 at ``cutoff_hz +
    transition_hz`` (default 5 % of the cutoff), 0 above. The BS.1534-3
    anchors are ``lowpass:cutoff_hz=3500`` and ``lowpass:cutoff_hz=7000``.
``mp3: bitrate_kbps``
    Constant-bitrate MP3 through libsndfile/LAME and back
    (:func:`perceptlab.audio.mp3_codec.mp3_roundtrip`); the bitrate must
    be one MPEG allows at the rate (MPEG-1 at 32-48 kHz: 32..320 kbps,
    MPEG-2 at 16-24 kHz: 8..160 kbps, MPEG-2.5 below: 8..64 kbps). Rates
    LAME cannot encode are resampled to 48 kHz and back. The codec delay is
    removed, so the output is time-aligned with the input.
``clip: threshold``
    Hard clipping at ``threshold`` times the signal's peak (0 < t <= 1).
``reverb: rt60_s [, wet]``
    Convolution with a synthetic impulse response: Gaussian noise (seeded)
    under an exponential envelope reaching -60 dB at ``rt60_s``; the wet
    signal is scaled to the dry RMS and mixed ``(1 - wet) dry + wet rev``.
``eq_tilt: db_per_octave [, pivot_hz]``
    Spectral tilt: gain ``db_per_octave * log2(f / pivot_hz)`` dB, the
    frequency clamped to [20 Hz, Nyquist].
``gain: db``
    Multiply by ``10^(db / 20)``.
``time_shift: seconds``
    Delay (positive) or advance (negative) with zero fill, length kept.
``echo: delay_s [, level_db]``
    One discrete echo: the signal delayed by ``delay_s`` and attenuated by
    ``level_db`` (default -6 dB) added to itself; length kept (the echo's
    tail past the end is dropped).
``reverse``
    The signal played backwards. Clearly audible for anything with onsets,
    decays or a melody, yet its whole-clip spectral statistics are those of
    the original: a check on statistics-only distances.
``pitch_shift: semitones``
    Phase-vocoder time stretch by ``2^(semitones / 12)``, then band-limited
    FFT resampling back to the input length (the ratio is exact up to one
    sample in the signal's length: well under 0.1 cent for a second of
    audio). torchaudio's ``pitch_shift`` is not used: its resampler builds a
    kernel as large as the reduced rate ratio (tens of seconds and
    gigabytes for a 3-semitone shift at 22,050 Hz).
``time_stretch: rate``
    Phase vocoder; ``rate`` > 1 is faster (shorter), tempo only.

Both use a phase vocoder with identity phase locking (see
:func:`perceptlab.audio.phase_vocoder.phase_vocoder`): the level of a partial is kept (torchaudio's plain
``phase_vocoder`` loses 13 dB on a sine slowed by 1 %).

This module is signal processing only. Rendering a stimulus into a library
(writing the file and recording it in the ``stimuli`` table) is
:func:`perceptlab.library.stimuli.render_stimulus`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .mp3_codec import mp3_roundtrip
from .phase_vocoder import fft_resample, stretch

# Sentinel for a parameter without a default.
_REQUIRED = object()

#: BS.1534-3 anchor cut-offs.
LOW_ANCHOR_HZ = 3500.0
MID_ANCHOR_HZ = 7000.0


# ---------------------------------------------------------------------------
# Parameter validation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    lo: float
    hi: float
    default: Any = _REQUIRED
    integer: bool = False
    lo_open: bool = False
    doc: str = ""

    def check(self, kind: str, value) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating, str)):
            raise ValueError(f"{kind}: {self.name} must be a number, got {value!r}")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"{kind}: {self.name} must be a number, got {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{kind}: {self.name} must be finite, got {value!r}")
        if self.integer:
            if v != int(v):
                raise ValueError(f"{kind}: {self.name} must be a whole number, got {value!r}")
            v = int(v)
        too_low = v <= self.lo if self.lo_open else v < self.lo
        if too_low or v > self.hi:
            left = "(" if self.lo_open else "["
            raise ValueError(f"{kind}: {self.name} must be in {left}{self.lo:g}, {self.hi:g}], got {value!r}")
        return v


@dataclass(frozen=True)
class _Kind:
    name: str
    fn: Callable[[np.ndarray, int, dict, int], np.ndarray]
    params: tuple[_Param, ...]
    description: str
    seeded: bool = False


_KINDS: dict[str, _Kind] = {}


def _kind(name: str, description: str, *params: _Param, seeded: bool = False):
    def deco(fn):
        _KINDS[name] = _Kind(name, fn, params, description, seeded)
        return fn

    return deco


def kinds() -> dict[str, dict]:
    """The distortion kinds: {name: {"description", "seeded", "params": {name: {"min", "max", "default"}}}}."""
    out = {}
    for k in _KINDS.values():
        out[k.name] = {
            "description": k.description,
            "seeded": k.seeded,
            "params": {
                p.name: {"min": p.lo, "max": p.hi, "default": None if p.default is _REQUIRED else p.default,
                         "required": p.default is _REQUIRED, "doc": p.doc}
                for p in k.params
            },
        }
    return out


# ---------------------------------------------------------------------------
# Recipe
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """One distortion: kind, parameters (validated, defaults filled in), seed.

    Parameters
    ----------
    kind : str
        One of :func:`kinds`.
    params : dict
        Parameter values; unknown or missing required names, non-numbers and
        out-of-range values raise ValueError naming the kind and parameter.
    seed : int
        Seed of the random parts (noise, reverb impulse response). Kept for
        every kind so a recipe is always complete provenance.
    """

    kind: str
    params: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        spec = _KINDS.get(self.kind)
        if spec is None:
            raise ValueError(f"unknown distortion {self.kind!r}; known: {', '.join(sorted(_KINDS))}")
        if not isinstance(self.params, dict):
            raise ValueError(f"{self.kind}: params must be a dict, got {type(self.params).__name__}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"{self.kind}: seed must be a non-negative integer, got {self.seed!r}")
        known = {p.name for p in spec.params}
        unknown = set(self.params) - known
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{self.kind}: unknown parameter(s) {', '.join(sorted(unknown))} (allowed: {allowed})")
        clean = {}
        for p in spec.params:
            if p.name in self.params and self.params[p.name] is not None:
                clean[p.name] = p.check(self.kind, self.params[p.name])
            elif p.default is _REQUIRED:
                raise ValueError(f"{self.kind}: parameter {p.name} is required")
            elif p.default is not None:
                clean[p.name] = p.default
        object.__setattr__(self, "params", clean)
        object.__setattr__(self, "seed", int(self.seed))

    # -- text and JSON forms ---------------------------------------------
    def to_json(self) -> dict:
        """``{"kind", "params", "seed"}``; :meth:`from_json` inverts it exactly."""
        return {"kind": self.kind, "params": dict(self.params), "seed": self.seed}

    @classmethod
    def from_json(cls, data: dict | str) -> "Recipe":
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, dict) or "kind" not in data:
            raise ValueError(f"a recipe is a JSON object with a 'kind', got {data!r}")
        return cls(data["kind"], dict(data.get("params") or {}), int(data.get("seed", 0)))

    @property
    def key(self) -> str:
        """Canonical JSON (sorted keys): equal recipes have equal keys."""
        return json.dumps(self.to_json(), sort_keys=True)

    @property
    def label(self) -> str:
        """The text form ``kind:p=v,...`` (``seed=`` only for seeded kinds)."""
        parts = [f"{k}={_fmt(v)}" for k, v in self.params.items()]
        if _KINDS[self.kind].seeded:
            parts.append(f"seed={self.seed}")
        return self.kind + (":" + ",".join(parts) if parts else "")

    @property
    def slug(self) -> str:
        """A file-name-safe form of :attr:`label`."""
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", self.label.replace(":", "__").replace("=", "")).strip("_")

    @classmethod
    def parse(cls, text: str, seed: int | None = None) -> "Recipe":
        """Parse ``kind:param=value,...`` (``seed=N`` may be one of the pairs).

        Examples: ``lowpass:cutoff_hz=3500``, ``white_noise:snr_db=10,seed=3``,
        ``identity``.
        """
        text = text.strip()
        kind, _, rest = text.partition(":")
        kind = kind.strip()
        params: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            name, eq, value = item.partition("=")
            if not eq or not name.strip() or not value.strip():
                raise ValueError(f"{text!r}: expected kind:param=value,..., got {item!r}")
            params[name.strip()] = value.strip()
        if "seed" in params:
            s = params.pop("seed")
            try:
                seed = int(s)
            except ValueError:
                raise ValueError(f"{text!r}: seed must be a whole number, got {s!r}") from None
        return cls(kind, params, 0 if seed is None else seed)


def _fmt(v) -> str:
    if isinstance(v, float) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def anchor_recipes() -> tuple[Recipe, Recipe]:
    """The BS.1534-3 low (3.5 kHz) and mid (7 kHz) anchors."""
    return Recipe("lowpass", {"cutoff_hz": LOW_ANCHOR_HZ}), Recipe("lowpass", {"cutoff_hz": MID_ANCHOR_HZ})


# ---------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------


def apply(recipe: Recipe, wave: np.ndarray, rate: int) -> np.ndarray:
    """Distort a mono signal.

    Parameters
    ----------
    recipe : Recipe
    wave : numpy.ndarray
        (n,) mono samples (any float dtype; computed in float64).
    rate : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        (n,) float32 (``time_stretch``: ``round(n / rate)`` samples),
        identical bit for bit for the same recipe and input.

    Raises
    ------
    ValueError
        Bad input (not mono, empty, non-finite, silent where a level is
        relative to the signal) or a parameter impossible at this rate.
    """
    if not isinstance(recipe, Recipe):
        raise ValueError(f"apply expects a Recipe, got {type(recipe).__name__}")
    x = np.asarray(wave)
    if x.ndim != 1:
        raise ValueError(f"distortions take a mono (n,) signal, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("cannot distort an empty signal")
    if not np.isfinite(x).all():
        raise ValueError("the signal contains NaN or infinite samples")
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"rate must be a positive integer, got {rate!r}")
    y = _KINDS[recipe.kind].fn(x.astype(np.float64), int(rate), recipe.params, recipe.seed)
    return np.ascontiguousarray(y, dtype=np.float32)


def _energy(x: np.ndarray) -> float:
    return float(np.dot(x, x))


def _scale_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    ps, pn = _energy(x), _energy(noise)
    if ps == 0.0:
        raise ValueError("the signal is silent, so a signal-to-noise ratio is undefined")
    return x + noise * math.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))


_SNR = _Param("snr_db", -30.0, 120.0, doc="signal-to-noise ratio over the whole signal, dB")


@_kind("identity", "The reference itself (mono, same rate).")
def _identity(x, rate, p, seed):
    return x


@_kind("white_noise", "Additive white Gaussian noise at a signal-to-noise ratio.", _SNR, seeded=True)
def _white_noise(x, rate, p, seed):
    noise = np.random.default_rng(seed).standard_normal(x.size)
    return _scale_noise(x, noise, p["snr_db"])


@_kind("pink_noise", "Additive pink (1/f) Gaussian noise at a signal-to-noise ratio.", _SNR, seeded=True)
def _pink_noise(x, rate, p, seed):
    n = x.size
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate)
    # 1/f power = 1/sqrt(f) amplitude; flat below 20 Hz so DC does not blow up.
    spec *= 1.0 / np.sqrt(np.maximum(f, 20.0))
    spec[0] = 0.0
    noise = np.fft.irfft(spec, n)
    return _scale_noise(x, noise, p["snr_db"])


def _fft_filter(x: np.ndarray, rate: int, gain_fn: Callable[[np.ndarray], np.ndarray], pad: int) -> np.ndarray:
    """Zero-phase filtering by a real gain curve over the whole signal.

    The signal is zero-padded by ``pad`` samples so the filter's (short)
    impulse response does not wrap around the end onto the start.
    """
    from scipy.fft import next_fast_len

    n = x.size
    m = next_fast_len(n + pad, real=True)
    spec = np.fft.rfft(x, m)
    spec *= gain_fn(np.fft.rfftfreq(m, 1.0 / rate))
    return np.fft.irfft(spec, m)[:n]


@_kind(
    "lowpass",
    "FFT low-pass: flat to cutoff_hz, raised-cosine roll-off over transition_hz, silent above.",
    _Param("cutoff_hz", 0.0, 1e6, lo_open=True, doc="pass-band edge, Hz"),
    _Param("transition_hz", 0.0, 1e6, default=None, lo_open=True, doc="roll-off width (default 5% of cutoff)"),
)
def _lowpass(x, rate, p, seed):
    fc = p["cutoff_hz"]
    tw = p.get("transition_hz") or 0.05 * fc
    nyq = rate / 2.0
    if fc >= nyq:
        raise ValueError(f"lowpass: cutoff_hz={fc:g} must be below the Nyquist frequency ({nyq:g} Hz at {rate} Hz)")

    def gain(f):
        t = np.clip((f - fc) / tw, 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * t))

    # The impulse response decays over ~ a few / tw seconds.
    return _fft_filter(x, rate, gain, pad=int(8 * rate / tw) + 1)


@_kind("mp3", "Constant-bitrate MP3 (LAME via libsndfile) encode and decode.",
       _Param("bitrate_kbps", 8, 320, integer=True, doc="constant bitrate, kbit/s"))
def _mp3(x, rate, p, seed):
    return mp3_roundtrip(x, rate, p["bitrate_kbps"])


@_kind("clip", "Hard clipping at a fraction of the signal's peak.",
       _Param("threshold", 0.0, 1.0, lo_open=True, doc="clip level as a fraction of the peak"))
def _clip(x, rate, p, seed):
    peak = float(np.abs(x).max())
    if peak == 0.0:
        return x.copy()
    t = p["threshold"] * peak
    return np.clip(x, -t, t)


@_kind(
    "reverb",
    "Synthetic reverb: seeded exponentially decaying noise impulse response, wet/dry mix.",
    _Param("rt60_s", 0.0, 10.0, lo_open=True, doc="time to decay by 60 dB, s"),
    _Param("wet", 0.0, 1.0, default=0.3, doc="wet fraction of the mix"),
    seeded=True,
)
def _reverb(x, rate, p, seed):
    from scipy.signal import fftconvolve

    rt60, wet = p["rt60_s"], p["wet"]
    n_ir = max(1, int(round(rt60 * rate)))
    t = np.arange(n_ir) / rate
    ir = np.random.default_rng(seed).standard_normal(n_ir) * np.exp(-math.log(1000.0) * t / rt60)
    ir /= math.sqrt(_energy(ir))
    rev = fftconvolve(x, ir)[: x.size]  # the full convolution's first n samples: the tail past the end is dropped
    e_dry, e_rev = _energy(x), _energy(rev)
    if e_rev > 0:
        rev *= math.sqrt(e_dry / e_rev)
    return (1.0 - wet) * x + wet * rev


@_kind(
    "eq_tilt",
    "Spectral tilt in dB per octave about a pivot frequency.",
    _Param("db_per_octave", -24.0, 24.0, doc="gain slope, dB/octave"),
    _Param("pivot_hz", 20.0, 1e6, default=1000.0, doc="frequency left unchanged, Hz"),
)
def _eq_tilt(x, rate, p, seed):
    slope, pivot = p["db_per_octave"], p["pivot_hz"]
    if pivot >= rate / 2:
        raise ValueError(f"eq_tilt: pivot_hz={pivot:g} must be below the Nyquist frequency ({rate / 2:g} Hz)")

    def gain(f):
        return 10.0 ** (slope * np.log2(np.clip(f, 20.0, rate / 2.0) / pivot) / 20.0)

    # Smooth gain curve: a short response, modest padding suffices.
    return _fft_filter(x, rate, gain, pad=min(x.size, rate // 10))


@_kind("gain", "Level change in dB.", _Param("db", -120.0, 60.0, doc="gain, dB"))
def _gain(x, rate, p, seed):
    return x * 10.0 ** (p["db"] / 20.0)


@_kind("time_shift", "Delay (positive) or advance (negative) with zero fill; length kept.",
       _Param("seconds", -3600.0, 3600.0, doc="shift, s"))
def _time_shift(x, rate, p, seed):
    k = int(round(p["seconds"] * rate))
    if abs(k) >= x.size:
        raise ValueError(
            f"time_shift: |seconds|={abs(p['seconds']):g} must be shorter than the signal ({x.size / rate:.3f} s)"
        )
    y = np.zeros_like(x)
    if k >= 0:
        y[k:] = x[: x.size - k]
    else:
        y[: x.size + k] = x[-k:]
    return y


@_kind("echo", "One discrete echo: a delayed, attenuated copy added to the signal; length kept.",
       _Param("delay_s", 0.0, 3600.0, lo_open=True, doc="echo delay, s"),
       _Param("level_db", -120.0, 0.0, default=-6.0, doc="echo level relative to the signal, dB"))
def _echo(x, rate, p, seed):
    k = int(round(p["delay_s"] * rate))
    if k < 1:
        raise ValueError(f"echo: delay_s={p['delay_s']:g} is shorter than one sample at {rate} Hz")
    if k >= x.size:
        raise ValueError(f"echo: delay_s={p['delay_s']:g} must be shorter than the signal ({x.size / rate:.3f} s)")
    y = x.copy()
    y[k:] += x[: x.size - k] * 10.0 ** (p["level_db"] / 20.0)
    return y


@_kind("reverse", "The signal played backwards (time reversal); length kept.")
def _reverse(x, rate, p, seed):
    return x[::-1].copy()


@_kind("time_stretch", "Phase-vocoder tempo change (pitch kept); rate > 1 is faster and shorter.",
       _Param("rate", 0.25, 4.0, doc="speed factor"))
def _time_stretch(x, rate, p, seed):
    n_out = max(1, int(round(x.size / p["rate"])))
    return stretch(x, rate, p["rate"], n_out)


@_kind("pitch_shift", "Pitch shift in semitones (phase vocoder + band-limited resampling); length kept.",
       _Param("semitones", -24.0, 24.0, doc="shift, semitones"))
def _pitch_shift(x, rate, p, seed):
    if p["semitones"] == 0:
        return x.copy()
    ratio = 2.0 ** (p["semitones"] / 12.0)
    # Stretch to ratio * n samples at the same pitch, then resample those back
    # to n: played at `rate`, the result sounds `ratio` times higher.
    long_n = max(1, int(round(x.size * ratio)))
    stretched = stretch(x, rate, 1.0 / ratio, long_n)
    return fft_resample(stretched, x.size / long_n, x.size)
