"""Distances between many clips of a library: the whole matrix and rows against columns.

:func:`library_matrix` gives the (N, N) matrix of a metric over a set of
clips, :func:`cross_distances` the (R, C) block of some clips against
others, each pair compared by the rule of
:func:`perceptlab.analysis.similarity.pair_distances` without alignment (whole
clips at the pair's own compared width, or the centre excerpts). Whole
clips of different lengths are grouped by compared width so that each
group is one batched engine call (:func:`_whole_matrix`); queries against a
set of clips reuse the kept indexes of :mod:`perceptlab.analysis.clip_inputs`
(:func:`_whole_query_distances`, which the neighbour search shares).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from perceptlab.analysis.clip_inputs import (
    _cached_index,
    _check_excerpt,
    _is_vector,
    _library_images,
    _library_index,
    _stack_images,
    _store_images,
    _vectors_for,
    metric_inputs,
)
from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig, compared_width, pad_frames
from perceptlab.library.features import clip_image
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report


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
    :func:`perceptlab.analysis.similarity.pair_distances` without alignment); ``excerpt="centre"`` compares
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
    group's index is kept for the next query (see :func:`perceptlab.analysis.clip_inputs._cached_index`), and
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
