"""Distances between clips of a library: pairs, matrices, neighbours.

This is the one place where "a clip" becomes "what a metric compares", so the
CLI (``distance``, ``matrix``, ``neighbours``) and the GUI (compare,
neighbours, matrix and map views) give the same numbers.

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

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

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
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

_log = logging.getLogger("perceptlab.indexes")

#: The metrics shown by default, in display order: the perceptual metrics,
#: then the baselines that show whether they earn their cost.
DEFAULT_METRICS = BUILTIN_METRICS

#: What a spectrogram metric compares: the whole clips, or the centre excerpt.
EXCERPTS = ("whole", "centre")

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
    from perceptlab.metrics.registry import get_metric

    if names is None:
        return [m for m in DEFAULT_METRICS if with_baselines or not _is_baseline(m)]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    for n in names:
        get_metric(n)  # raises ValueError listing the known names
    if not names:
        raise ValueError("no metric given")
    return list(names)


def _metric(metric_name: str):
    from perceptlab.metrics.registry import get_metric

    return get_metric(metric_name)


def _is_vector(metric_name: str) -> bool:
    return _metric(metric_name).input_kind == "vector"


def _is_baseline(metric_name: str) -> bool:
    return bool(_metric(metric_name).params.get("baseline", False))


def _check_excerpt(excerpt: str) -> None:
    if excerpt not in EXCERPTS:
        raise ValueError(f"unknown excerpt {excerpt!r}; use one of {', '.join(EXCERPTS)}")


def query_full_image(library: Library | None, query: Query, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The whole (F, T) log-mel image of a query (cached for a library clip)."""
    if query.clip is not None and library is not None:
        return clip_image(library, query.clip, config)
    return file_image(query.path, config)


def query_image(library: Library | None, query: Query, config: FeatureConfig = FeatureConfig(),
                n_frames: int = DEFAULT_EXCERPT_FRAMES) -> np.ndarray:
    """The (1, 1, F, n_frames) centre excerpt image of a query."""
    return centre_excerpt(query_full_image(library, query, config), n_frames)[None, None]


# -- baselines: whole-clip statistics z-scored over the library ----------------

_BASELINE_STATS: dict = {}


def _library_images(library: Library, clips: Sequence[Clip], config: FeatureConfig,
                    progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> list[np.ndarray]:
    out = []
    report(progress, 0, len(clips))
    for i, c in enumerate(clips):
        check_cancel(cancel)
        out.append(clip_image(library, c, config))
        report(progress, i + 1, len(clips))
    return out


def baseline_standardisation(library: Library, metric_name: str, config: FeatureConfig = FeatureConfig()):
    """The z-score statistics of a baseline over every good clip of ``library``.

    Kept per process for the library's current content (its fingerprint), so
    the GUI pays for them once.
    """
    from perceptlab.metrics.baselines import raw_vector, standardise

    key = (str(library.path), library.fingerprint(), config.hash, metric_name)
    if key not in _BASELINE_STATS:
        clips = library.clips()
        if len(clips) < 2:
            raise ValueError(f"{metric_name}: z-scores need a library of at least 2 clips, "
                             f"{library.path} has {len(clips)}")
        raw = _indexed_raw_vectors(library, metric_name, clips, config)
        if raw is None:
            raw = np.stack([raw_vector(metric_name, clip_image(library, c, config), config) for c in clips])
        for old in [k for k in _BASELINE_STATS if k[:3] != key[:3]]:
            del _BASELINE_STATS[old]  # statistics of one library's content at a time
        _BASELINE_STATS[key] = standardise(raw)[1]
    return _BASELINE_STATS[key]


def _baseline_vectors(library: Library | None, metric_name: str, images: Sequence[np.ndarray],
                      config: FeatureConfig) -> np.ndarray:
    from perceptlab.metrics.baselines import apply_standardisation, raw_vector

    if library is None:
        raise ValueError(f"{metric_name}: a baseline z-scores its statistics over a library; "
                         "give --library (or import the clips first)")
    stats = baseline_standardisation(library, metric_name, config)
    return apply_standardisation(np.stack([raw_vector(metric_name, im, config) for im in images]), stats)


def _library_index(library: Library, kind: str, config: FeatureConfig, progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None, clips: Sequence[Clip] | None = None):
    """The library's persistent index of ``kind``, up to date; None where it cannot be kept.

    An index folder that cannot be written (a read-only location) is not
    an error: the caller then computes from the feature cache, as without
    an index.
    """
    from perceptlab.analysis.indexing import library_index

    try:
        return library_index(library, kind, config, progress, cancel, clips)
    except OSError as exc:
        _log.info("no search index for %s (%s): computing from the feature cache", library.path, exc)
        return None


def _with_index(fn):
    """Run ``fn()``; if an index turns out damaged while read, drop it and run once more (it is rebuilt)."""
    from perceptlab.library.indexes import IndexDamaged

    try:
        return fn()
    except IndexDamaged as exc:
        from perceptlab.analysis.indexing import forget, rebuild_damaged

        index = getattr(exc, "index", None)
        if index is not None:
            rebuild_damaged(index, str(exc))
        forget()
        _INDEX_CACHE.clear()
        return fn()


def _indexed_raw_vectors(library: Library, metric_name: str, clips: Sequence[Clip], config: FeatureConfig,
                         progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray | None:
    """(N, D) raw baseline vectors of ``clips`` from the library's index (None without one)."""
    from perceptlab.analysis.indexing import index_kind

    if index_kind(metric_name) != metric_name:
        return None
    index = _library_index(library, metric_name, config, progress, cancel)
    if index is None or any(c.content_hash not in index.row_of for c in clips):
        return None
    rows = np.array([index.row_of[c.content_hash] for c in clips], dtype=np.int64)
    return np.asarray(index.vectors()[rows], dtype=np.float32)


def _vectors_for(library: Library, metric_name: str, clips: Sequence[Clip], config: FeatureConfig,
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray:
    if _is_baseline(metric_name):
        from perceptlab.metrics.baselines import apply_standardisation

        raw = _indexed_raw_vectors(library, metric_name, clips, config, progress, cancel)
        if raw is not None:
            return apply_standardisation(raw, baseline_standardisation(library, metric_name, config))
        return _baseline_vectors(library, metric_name, _library_images(library, clips, config, progress, cancel),
                                 config)
    from perceptlab.models.embedding_metric import library_vectors, standardised_embeddings

    return standardised_embeddings(library, metric_name, library_vectors(library, metric_name, clips))


def _query_vector(library: Library | None, metric_name: str, query: Query, config: FeatureConfig) -> np.ndarray:
    if _is_baseline(metric_name):
        return _baseline_vectors(library, metric_name, [query_full_image(library, query, config)], config)[0]
    from perceptlab.models.embedding_metric import query_vector, standardised_embeddings

    return standardised_embeddings(library, metric_name, query_vector(library, metric_name, query, config))


def metric_inputs(library: Library, metric_name: str, clips: Sequence[Clip],
                  config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                  progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                  excerpt: str = "whole") -> np.ndarray:
    """What ``metric_name`` sees of these clips as ONE array: (N, D) vectors, or
    (N, 1, F, W) images.

    For images, ``excerpt="whole"`` pads every clip with silence to the
    :func:`compared_width` of the longest (a common width for maps and
    projections; pair distances use each pair's own width, see
    :func:`library_matrix`), ``"centre"`` takes the centre excerpts.
    """
    _check_excerpt(excerpt)
    if _is_vector(metric_name):
        return _vectors_for(library, metric_name, clips, config, progress, cancel)
    images = _library_images(library, list(clips), config, progress, cancel)
    return _stack_images(images, excerpt, n_frames)


def _stack_images(images: Sequence[np.ndarray], excerpt: str, n_frames: int,
                  width: int | None = None) -> np.ndarray:
    if excerpt == "centre":
        parts = [centre_excerpt(im, n_frames) for im in images]
    else:
        width = width or compared_width(max(im.shape[1] for im in images))
        parts = [pad_frames(im, width) for im in images]
    out = np.empty((len(parts), 1, *parts[0].shape), dtype=np.float32)  # (N, 1, F, W)
    for i, im in enumerate(parts):
        out[i, 0] = im
    return out


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


# -- matrices --------------------------------------------------------------------


def _whole_matrix(images: Sequence[np.ndarray], metric_name: str, memory_budget_mb: float,
                  progress: ProgressFn | None, cancel: CancelFn | None) -> np.ndarray:
    """(N, N) distances of whole clips, each pair at its own compared width.

    Clips are grouped by the rung of their own length. The pairs whose
    longer clip sits on rung w are: all pairs within the group (one batched
    matrix), and the group against every shorter clip padded to w (an index
    of the group queried by those clips, in chunks within the memory
    budget). So a library of equal-length clips is one batched matrix.
    """
    import torch

    from perceptlab.metrics.pairwise import build_index, distance_matrix

    n = len(images)
    widths = np.array([compared_width(im.shape[1]) for im in images])
    d = np.zeros((n, n), dtype=np.float64)
    done = 0
    report(progress, 0, n)
    for w in np.unique(widths):
        check_cancel(cancel)
        rows = np.flatnonzero(widths == w)
        shorter = np.flatnonzero(widths < w)
        x = _stack_images([images[i] for i in rows], "whole", 0, width=int(w))  # (R, 1, F, w)
        if len(rows) > 1:
            d[np.ix_(rows, rows)] = distance_matrix(x, metric_name, memory_budget_mb=memory_budget_mb,
                                                    cancel=cancel).numpy()
        if len(shorter):
            index = build_index(x, metric_name, cancel=cancel)
            per_clip = max(1, x[0].nbytes)
            chunk = max(1, int(memory_budget_mb * (1 << 20) // (4 * per_clip)))
            for s0 in range(0, len(shorter), chunk):
                check_cancel(cancel)
                part = shorter[s0 : s0 + chunk]
                q = _stack_images([images[j] for j in part], "whole", 0, width=int(w))
                block = index.distances(torch.from_numpy(q)).reshape(len(part), len(rows)).numpy()
                d[np.ix_(part, rows)] = block
                d[np.ix_(rows, part)] = block.T
        done += len(rows)
        report(progress, done, n)
    np.fill_diagonal(d, 0.0)
    return d


def library_matrix(library: Library, metric_name: str, clips: Sequence[Clip] | None = None,
                   config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                   memory_budget_mb: float = 512, progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None, inputs_cache: dict | None = None,
                   excerpt: str = "whole") -> tuple[list[Clip], np.ndarray]:
    """The (N, N) distance matrix of ``clips`` (default: every good clip) under one metric.

    Whole clips by default, each pair at its own width (the same numbers as
    :func:`pair_distances` without alignment); ``excerpt="centre"`` compares
    the centre excerpts. ``inputs_cache``, a dict the caller keeps, lets
    several metrics share the loaded images (only the latest set is kept:
    they can be large).
    """
    from perceptlab.metrics.pairwise import distance_matrix

    _check_excerpt(excerpt)
    clips = list(library.clips() if clips is None else clips)
    if len(clips) < 2:
        raise ValueError(f"{library.path}: a distance matrix needs at least 2 clips, found {len(clips)}")
    vector = _is_vector(metric_name)
    key = (metric_name if vector else "images", config.hash, tuple(c.id for c in clips))
    cached = None if inputs_cache is None else inputs_cache.get(key)
    if cached is None:
        if vector:
            cached = _vectors_for(library, metric_name, clips, config, cancel=cancel)
        else:
            cached = _library_images(library, clips, config, cancel=cancel)
        if inputs_cache is not None:
            inputs_cache.clear()
            inputs_cache[key] = cached
    if vector:
        d = distance_matrix(cached, metric_name, memory_budget_mb=memory_budget_mb, progress=progress,
                            cancel=cancel).numpy()
    elif excerpt == "centre":
        d = distance_matrix(_stack_images(cached, "centre", n_frames), metric_name,
                            memory_budget_mb=memory_budget_mb, progress=progress, cancel=cancel).numpy()
    else:
        d = _whole_matrix(cached, metric_name, memory_budget_mb, progress, cancel)
    return clips, d


def cross_distances(library: Library, metric_name: str, rows: Sequence[Clip], cols: Sequence[Clip],
                    config: FeatureConfig = FeatureConfig(), excerpt: str = "whole",
                    n_frames: int = DEFAULT_EXCERPT_FRAMES, cancel: CancelFn | None = None) -> np.ndarray:
    """(len(rows), len(cols)) distances, each pair by the same rule as the matrix."""
    if _is_vector(metric_name) or excerpt == "centre":
        from perceptlab.metrics.pairwise import build_index
        import torch

        index = build_index(metric_inputs(library, metric_name, cols, config, n_frames, excerpt=excerpt,
                                          cancel=cancel), metric_name, cancel=cancel)
        q = metric_inputs(library, metric_name, rows, config, n_frames, excerpt=excerpt, cancel=cancel)
        return index.distances(torch.from_numpy(q)).reshape(len(rows), len(cols)).numpy()
    queries = _library_images(library, list(rows), config, cancel=cancel)
    return _whole_query_distances(library, queries, list(cols), metric_name, config, cancel)


def _whole_query_distances(library: Library, queries: Sequence[np.ndarray], clips: Sequence[Clip],
                           metric_name: str, config: FeatureConfig, cancel: CancelFn | None) -> np.ndarray:
    """(Q, N) whole-clip distances from each query image to each clip, each pair at its own width.

    The clips are grouped by the width of their pair with the query; each
    group's index is kept for the next query (see :func:`_cached_index`), and
    a group whose index is kept is not even read from the feature cache:
    the clips' lengths come from the cache's table of image sizes.
    """
    import torch

    from perceptlab.analysis.indexing import IMAGES

    store = _library_index(library, IMAGES, config, cancel=cancel)
    if store is not None and all(c.content_hash in store.row_of for c in clips):
        lengths = store.lengths[[store.row_of[c.content_hash] for c in clips]]
        images = _store_images(store)
    else:
        widths = library.feature_widths(config.hash)
        lengths = np.array([widths.get(c.content_hash) or clip_image(library, c, config).shape[1] for c in clips])
        images = None
    out = np.zeros((len(queries), len(clips)), dtype=np.float64)
    for qi, q in enumerate(queries):
        pair_widths = np.array([compared_width(max(q.shape[1], int(t))) for t in lengths])
        for w in np.unique(pair_widths):
            check_cancel(cancel)
            cols = np.flatnonzero(pair_widths == w)
            group = [clips[i] for i in cols]
            index = _cached_index(library, group, metric_name, int(w), config, cancel, images)
            qq = pad_frames(q, int(w))[None, None]
            out[qi, cols] = index.distances(torch.from_numpy(qq)).reshape(-1).numpy()
    return out


#: Query indexes kept between queries, least recently used first: {key: (index, bytes)}.
_INDEX_CACHE: "OrderedDict" = OrderedDict()
#: The memory they may hold. One query of every metric needs an index per
#: (metric, compared width) group; a few hundred clips make a few dozen.
_INDEX_CACHE_BYTES = 768 * 2**20


def _store_images(store):
    """``clip -> image`` read from a persistent index (each image's checksum verified)."""
    from perceptlab.library.indexes import IndexDamaged

    def image(clip: Clip) -> np.ndarray:
        try:
            return store.image(store.row_of[clip.content_hash])
        except IndexDamaged as exc:
            exc.index = store
            raise

    return image


def _cached_index(library: Library, clips: Sequence[Clip], metric_name: str, width: int,
                  config: FeatureConfig, cancel: CancelFn | None, image_of=None):
    """An index of ``clips``' images padded to ``width``, kept for the next query on the same set.

    Keyed by the clips' contents (content hashes) and the feature config, so
    a changed set never hits a stale index. ``image_of(clip)`` reads an
    image (default: the feature cache).
    """
    from perceptlab.metrics.pairwise import build_index

    key = (metric_name, width, config.hash, tuple(c.content_hash for c in clips))
    hit = _INDEX_CACHE.get(key)
    if hit is not None:
        _INDEX_CACHE.move_to_end(key)
        return hit[0]
    if image_of is None:
        images = _library_images(library, clips, config, cancel=cancel)
    else:
        images = []
        for c in clips:
            check_cancel(cancel)
            images.append(image_of(c))
    index = build_index(_stack_images(images, "whole", 0, width=width), metric_name, cancel=cancel)
    # Per-clip transforms (pyramid coefficients, SSIM statistics) hold a few
    # times the images: charged at 3x the images' float32 size.
    cost = 3 * 4 * len(clips) * width * config.n_mels
    while _INDEX_CACHE and sum(c for _, c in _INDEX_CACHE.values()) + cost > _INDEX_CACHE_BYTES:
        _INDEX_CACHE.popitem(last=False)
    _INDEX_CACHE[key] = (index, cost)
    return index


@dataclass(frozen=True)
class Neighbour:
    rank: int
    clip: Clip
    distance: float

    def to_json(self) -> dict:
        return {"rank": self.rank, "id": self.clip.id, "name": self.clip.name, "label": self.clip.label,
                "path": self.clip.path, "distance": self.distance}


#: How :func:`neighbours` searches: "auto" (two stages where the library is
#: larger than the candidate budget, else exact), "exact" or "two-stage".
SEARCH_MODES = ("auto", "exact", "two-stage")


def neighbours(library: Library, query: Query, metric_name: str, k: int = 5,
               config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
               candidates: Sequence[Clip] | None = None, progress: ProgressFn | None = None,
               cancel: CancelFn | None = None, excerpt: str = "whole", search: str = "auto",
               budget: int | None = None) -> list[Neighbour]:
    """The ``k`` library clips closest to ``query`` (the query itself left out).

    Whole clips under a spectrogram metric are searched through the
    library's persistent index (:mod:`perceptlab.analysis.indexing`, updated
    first if the library changed). With more clips than the candidate
    ``budget`` (default :func:`perceptlab.metrics.search.default_budget`),
    ``search="auto"`` searches in two stages (sketch candidates, then the
    real metric on them: :func:`perceptlab.metrics.search.two_stage`); the
    distances returned are always the real metric's. Otherwise the result is
    the head of :func:`ranking`.
    """
    if search not in SEARCH_MODES:
        raise ValueError(f"unknown search {search!r}; use one of {', '.join(SEARCH_MODES)}")
    if k < 0:
        raise ValueError(f"k must be at least 0, got {k}")
    _check_excerpt(excerpt)
    if excerpt == "whole" and not _is_vector(metric_name) and search != "exact":
        from perceptlab.metrics.search import default_budget

        budget = default_budget(metric_name) if budget is None else int(budget)
        if budget < 1:
            raise ValueError(f"the candidate budget must be at least 1, got {budget}")
        pool = list(library.clips() if candidates is None else candidates)
        if search == "two-stage" or len(pool) - 1 > max(budget, k):
            # The library's clips, read once (a large library's rows cost more than the search).
            every = pool if candidates is None else None
            found = _with_index(lambda: _two_stage_neighbours(library, query, metric_name, k, config, pool,
                                                              max(budget, k), progress, cancel, every))
            if found is not None:
                return found
    ranked = ranking(library, query, metric_name, config, n_frames, candidates, progress, cancel, excerpt)
    return ranked[:k]


_SKETCH_SEARCH: dict = {}


def _sketch_search(store):
    from perceptlab.metrics.search import SketchSearch

    key = (str(store.directory), store.manifest.get("generation"))
    found = _SKETCH_SEARCH.get(key)
    if found is None:
        _SKETCH_SEARCH.clear()
        found = _SKETCH_SEARCH[key] = SketchSearch(store.vectors(), store.lengths, int(store.manifest["n_mels"]))
    return found


def _two_stage_neighbours(library: Library, query: Query, metric_name: str, k: int, config: FeatureConfig,
                          pool: list[Clip], budget: int, progress: ProgressFn | None,
                          cancel: CancelFn | None, library_clips: list[Clip] | None = None
                          ) -> list[Neighbour] | None:
    from perceptlab.analysis.indexing import IMAGES
    from perceptlab.library.indexes import IndexDamaged
    from perceptlab.metrics.search import two_stage

    store = _library_index(library, IMAGES, config, progress, cancel, library_clips)
    if store is None or any(c.content_hash not in store.row_of for c in pool):
        return None
    others = [c for c in pool if query.clip is None or c.id != query.clip.id]
    if not others:
        raise ValueError(f"{library.path}: no other clips to compare with")
    position = {c.id: i for i, c in enumerate(others)}
    by_row: dict[int, list[Clip]] = {}
    for c in others:
        by_row.setdefault(store.row_of[c.content_hash], []).append(c)
    allowed = np.zeros(store.n_rows, dtype=bool)
    allowed[list(by_row)] = True

    def image(row: int) -> np.ndarray:
        try:
            return store.image(row)
        except IndexDamaged as exc:
            exc.index = store
            raise

    qimg = query_full_image(library, query, config)
    rows, d = two_stage(qimg, _sketch_search(store), image, metric_name, budget, allowed, cancel)
    found = [(float(dist), position[c.id], c) for r, dist in zip(rows, d) for c in by_row[int(r)]]
    found.sort(key=lambda t: (t[0], t[1]))
    return [Neighbour(i + 1, c, dist) for i, (dist, _, c) in enumerate(found[:k])]


def ranking(library: Library, query: Query, metric_name: str, config: FeatureConfig = FeatureConfig(),
            n_frames: int = DEFAULT_EXCERPT_FRAMES, candidates: Sequence[Clip] | None = None,
            progress: ProgressFn | None = None, cancel: CancelFn | None = None,
            excerpt: str = "whole") -> list[Neighbour]:
    """Every candidate clip ordered by distance to ``query`` (closest first; ties by position).

    Whole clips by default (each pair at its own width, no alignment: the
    numbers of :func:`library_matrix`). Exact: every distance is the real
    metric's; the images (and the baselines' statistics) come from the
    library's persistent index, so no image is decoded or read from the
    feature cache once the index is built.
    """
    return _with_index(lambda: _ranking(library, query, metric_name, config, n_frames, candidates, progress,
                                        cancel, excerpt))


def _ranking(library: Library, query: Query, metric_name: str, config: FeatureConfig, n_frames: int,
             candidates: Sequence[Clip] | None, progress: ProgressFn | None, cancel: CancelFn | None,
             excerpt: str) -> list[Neighbour]:
    import torch

    from perceptlab.metrics.pairwise import build_index

    _check_excerpt(excerpt)
    pool = list(library.clips() if candidates is None else candidates)
    clips = [c for c in pool if query.clip is None or c.id != query.clip.id]
    if not clips:
        raise ValueError(f"{library.path}: no other clips to compare with")
    if _is_vector(metric_name):
        x = _vectors_for(library, metric_name, clips, config, progress, cancel)
        q = _query_vector(library, metric_name, query, config)[None]
        d = build_index(x, metric_name, cancel=cancel).distances(torch.from_numpy(q)).reshape(-1).numpy()
    elif excerpt == "centre":
        x = metric_inputs(library, metric_name, clips, config, n_frames, progress, cancel, excerpt="centre")
        q = query_image(library, query, config, n_frames)
        d = build_index(x, metric_name, cancel=cancel).distances(torch.from_numpy(q)).reshape(-1).numpy()
    else:
        # The index covers the whole pool, the query's own clip included, so
        # it is the same set (and a cache hit) whichever clip is queried.
        qimg = query_full_image(library, query, config)
        full = _whole_query_distances(library, [qimg], pool, metric_name, config, cancel)[0]
        keep = [i for i, c in enumerate(pool) if query.clip is None or c.id != query.clip.id]
        d = full[keep]
    order = np.argsort(d, kind="stable")
    return [Neighbour(r + 1, clips[i], float(d[i])) for r, i in enumerate(order)]
