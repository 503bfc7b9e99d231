"""What a metric sees of a library's clips, and the caches that keep it.

The images (log-mel, from the library's feature cache) or vectors
(z-scored baseline statistics, stored encoder embeddings) of a list of
clips, as :func:`metric_inputs` gives them, and what keeps them between
calls: the baselines' z-score statistics of the library's content
(:func:`baseline_standardisation`), the library's persistent search indexes
(:mod:`perceptlab.analysis.indexing`, rebuilt once when found damaged) and
the query indexes of clip groups (:func:`_cached_index`, kept by recent use
within a memory budget). The distances built on them are in
:mod:`perceptlab.analysis.similarity` (pairs), :mod:`~perceptlab.analysis.matrices`
and :mod:`~perceptlab.analysis.neighbours`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Sequence

import numpy as np

from perceptlab.audio.features import (
    DEFAULT_EXCERPT_FRAMES,
    FeatureConfig,
    compared_width,
    excerpt as centre_excerpt,
    pad_frames,
)
from perceptlab.library.features import clip_image
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

_log = logging.getLogger("perceptlab.indexes")

#: What a spectrogram metric compares: the whole clips, or the centre excerpt.
EXCERPTS = ("whole", "centre")


def _metric(metric_name: str):
    from perceptlab.metrics.registry import get_metric

    return get_metric(metric_name)


def _is_vector(metric_name: str) -> bool:
    return _metric(metric_name).input_kind == "vector"


def _check_excerpt(excerpt: str) -> None:
    if excerpt not in EXCERPTS:
        raise ValueError(f"unknown excerpt {excerpt!r}; use one of {', '.join(EXCERPTS)}")


# -- images and vectors of clips -------------------------------------------------


def _library_images(library: Library, clips: Sequence[Clip], config: FeatureConfig,
                    progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> list[np.ndarray]:
    out = []
    report(progress, 0, len(clips))
    for i, c in enumerate(clips):
        check_cancel(cancel)
        out.append(clip_image(library, c, config))
        report(progress, i + 1, len(clips))
    return out


def metric_inputs(library: Library, metric_name: str, clips: Sequence[Clip],
                  config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                  progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                  excerpt: str = "whole") -> np.ndarray:
    """What ``metric_name`` sees of these clips as ONE array: (N, D) vectors, or
    (N, 1, F, W) images.

    For images, ``excerpt="whole"`` pads every clip with silence to the
    :func:`compared_width` of the longest (a common width for maps and
    projections; pair distances use each pair's own width, see
    :func:`perceptlab.analysis.matrices.library_matrix`), ``"centre"`` takes the centre excerpts.
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


# -- baselines: whole-clip statistics z-scored over the library ----------------

_BASELINE_STATS: dict = {}


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
    from perceptlab.metrics.registry import is_baseline

    if is_baseline(metric_name):
        from perceptlab.metrics.baselines import apply_standardisation

        raw = _indexed_raw_vectors(library, metric_name, clips, config, progress, cancel)
        if raw is not None:
            return apply_standardisation(raw, baseline_standardisation(library, metric_name, config))
        return _baseline_vectors(library, metric_name, _library_images(library, clips, config, progress, cancel),
                                 config)
    from perceptlab.models.embedding_metric import library_vectors, standardised_embeddings

    return standardised_embeddings(library, metric_name, library_vectors(library, metric_name, clips))


# -- the library's persistent indexes and the query indexes kept between queries --


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
