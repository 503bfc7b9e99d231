"""Distance rows in blocks, and the k-nearest-neighbour graph of a library.

An all-pairs matrix grows as N^2 in time and in memory (80 GB of float64 at
100,000 clips). Most uses need only each clip's closest few: the k-NN graph,
(N, K) indices and (N, K) distances. It is computed here in blocks of rows.
Every pair is owned by one of its two clips (the narrower, or the earlier of
two as wide: :meth:`RowEngine.owned`); a block of B rows computes the pairs
its rows own, a (B, N) slab, and offers each distance as a candidate to
both clips' running (N, K) top K (:func:`owned_knn`), so every pair is
computed once, results are exactly symmetric and the dense N x N never
exists. Memory is the clips' images and metric indexes (the same O(N) the
dense matrix keeps, built once and kept) plus one (B, N) slab
within ``memory_budget_mb``.

Every distance follows the rule of
:func:`perceptlab.analysis.matrices.library_matrix`: whole clips each pair
at its own compared width (no alignment), or the centre excerpts, or the
vector metrics on their (z-scored) vectors. The numbers are those of the
metric's index (:func:`perceptlab.metrics.pairwise.build_index`), equal to
the dense matrix's to float tolerance (~1e-6).

Ties between neighbours at the same distance keep the lower row (the earlier
clip in the library's order) first, so a graph is reproducible.

File formats (:meth:`KnnGraph.save`)
------------------------------------
``.npz`` (numpy): ``indices`` int64 (N, K) row positions of the neighbours,
closest first; ``distances`` float64 (N, K); ``clip_ids`` int64 (N,) the
library ids of the rows; ``names``, ``labels`` and ``paths`` str (N,);
``meta`` a JSON string (metric, k, library, feature config, excerpt).
``.csv``: one line per edge, ``clip_id,name,rank,neighbour_id,
neighbour_name,distance``. ``.jsonl``: one JSON object per clip,
``{"id", "name", "label", "neighbours": [{"rank", "id", "name",
"distance"}, ...]}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig, compared_width, pad_frames
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report
from perceptlab.atomic import atomic_write

#: Suffixes a k-NN graph can be written as.
GRAPH_SUFFIXES = (".npz", ".csv", ".jsonl")

_MB = 1 << 20


def check_device(device: str | None) -> str:
    """``device`` as torch will take it, or ValueError naming it and why not.

    ``None`` and ``"cpu"`` are the CPU; ``"cuda"`` or ``"cuda:N"`` need torch
    to see that GPU.
    """
    import torch

    text = "cpu" if device is None else str(device).strip()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {text}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ValueError(f"device {text}: matrices run on cpu or cuda, not {dev.type}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {text}: torch sees no CUDA device on this machine "
                         "(torch.cuda.is_available() is False); use --device cpu")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"device {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return text


def _stack(images: Sequence[np.ndarray], width: int) -> np.ndarray:
    out = np.empty((len(images), 1, images[0].shape[0], width), dtype=np.float32)  # (B, 1, F, W)
    for i, im in enumerate(images):
        out[i, 0] = pad_frames(im, width)
    return out


class RowEngine:
    """Distances from any block of rows to every clip, by the matrix rule.

    Parameters
    ----------
    library : Library
    metric_name : str
        A registered metric (the library's own metrics registered first).
    clips : sequence of Clip, optional
        The rows and columns (default: every good clip, the matrix order).
    config, excerpt, n_frames
        As in :func:`perceptlab.analysis.matrices.library_matrix`.
    device : str, optional
        Where the metric engines compute (``"cuda"``); results come back as
        float64 on the CPU.
    memory_budget_mb : float
        Working memory of one block of queries (the cached per-clip
        transforms come on top).
    progress, cancel
        While loading the clips' images (progress counts clips).
    """

    def __init__(self, library: Library, metric_name: str, clips: Sequence[Clip] | None = None,
                 config: FeatureConfig = FeatureConfig(), excerpt: str = "whole",
                 n_frames: int = DEFAULT_EXCERPT_FRAMES, device: str | None = None,
                 memory_budget_mb: float = 512, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None):
        from perceptlab.analysis.clip_inputs import EXCERPTS, metric_inputs
        from perceptlab.library.features import clip_image
        from perceptlab.metrics.registry import get_metric

        if excerpt not in EXCERPTS:
            raise ValueError(f"unknown excerpt {excerpt!r}; use one of {', '.join(EXCERPTS)}")
        self.library = library
        self.metric_name = metric_name
        self.clips = list(library.clips() if clips is None else clips)
        self.n = len(self.clips)
        if self.n < 2:
            raise ValueError(f"{library.path}: distances between clips need at least 2 clips, found {self.n}")
        self.config, self.excerpt, self.n_frames = config, excerpt, n_frames
        self.device = check_device(device)
        self.memory_budget_mb = float(memory_budget_mb)
        self.cancel = cancel
        self.vector = get_metric(metric_name).input_kind == "vector"
        self._indexes: dict[tuple, object] = {}
        if self.vector or excerpt == "centre":
            # One array for all clips, one index over it: a block of rows is a
            # block of queries.
            self._inputs = metric_inputs(library, metric_name, self.clips, config, n_frames,
                                         progress=progress, cancel=cancel, excerpt=excerpt)
            self._images = None
        else:
            self._inputs = None
            self._images = []
            report(progress, 0, self.n)
            for i, c in enumerate(self.clips):
                check_cancel(cancel)
                self._images.append(clip_image(library, c, config))
                report(progress, i + 1, self.n)
            self._widths = np.array([compared_width(im.shape[1]) for im in self._images])
            self._rungs = [int(w) for w in np.unique(self._widths)]

    # -- how many rows a block holds -------------------------------------------

    def block_rows(self) -> int:
        """Rows per block: the (B, N) float64 slab, its sort order and a copy within the budget."""
        per_row = 24 * self.n
        return int(max(1, min(self.n, self.memory_budget_mb * _MB // per_row, 1024)))

    # -- the distances ---------------------------------------------------------

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """(r1 - r0, N) float64: distances from clips r0..r1-1 to every clip (0 to itself)."""
        return self.block(r0, r1, 0)

    def owned(self, r0: int, r1: int) -> np.ndarray:
        """(r1 - r0, N): the distances of the pairs that rows r0..r1-1 own, NaN elsewhere.

        Clip i owns the pair (i, j) when j is wider (compared at a higher
        rung; the pair is then computed in i's row, the narrower clip queried
        against the wider one's group, as the dense matrix does) or as wide
        and later (j > i). Every pair has exactly one owner, so offering each
        owned distance to both rows computes every pair once across blocks
        and shards, with exactly symmetric results.
        """
        check_cancel(self.cancel)
        if self._inputs is not None:
            d = self.block(r0, r1, 0)
        else:
            # Only the pairs a row owns: the row against its own and wider
            # groups (no index of the block's rows queried by narrower clips).
            d = self._whole_block(r0, r1, 0, narrow_only=True)
        rows = np.arange(r0, r1)[:, None]
        cols = np.arange(self.n)[None, :]
        if self._inputs is not None:
            mine = cols > rows
        else:
            wr, wc = self._widths[rows], self._widths[cols]
            mine = (wc > wr) | ((wc == wr) & (cols > rows))
        d[~mine] = np.nan
        return d

    def block(self, r0: int, r1: int, c0: int) -> np.ndarray:
        """(r1 - r0, N - c0) float64: distances from clips r0..r1-1 to clips c0..N-1 (0 to itself)."""
        import torch

        if not (0 <= r0 < r1 <= self.n and 0 <= c0 < self.n):
            raise ValueError(f"rows {r0}..{r1}, columns from {c0}: outside the {self.n} clips")
        check_cancel(self.cancel)
        b = r1 - r0
        if self._inputs is not None:
            index = self._build(("all", c0), lambda: self._inputs[c0:])
            q = torch.from_numpy(np.ascontiguousarray(self._inputs[r0:r1]))
            out = index.distances(q).reshape(b, self.n - c0).numpy().astype(np.float64, copy=True)
        else:
            out = self._whole_block(r0, r1, c0)
        rows = np.arange(r0, r1)
        own = rows >= c0
        out[np.flatnonzero(own), rows[own] - c0] = 0.0
        return out

    def _build(self, key, specs):
        """The index of ``specs()``; the ones over every clip (column 0 on) are kept for the next block."""
        from perceptlab.metrics.pairwise import build_index

        index = self._indexes.get(key)
        if index is None:
            index = build_index(specs(), self.metric_name, device=self.device,
                                memory_budget_mb=self.memory_budget_mb, cancel=self.cancel)
            if key[1] == 0:
                self._indexes[key] = index
        return index

    def _whole_block(self, r0: int, r1: int, c0: int, narrow_only: bool = False) -> np.ndarray:
        """Whole clips, each pair at the compared width of its longer clip.

        For each rung w: the block's rows no longer than w against the
        columns of width w (an index of those columns), and the block's rows
        of width w against every shorter column padded to w (an index of
        those rows, queried by the shorter clips). Either way the index holds
        the longer clip of the pair, as in the dense matrix.
        """
        import torch

        from perceptlab.metrics.pairwise import build_index

        widths = self._widths
        rows = np.arange(r0, r1)
        out = np.zeros((r1 - r0, self.n - c0), dtype=np.float64)
        for w in self._rungs:
            check_cancel(self.cancel)
            cols = c0 + np.flatnonzero(widths[c0:] == w)
            near = rows[widths[rows] <= w]
            # Queries padded to w go in chunks of a quarter of the budget.
            chunk = max(1, int(self.memory_budget_mb * _MB // (4 * 4 * self._images[0].shape[0] * w)))
            if near.size and cols.size:
                index = self._build((w, c0), lambda: _stack([self._images[j] for j in cols], w))
                for s0 in range(0, near.size, chunk):
                    check_cancel(self.cancel)
                    part = near[s0 : s0 + chunk]
                    q = torch.from_numpy(_stack([self._images[i] for i in part], w))
                    out[np.ix_(part - r0, cols - c0)] = index.distances(q).reshape(part.size, cols.size).numpy()
            own = rows[widths[rows] == w] if not narrow_only else rows[:0]
            shorter = c0 + np.flatnonzero(widths[c0:] < w)
            if own.size and shorter.size:
                index = build_index(_stack([self._images[i] for i in own], w), self.metric_name,
                                    device=self.device, memory_budget_mb=self.memory_budget_mb,
                                    cancel=self.cancel)
                for s0 in range(0, shorter.size, chunk):
                    check_cancel(self.cancel)
                    part = shorter[s0 : s0 + chunk]
                    q = torch.from_numpy(_stack([self._images[j] for j in part], w))
                    block = index.distances(q).reshape(part.size, own.size).numpy()
                    out[np.ix_(own - r0, part - c0)] = block.T
        return out


def top_k(block: np.ndarray, k: int, r0: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of each row of a (B, N) slab whose rows are r0..r0+B-1.

    The row's own clip is left out; equal distances keep the lower column
    first (a stable sort). Returns (B, k) int64 indices and (B, k) float64
    distances.
    """
    b, n = block.shape
    if not 1 <= k <= n - 1:
        raise ValueError(f"k={k}: must be between 1 and {n - 1} (the other clips)")
    d = np.array(block, dtype=np.float64, copy=True)
    d[np.arange(b), np.arange(r0, r0 + b)] = np.inf
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(d, order, axis=1)


@dataclass
class KnnGraph:
    """Each clip's ``k`` nearest other clips under one metric.

    Attributes
    ----------
    indices : numpy.ndarray
        (N, K) int64 row positions of the neighbours, closest first.
    distances : numpy.ndarray
        (N, K) float64.
    clip_ids : numpy.ndarray
        (N,) int64 library ids of the rows.
    names, labels, paths : list of str
    meta : dict
        metric, k, library, feature config hash, excerpt.
    """

    indices: np.ndarray
    distances: np.ndarray
    clip_ids: np.ndarray
    names: list
    labels: list
    paths: list
    meta: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def rows_json(self):
        """One dict per clip: its id, name, label and neighbours (closest first)."""
        for i in range(len(self)):
            yield {"id": int(self.clip_ids[i]), "name": self.names[i], "label": self.labels[i],
                   "neighbours": [{"rank": r + 1, "id": int(self.clip_ids[j]), "name": self.names[j],
                                   "distance": float(self.distances[i, r])}
                                  for r, j in enumerate(self.indices[i])]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the graph as .npz, .csv or .jsonl (by suffix), atomically (temp + rename)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in GRAPH_SUFFIXES:
            raise ValueError(f"{path}: a k-NN graph is written as {', '.join(GRAPH_SUFFIXES)}")

        def write(f):
            if suffix == ".npz":
                np.savez(f, indices=self.indices.astype(np.int64), distances=self.distances.astype(np.float64),
                         clip_ids=self.clip_ids.astype(np.int64), names=np.array(self.names, dtype=str),
                         labels=np.array(["" if x is None else x for x in self.labels], dtype=str),
                         paths=np.array(self.paths, dtype=str), meta=np.array(json.dumps(self.meta)))
            elif suffix == ".csv":
                import csv
                import io

                text = io.TextIOWrapper(f, encoding="utf-8", newline="")
                w = csv.writer(text)
                w.writerow(["clip_id", "name", "rank", "neighbour_id", "neighbour_name", "distance"])
                for i in range(len(self)):
                    for r, j in enumerate(self.indices[i]):
                        w.writerow([int(self.clip_ids[i]), self.names[i], r + 1, int(self.clip_ids[j]),
                                    self.names[j], repr(float(self.distances[i, r]))])
                text.flush()
                text.detach()
            else:
                for row in self.rows_json():
                    f.write((json.dumps(row) + "\n").encode("utf-8"))

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KnnGraph":
        """Read a graph written as .npz."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["indices"], z["distances"], z["clip_ids"], [str(x) for x in z["names"]],
                           [str(x) or None for x in z["labels"]], [str(x) for x in z["paths"]],
                           json.loads(str(z["meta"])))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a k-NN graph .npz ({exc})") from None


def graph_meta(library: Library, metric_name: str, k: int, config: FeatureConfig, excerpt: str,
               n_frames: int) -> dict:
    return {"metric": metric_name, "k": int(k), "library": str(Path(library.path).resolve()),
            "feature_config": config.hash, "excerpt": excerpt,
            "excerpt_frames": n_frames if excerpt == "centre" else None}


def make_graph(engine: RowEngine, indices: np.ndarray, distances: np.ndarray, k: int) -> KnnGraph:
    clips = engine.clips
    return KnnGraph(indices, distances, np.array([c.id for c in clips], dtype=np.int64),
                    [c.name for c in clips], [c.label for c in clips], [c.path for c in clips],
                    graph_meta(engine.library, engine.metric_name, k, engine.config, engine.excerpt,
                               engine.n_frames))


def merge_top_k(idx_a: np.ndarray, dist_a: np.ndarray, idx_b: np.ndarray, dist_b: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row by row, the ``k`` closest of two candidate lists (index -1: no candidate, at inf).

    Equal distances keep the lower index first, the rule of :func:`top_k`.
    """
    idx = np.concatenate([idx_a, idx_b], axis=1)
    dist = np.concatenate([dist_a, dist_b], axis=1)
    by_index = np.argsort(np.where(idx < 0, np.iinfo(np.int64).max, idx), axis=1, kind="stable")
    idx, dist = np.take_along_axis(idx, by_index, 1), np.take_along_axis(dist, by_index, 1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def owned_knn(engine: RowEngine, k: int, r0: int, r1: int, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None, done_before: int = 0,
              total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The closest ``k`` candidates that the pairs owned by rows r0..r1-1 give every row.

    Each pair is owned by one row (:meth:`RowEngine.owned`) and offered as a
    candidate to both of its clips. Returns (N, k) indices and distances
    (index -1 where a row has fewer candidates so far); the candidates of
    all rows' pairs merged (:func:`merge_top_k`) are the graph.
    ``progress`` counts rows.
    """
    n = engine.n
    total = n if total is None else total
    idx = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf)
    step = engine.block_rows()
    for b0 in range(r0, r1, step):
        check_cancel(cancel)
        b1 = min(b0 + step, r1)
        u = engine.owned(b0, b1)  # (B, N), NaN where another row owns the pair
        u[np.isnan(u)] = np.inf
        kk = min(k, n)
        order = np.argsort(u, axis=1, kind="stable")[:, :kk]
        idx[b0:b1], dist[b0:b1] = merge_top_k(idx[b0:b1], dist[b0:b1], order, np.take_along_axis(u, order, 1), k)
        ut = u.T  # (N, B): the block's rows as candidates of every clip
        order = np.argsort(ut, axis=1, kind="stable")[:, : min(k, b1 - b0)]
        idx, dist = merge_top_k(idx, dist, order + b0, np.take_along_axis(ut, order, 1), k)
        report(progress, done_before + b1 - r0, total)
    idx[~np.isfinite(dist)] = -1
    return idx, dist


def owned_rows(engine: RowEngine, r0: int, r1: int, progress: ProgressFn | None = None,
               cancel: CancelFn | None = None, done_before: int = 0, total: int | None = None) -> np.ndarray:
    """(r1 - r0, N): the distances rows r0..r1-1 own, NaN elsewhere (see :func:`place_owned`)."""
    total = engine.n if total is None else total
    out = np.empty((r1 - r0, engine.n), dtype=np.float64)
    step = engine.block_rows()
    for b0 in range(r0, r1, step):
        check_cancel(cancel)
        b1 = min(b0 + step, r1)
        out[b0 - r0 : b1 - r0] = engine.owned(b0, b1)
        report(progress, done_before + b1 - r0, total)
    return out


def place_owned(m, r0: int, rows: np.ndarray) -> None:
    """Write owned rows r0.. (NaN: not owned) and their mirror into the (N, N) array or memory map ``m``."""
    r1 = r0 + rows.shape[0]
    have = ~np.isnan(rows)
    m[r0:r1] = np.where(have, rows, m[r0:r1])
    m[:, r0:r1] = np.where(have.T, rows.T, m[:, r0:r1])


def dense_matrix(engine: RowEngine, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> np.ndarray:
    """The (N, N) matrix from owned rows: every pair once, exactly symmetric, zero diagonal."""
    m = np.zeros((engine.n, engine.n), dtype=np.float64)
    step = engine.block_rows()
    for b0 in range(0, engine.n, step):
        b1 = min(b0 + step, engine.n)
        place_owned(m, b0, owned_rows(engine, b0, b1, progress, cancel, done_before=b0))
    np.fill_diagonal(m, 0.0)
    return m


def knn_graph(library: Library, metric_name: str, k: int, clips: Sequence[Clip] | None = None,
              config: FeatureConfig = FeatureConfig(), excerpt: str = "whole",
              n_frames: int = DEFAULT_EXCERPT_FRAMES, device: str | None = None,
              memory_budget_mb: float = 512, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None) -> KnnGraph:
    """The k-NN graph of ``clips`` (default: every good clip) under one metric, in one process.

    ``progress(rows_done, n)`` is called after each block of rows and
    ``cancel`` is polled between blocks (raising
    :class:`perceptlab.tasks.Cancelled`). For many processes or machines see
    :mod:`perceptlab.analysis.sharding`.
    """
    engine = RowEngine(library, metric_name, clips, config, excerpt, n_frames, device, memory_budget_mb,
                       cancel=cancel)
    if not 1 <= k <= engine.n - 1:
        raise ValueError(f"k={k}: must be between 1 and {engine.n - 1} (the other clips of {library.path})")
    report(progress, 0, engine.n)
    idx, dist = owned_knn(engine, k, 0, engine.n, progress, cancel)
    return make_graph(engine, idx, dist, k)


def dense_top_k(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-NN graph of a dense (N, N) matrix, by the same tie rule (for checks and small sets)."""
    return top_k(np.asarray(d), k, 0)
