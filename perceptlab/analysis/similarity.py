"""Distances between clips of a library: what is compared, queries, pairs.

This module and the three beside it are the one place where "a clip"
becomes "what a metric compares", so the CLI (``distance``, ``matrix``,
``neighbours``) and the GUI (compare, neighbours, matrix and map views) give
the same numbers. Here: what a user points at (:class:`Query`,
:func:`resolve`), the metrics asked for (:func:`metric_names`,
:data:`DEFAULT_METRICS`) and pairs (:func:`pair_comparison`,
:func:`pair_distances`, with the time alignment).
:mod:`perceptlab.analysis.clip_inputs` gives what a metric sees of a list of
clips and keeps the caches of it; :mod:`perceptlab.analysis.matrices` the
whole matrix and cross distances; :mod:`perceptlab.analysis.neighbours` the
neighbours and rankings of a query. The rules below hold for all of them.

What is compared (``excerpt``)
------------------------------
``"whole"`` (the default): spectrogram metrics compare WHOLE clips, both
images padded with silence to the pair's :func:`compared_width` (see
:mod:`perceptlab.audio.features`, the comparison rule): no frame of either
clip is ignored, the distance depends on the pair alone, is symmetric and 0
for identical clips. ``"centre"``: the 128-frame centre excerpt (a short clip
looped), the fast option. Images are loudness-aligned by the feature config
(:attr:`FeatureConfig.loudness_target`).

Time alignment (pairs only)
---------------------------
:func:`pair_comparison` (``distance``, the compare panel, listening stimuli
against their reference) first finds the lag within +-100 ms that maximises
the cross-correlation of the two signals (FFT; over at most their first 60 s)
and drops the later clip's leading samples by that lag, so a copy delayed by
a few tens of milliseconds compares as the same sound (the two are compared
where they overlap once shifted). Only strongly correlated clips are
aligned (:func:`alignment_lag`). Matrices and
neighbour lists do not align: that would be one cross-correlation and one
fresh STFT per pair instead of cached images and batched engines, N^2 / 2
decodes for a matrix.

Vector metrics
--------------
``embedding:<name>`` compares stored encoder embeddings (a file outside the
library is embedded on the fly). The baselines ``logmel-stats`` and
``mfcc-stats`` compare whole-clip statistics z-scored over every good clip
of the library (:mod:`perceptlab.metrics.baselines`), so their distances do
not depend on which clips a matrix holds.

A query may be a clip id, a path of a library clip, or any audio file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.analysis.clip_inputs import _baseline_vectors, _check_excerpt, _metric
from perceptlab.audio.features import (
    DEFAULT_EXCERPT_FRAMES,
    FeatureConfig,
    compared_width,
    excerpt as centre_excerpt,
    pad_frames,
)
from perceptlab.library.features import clip_image, file_image
from perceptlab.library.store import Clip, Library
from perceptlab.metric_names import BUILTIN_METRICS

#: The metrics shown by default, in display order: the perceptual metrics,
#: then the baselines that show whether they earn their cost.
DEFAULT_METRICS = BUILTIN_METRICS

#: Largest lag the pair alignment searches, in seconds either way.
MAX_LAG_S = 0.1
#: Normalised cross-correlation below which two clips are not aligned.
MIN_ALIGN_CORRELATION = 0.3
# The lag is found on at most this much of each signal.
_ALIGN_SPAN_S = 60.0


@dataclass(frozen=True)
class Query:
    """What a user pointed at: a library clip, or a file outside the library."""

    path: str
    name: str
    clip: Clip | None = None

    @property
    def id(self) -> int | None:
        return None if self.clip is None else self.clip.id

    def to_json(self) -> dict:
        return {"id": self.id, "path": self.path, "name": self.name,
                "label": None if self.clip is None else self.clip.label}


def resolve(library: Library | None, ref: str | int | os.PathLike) -> Query:
    """Turn a clip id, a library path or any file path into a :class:`Query`.

    Raises
    ------
    ValueError
        If ``ref`` is neither a clip id in the library nor an existing file.
    """
    text = str(ref)
    if library is not None and text.isdigit() and not Path(text).exists():
        try:
            clip = library.clip(int(text))
        except KeyError:
            raise ValueError(f"no clip with id {text} in {library.path}") from None
        return Query(clip.path, clip.name, clip)
    path = Path(text).expanduser()
    if not path.exists():
        where = f" and no clip with that id in {library.path}" if library is not None and text.isdigit() else ""
        raise ValueError(f"{path}: no such file{where}")
    clip = library.clip_by_path(path) if library is not None else None
    if clip is not None and not clip.ok:
        raise ValueError(f"{clip.path}: was not imported: {clip.error}")
    return Query(str(path.resolve()), path.name, clip)


def metric_names(names: str | Sequence[str] | None, with_baselines: bool = True) -> list[str]:
    """Parse ``"mse,nlpd"`` (or a list); validate each against the registry.

    None gives :data:`DEFAULT_METRICS`; ``with_baselines=False`` leaves the
    baselines out of that default (they need a library to z-score over).
    """
    from perceptlab.metrics.registry import get_metric, is_baseline

    if names is None:
        return [m for m in DEFAULT_METRICS if with_baselines or not is_baseline(m)]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    for n in names:
        get_metric(n)  # raises ValueError listing the known names
    if not names:
        raise ValueError("no metric given")
    return list(names)


def query_full_image(library: Library | None, query: Query, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The whole (F, T) log-mel image of a query (cached for a library clip)."""
    if query.clip is not None and library is not None:
        return clip_image(library, query.clip, config)
    return file_image(query.path, config)


def query_image(library: Library | None, query: Query, config: FeatureConfig = FeatureConfig(),
                n_frames: int = DEFAULT_EXCERPT_FRAMES) -> np.ndarray:
    """The (1, 1, F, n_frames) centre excerpt image of a query."""
    return centre_excerpt(query_full_image(library, query, config), n_frames)[None, None]


def _query_vector(library: Library | None, metric_name: str, query: Query, config: FeatureConfig) -> np.ndarray:
    from perceptlab.metrics.registry import is_baseline

    if is_baseline(metric_name):
        return _baseline_vectors(library, metric_name, [query_full_image(library, query, config)], config)[0]
    from perceptlab.models.embedding_metric import query_vector, standardised_embeddings

    return standardised_embeddings(library, metric_name, query_vector(library, metric_name, query, config))


# -- pairs ---------------------------------------------------------------------


def alignment_lag(a: np.ndarray, b: np.ndarray, rate: int, max_lag_s: float = MAX_LAG_S) -> int:
    """Samples by which ``b`` lags ``a`` (positive: b starts later), within +-max_lag_s.

    The lag that maximises the cross-correlation of the two signals (FFT),
    found on at most their first 60 s. Only the same sound shifted is
    aligned: when the correlation at the best lag, normalised by the two
    signals' energies, is below :data:`MIN_ALIGN_CORRELATION` (unrelated
    sounds reach about 0.05, a copy under clearly audible damage 0.7 or
    more), or no lag beats none, or either signal is silent, the lag is 0.
    """
    from scipy.signal import correlate, correlation_lags

    span = int(_ALIGN_SPAN_S * rate)
    a, b = np.asarray(a[:span], np.float64), np.asarray(b[:span], np.float64)
    if a.size == 0 or b.size == 0 or not a.any() or not b.any():
        return 0
    c = correlate(b, a, mode="full", method="fft")
    lags = correlation_lags(b.size, a.size, mode="full")
    max_lag = int(round(max_lag_s * rate))
    keep = np.abs(lags) <= max_lag
    c, lags = c[keep], lags[keep]
    best = int(np.argmax(c))
    zero = int(np.flatnonzero(lags == 0)[0])
    if c[best] <= c[zero] * (1 + 1e-9):
        return 0
    if c[best] < MIN_ALIGN_CORRELATION * np.sqrt(np.dot(a, a) * np.dot(b, b)):
        return 0
    return int(lags[best])


@dataclass(frozen=True)
class PairComparison:
    """What :func:`pair_comparison` compared and found.

    Attributes
    ----------
    distances : dict
        {metric name: distance}.
    excerpt : str
        ``"whole"`` or ``"centre"``.
    lag_s : float
        Seconds by which B lags A as found by the alignment (0 when off);
        the later clip's first ``abs(lag_s)`` seconds and the earlier clip's
        last ones were left out (the two are compared where they overlap).
    width_frames : int
        Width of the two compared images (padding included).
    region_a, region_b : (float, float)
        The part of each clip's audio that was compared, in seconds from the
        start of its file.
    images : (numpy.ndarray, numpy.ndarray)
        The two (F, width) images the spectrogram metrics compared.
    """

    distances: dict
    excerpt: str
    lag_s: float
    width_frames: int
    region_a: tuple
    region_b: tuple
    images: tuple

    def to_json(self) -> dict:
        return {"excerpt": self.excerpt, "lag_s": self.lag_s, "width_frames": self.width_frames,
                "region_a": list(self.region_a), "region_b": list(self.region_b), "distances": self.distances}


def _pair_images(library: Library | None, a: Query, b: Query, config: FeatureConfig, align: bool,
                 images: tuple | None = None):
    """(image A, image B, lag in samples, region A, region B) for whole-clip comparison."""
    from perceptlab.audio.decode import load
    from perceptlab.audio.features import log_mel

    if images is not None:
        ia, ib = images
    else:
        ia, ib = query_full_image(library, a, config), query_full_image(library, b, config)
    spf = config.seconds_per_frame()
    region_a = (0.0, ia.shape[1] * spf)
    region_b = (0.0, ib.shape[1] * spf)
    lag = 0
    if align:
        from perceptlab.audio.decode import AudioError

        rate = config.sample_rate
        try:
            wa, wb = load(a.path, rate), load(b.path, rate)
        except AudioError:
            # A file gone or changed since its image was cached: compare the
            # cached images as they are rather than not at all.
            wa = wb = np.zeros(0, np.float32)
        lag = alignment_lag(wa, wb, rate)
        if lag:
            # Compare where the shifted clips overlap: the later clip's
            # lead-in and the earlier clip's unmatched tail (at most 100 ms
            # each) have no counterpart in the other clip.
            sa, sb = max(0, -lag), max(0, lag)
            n = min(wa.size - sa, wb.size - sb)
            ia, ib = log_mel(wa[sa : sa + n], config), log_mel(wb[sb : sb + n], config)
            region_a, region_b = (sa / rate, (sa + n) / rate), (sb / rate, (sb + n) / rate)
    return ia, ib, lag, region_a, region_b


def pair_comparison(library: Library | None, a: Query, b: Query, metrics: Sequence[str],
                    config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                    excerpt: str = "whole", align: bool = True,
                    images: tuple | None = None) -> PairComparison:
    """Distances between two clips under each metric, with what was compared.

    Parameters
    ----------
    excerpt : {"whole", "centre"}
        Whole clips (default) or the ``n_frames`` centre excerpts.
    align : bool
        Time-align the pair first (whole clips only; see the module notes).
    images : (numpy.ndarray, numpy.ndarray), optional
        The two clips' whole images when the caller already has them (e.g.
        from another cache); the files are still read for the alignment.
    """
    import torch

    _check_excerpt(excerpt)
    spf = config.seconds_per_frame()
    if excerpt == "centre":
        fa, fb = images or (query_full_image(library, a, config), query_full_image(library, b, config))
        ia, ib = centre_excerpt(fa, n_frames), centre_excerpt(fb, n_frames)
        lag, width = 0, n_frames
        region_a = _centre_region(fa.shape[1], n_frames, spf)
        region_b = _centre_region(fb.shape[1], n_frames, spf)
    else:
        ia, ib, lag, region_a, region_b = _pair_images(library, a, b, config, align, images)
        width = compared_width(max(ia.shape[1], ib.shape[1]))
        ia, ib = pad_frames(ia, width), pad_frames(ib, width)
    x, y = torch.from_numpy(ia)[None, None], torch.from_numpy(ib)[None, None]  # (1, 1, F, W)
    out: dict[str, float] = {}
    for name in metrics:
        m = _metric(name)
        if m.input_kind == "vector":
            xa = torch.from_numpy(_query_vector(library, name, a, config))[None]
            xb = torch.from_numpy(_query_vector(library, name, b, config))[None]
            with torch.no_grad():
                out[name] = float(m.fn(xa, xb)[0])
        else:
            with torch.no_grad():
                out[name] = float(m.fn(x, y)[0])
    return PairComparison(out, excerpt, lag / config.sample_rate, width, region_a, region_b, (ia, ib))


def _centre_region(t: int, n: int, spf: float) -> tuple:
    if t >= n:
        start = (t - n) // 2
        return (start * spf, (start + n) * spf)
    return (0.0, t * spf)  # looped: all of it, more than once


def pair_distances(library: Library | None, a: Query, b: Query, metrics: Sequence[str],
                   config: FeatureConfig = FeatureConfig(),
                   n_frames: int = DEFAULT_EXCERPT_FRAMES, excerpt: str = "whole",
                   align: bool = True) -> dict[str, float]:
    """{metric name: distance between a and b} (see :func:`pair_comparison`)."""
    return pair_comparison(library, a, b, metrics, config, n_frames, excerpt, align).distances
