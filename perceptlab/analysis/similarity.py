"""Distances between clips of a library: pairs, matrices, neighbours.

This is the one place where "a clip" becomes "what a metric compares", so the
CLI (``distance``, ``matrix``, ``neighbours``) and the GUI (compare,
neighbours and matrix views) give the same numbers:

* spectrogram metrics compare the clip's 128-frame excerpt (see
  :func:`perceptlab.audio.features.excerpt`: centre of a long clip, a short
  clip looped) of its cached log-mel image;
* vector metrics (``embedding:<name>``) compare stored encoder embeddings;
  a file outside the library is embedded on the fly.

A query may be a clip id, a path of a library clip, or any audio file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig, excerpt
from perceptlab.library.features import clip_excerpts, clip_image, file_image
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn

#: The metrics shown by default, in display order.
DEFAULT_METRICS = ("mse", "nlpd", "msssim")


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


# Metrics that belong to one library (its encoders, its calibrated NLPD
# variants). The registry is process-wide, so a window that opened another
# library may have registered some that this library cannot compute.
LIBRARY_METRIC_PREFIXES = ("embedding:", "nlpd:calibrated-")


def register_library_metrics(library: Library) -> list[str]:
    """Register the metrics a library brings: its encoders (``embedding:<name>``)
    and its calibrated NLPD variants (``nlpd:calibrated-<name>``).

    Returns the names of every metric this library can compute: the built-in
    ones, then its own, never another library's.
    """
    from perceptlab.analysis.calibration import register_saved_variants
    from perceptlab.metrics.registry import list_metrics
    from perceptlab.models.embedding_metric import register_library_embeddings

    own = [m.name for m in register_library_embeddings(library) + register_saved_variants(library)]
    builtin = [m.name for m in list_metrics() if not m.name.startswith(LIBRARY_METRIC_PREFIXES)]
    return builtin + own


def metric_names(names: str | Sequence[str] | None) -> list[str]:
    """Parse ``"mse,nlpd"`` (or a list); validate each against the registry."""
    from perceptlab.metrics.registry import get_metric

    if names is None:
        return list(DEFAULT_METRICS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    for n in names:
        get_metric(n)  # raises ValueError listing the known names
    if not names:
        raise ValueError("no metric given")
    return list(names)


def _is_vector(metric_name: str) -> bool:
    from perceptlab.metrics.registry import get_metric

    return get_metric(metric_name).input_kind == "vector"


def query_image(library: Library | None, query: Query, config: FeatureConfig = FeatureConfig(),
                n_frames: int = DEFAULT_EXCERPT_FRAMES) -> np.ndarray:
    """The (1, 1, F, n_frames) excerpt image of a query."""
    if query.clip is not None and library is not None:
        image = clip_image(library, query.clip, config)
    else:
        image = file_image(query.path, config)
    return excerpt(image, n_frames)[None, None]


def _vectors_for(library: Library, metric_name: str, clips: Sequence[Clip]) -> np.ndarray:
    from perceptlab.models.embedding_metric import library_vectors

    return library_vectors(library, metric_name, clips)


def _query_vector(library: Library | None, metric_name: str, query: Query, config: FeatureConfig) -> np.ndarray:
    from perceptlab.models.embedding_metric import query_vector

    return query_vector(library, metric_name, query, config)


def metric_inputs(library: Library, metric_name: str, clips: Sequence[Clip],
                  config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                  progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray:
    """What ``metric_name`` compares for these clips: (N, 1, F, T) images or (N, D) vectors."""
    if _is_vector(metric_name):
        return _vectors_for(library, metric_name, clips)
    return clip_excerpts(library, list(clips), config, n_frames, progress=progress, cancel=cancel)


def pair_distances(library: Library | None, a: Query, b: Query, metrics: Sequence[str],
                   config: FeatureConfig = FeatureConfig(),
                   n_frames: int = DEFAULT_EXCERPT_FRAMES) -> dict[str, float]:
    """{metric name: distance between a and b}."""
    import torch

    from perceptlab.metrics.registry import get_metric

    out: dict[str, float] = {}
    images = None
    for name in metrics:
        m = get_metric(name)
        if m.input_kind == "vector":
            x = torch.from_numpy(_query_vector(library, name, a, config))[None]
            y = torch.from_numpy(_query_vector(library, name, b, config))[None]
        else:
            if images is None:
                images = (torch.from_numpy(query_image(library, a, config, n_frames)),
                          torch.from_numpy(query_image(library, b, config, n_frames)))
            x, y = images
        with torch.no_grad():
            out[name] = float(m.fn(x, y)[0])
    return out


def library_matrix(library: Library, metric_name: str, clips: Sequence[Clip] | None = None,
                   config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                   memory_budget_mb: float = 512, progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None, inputs_cache: dict | None = None) -> tuple[list[Clip], np.ndarray]:
    """The (N, N) distance matrix of ``clips`` (default: every good clip) under one metric.

    ``inputs_cache``, a dict the caller keeps, lets several metrics share the
    loaded excerpts (only the latest set is kept: they can be large).
    """
    from perceptlab.metrics.pairwise import distance_matrix

    clips = list(library.clips() if clips is None else clips)
    if len(clips) < 2:
        raise ValueError(f"{library.path}: a distance matrix needs at least 2 clips, found {len(clips)}")
    vector = _is_vector(metric_name)
    key = (metric_name if vector else "spectrogram", config.hash, n_frames, tuple(c.id for c in clips))
    x = None if inputs_cache is None else inputs_cache.get(key)
    if x is None:
        x = metric_inputs(library, metric_name, clips, config, n_frames, cancel=cancel)
        if inputs_cache is not None:
            inputs_cache.clear()
            inputs_cache[key] = x
    d = distance_matrix(x, metric_name, memory_budget_mb=memory_budget_mb, progress=progress, cancel=cancel)
    return clips, d.numpy()


@dataclass(frozen=True)
class Neighbour:
    rank: int
    clip: Clip
    distance: float

    def to_json(self) -> dict:
        return {"rank": self.rank, "id": self.clip.id, "name": self.clip.name, "label": self.clip.label,
                "path": self.clip.path, "distance": self.distance}


def neighbours(library: Library, query: Query, metric_name: str, k: int = 5,
               config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
               candidates: Sequence[Clip] | None = None, progress: ProgressFn | None = None,
               cancel: CancelFn | None = None) -> list[Neighbour]:
    """The ``k`` library clips closest to ``query`` (the query itself left out)."""
    ranked = ranking(library, query, metric_name, config, n_frames, candidates, progress, cancel)
    return ranked[:k]


def ranking(library: Library, query: Query, metric_name: str, config: FeatureConfig = FeatureConfig(),
            n_frames: int = DEFAULT_EXCERPT_FRAMES, candidates: Sequence[Clip] | None = None,
            progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> list[Neighbour]:
    """Every candidate clip ordered by distance to ``query`` (closest first; ties by position)."""
    import torch

    from perceptlab.metrics.pairwise import build_index

    clips = [c for c in (library.clips() if candidates is None else candidates)
             if query.clip is None or c.id != query.clip.id]
    if not clips:
        raise ValueError(f"{library.path}: no other clips to compare with")
    x = metric_inputs(library, metric_name, clips, config, n_frames, progress=progress, cancel=cancel)
    if _is_vector(metric_name):
        q = _query_vector(library, metric_name, query, config)[None]
    else:
        q = query_image(library, query, config, n_frames)
    index = build_index(x, metric_name, cancel=cancel)
    d = index.distances(torch.from_numpy(q)).reshape(-1).numpy()
    order = np.argsort(d, kind="stable")
    return [Neighbour(r + 1, clips[i], float(d[i])) for r, i in enumerate(order)]
