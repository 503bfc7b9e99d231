"""The clips of a library closest to a query, and every clip ranked by distance to it.

:func:`neighbours` gives the ``k`` nearest clips under one metric: exactly
(the head of :func:`ranking`), or, in a library larger than the candidate
budget, in two stages (sketch candidates from the search index, then the
real metric on them: :func:`perceptlab.metrics.search.two_stage`), the
distances returned always the real metric's. :func:`ranking` orders every
candidate, each pair by the rule of :func:`perceptlab.analysis.matrices.library_matrix`.
A query is a :class:`perceptlab.analysis.similarity.Query`: a library clip or
any file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from perceptlab.analysis.clip_inputs import (
    _check_excerpt,
    _is_vector,
    _vectors_for,
    _with_index,
    metric_inputs,
)
from perceptlab.analysis.matrices import _whole_query_distances
from perceptlab.analysis.similarity import Query, _query_vector, query_full_image, query_image
from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn

_log = logging.getLogger("perceptlab.indexes")


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
        # Of every clip only its id and content hash (reading a large library's rows whole
        # costs more than the search); whole clips only for the k found.
        pool = None if candidates is None else list(candidates)
        keys = library.clip_keys() if pool is None else [(c.id, c.content_hash) for c in pool]
        if search == "two-stage" or len(keys) - 1 > max(budget, k):
            found = _with_index(lambda: _two_stage_neighbours(library, query, metric_name, k, config, keys,
                                                              max(budget, k), progress, cancel, pool))
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


def prepare_search(library_path: str, config: FeatureConfig = FeatureConfig(), progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None) -> bool:
    """Open the library's images index and ready its candidate stage, for the first query after a start.

    Run in the background when a library opens: the first two-stage search
    then finds the index open and its sketches joined in memory. Builds
    nothing: without an index on disk (or with fewer than two clips in it)
    it does nothing and returns False.
    """
    from perceptlab.analysis.indexing import IMAGES, open_index

    store = open_index(library_path, IMAGES, config, create=False)
    if store is None or store.n_alive < 2:
        return False
    _sketch_search(store)._segment_norms(0)  # the pooled part's norms: what every MSE query reads
    return True


def _images_index(library: Library, config: FeatureConfig, progress: ProgressFn | None, cancel: CancelFn | None,
                  hashes: list[str | None] | None):
    """The library's images index, up to date, checked against ``hashes`` (the library's, when
    the caller read them: the clips are then read only if some must be added); None where it
    cannot be kept (as :func:`perceptlab.analysis.clip_inputs._library_index`)."""
    from perceptlab.analysis.indexing import IMAGES, library_index

    try:
        return library_index(library, IMAGES, config, progress, cancel, hashes=hashes)
    except OSError as exc:
        _log.info("no search index for %s (%s): computing from the feature cache", library.path, exc)
        return None


def _two_stage_neighbours(library: Library, query: Query, metric_name: str, k: int, config: FeatureConfig,
                          keys: list[tuple[int, str | None]], budget: int, progress: ProgressFn | None,
                          cancel: CancelFn | None, pool: list[Clip] | None = None) -> list[Neighbour] | None:
    """Two-stage search over the clips of ``keys`` ((id, content hash), in ranking order: ties
    go to the earlier); None where the index cannot serve them. ``pool``: the clips themselves,
    when the caller has them; else the k found are read from the library."""
    from perceptlab.metrics.search import two_stage

    # Checked against the whole library's hashes unless searching a subset of it.
    store = _images_index(library, config, progress, cancel, [h for _, h in keys] if pool is None else None)
    if store is None or any(h not in store.row_of for _, h in keys):
        return None
    own = None if query.clip is None else query.clip.id
    others = [(i, h) for i, h in keys if i != own]
    if not others:
        raise ValueError(f"{library.path}: no other clips to compare with")
    position = {i: p for p, (i, _) in enumerate(others)}
    by_row: dict[int, list[int]] = {}
    for i, h in others:
        by_row.setdefault(store.row_of[h], []).append(i)
    allowed = np.zeros(store.n_rows, dtype=bool)
    allowed[list(by_row)] = True

    qimg = query_full_image(library, query, config)
    # A damaged image read in the gather names its index (IndexDamaged.index): _with_index rebuilds it.
    rows, d = two_stage(qimg, _sketch_search(store), None, metric_name, budget, allowed, cancel,
                        gather=store.gather)
    found = [(float(dist), position[i], i) for r, dist in zip(rows, d) for i in by_row[int(r)]]
    found.sort(key=lambda t: (t[0], t[1]))
    found = found[:k]
    ids = [i for _, _, i in found]
    if pool is not None:
        by_id = {c.id: c for c in pool}
        clips = [by_id[i] for i in ids]
    else:
        try:
            clips = library.clips_by_ids(ids)
        except KeyError as exc:
            raise ValueError(f"{library.path}: clips were removed while searching ({exc.args[0]}); "
                             "search again") from None
    return [Neighbour(r + 1, c, dist) for r, ((dist, _, _), c) in enumerate(zip(found, clips))]


def ranking(library: Library, query: Query, metric_name: str, config: FeatureConfig = FeatureConfig(),
            n_frames: int = DEFAULT_EXCERPT_FRAMES, candidates: Sequence[Clip] | None = None,
            progress: ProgressFn | None = None, cancel: CancelFn | None = None,
            excerpt: str = "whole") -> list[Neighbour]:
    """Every candidate clip ordered by distance to ``query`` (closest first; ties by position).

    Whole clips by default (each pair at its own width, no alignment: the
    numbers of :func:`perceptlab.analysis.matrices.library_matrix`). Exact: every distance is the real
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
