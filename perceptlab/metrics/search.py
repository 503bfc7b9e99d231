"""Nearest-neighbour search over many whole clips: exact, or in two stages.

Whole clips differ in length. The comparison rule (see
:mod:`perceptlab.audio.features`) pads both images of a pair with silence to
the pair's :func:`~perceptlab.audio.features.compared_width`, so the exact
distances from one query are computed per group of clips sharing a pair
width (:func:`whole_distances`, the same rule and numbers as
:func:`perceptlab.analysis.neighbours.ranking`).

Two stages (:func:`two_stage`)
------------------------------
1. Candidates. Every clip has a *sketch* (:func:`sketch`, 1,024 numbers
   for 128 mel bands), kept in the index and searched with matrix-vector
   products over its memory map:

   - the pooled image: the clip padded with silence (or cut) to
     :data:`SKETCH_FRAMES` frames and average-pooled to
     :data:`SKETCH_SHAPE` cells (8 bands x 8 frames). Both images of a pair
     are padded with silence, so their summed squared difference is about
     ``cell area * |pooled_a - pooled_b|^2`` (a lower bound, by Jensen)
     whatever the pair width; divided by ``F * pair width`` (exact, from
     the clips' lengths) it estimates the pair's MSE;
   - pyramid projections: the clip's normalised Laplacian pyramid (NLPD's
     transform), with at least :data:`PYRAMID_MARGIN` frames of silence
     after the clip so that the edge the pair's padding puts at its end is
     there, each level projected to :data:`PYRAMID_DIMS` numbers by a fixed
     random Gaussian matrix (Johnson-Lindenstrauss: squared distances
     between projections estimate the level's summed squared differences).
     ``mean over levels of sqrt(estimate / level pixels at the pair width)``
     estimates NLPD, and serves MS-SSIM too (both weigh local structure
     relative to local contrast; pooled MSE ranks MS-SSIM worse).

   The ``budget`` clips with the smallest estimates go on.
2. Re-ranking. The candidates are compared with the query by the real
   metric on their whole images, by exactly the rule of
   :func:`whole_distances`, and sorted. The result is the exact top-k
   whenever the true top-k are among the candidates (always when
   ``budget`` covers the set); the measured recall is in the README
   (``perceptlab bench neighbours``).

Only the first :data:`SKETCH_FRAMES` frames (about 6 s) of a clip shape its
sketch: in a library of long recordings the candidate stage judges their
openings and the exact stage the whole; raise the budget there.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import math

import numpy as np
import torch

from perceptlab.audio.features import _width_ladder, compared_width, pad_frames
from perceptlab.tasks import CancelFn, check_cancel

from .pyramid import N_LEVELS

__all__ = [
    "DEFAULT_BUDGET",
    "SKETCH_FRAMES",
    "SKETCH_SHAPE",
    "SketchSearch",
    "VectorSearch",
    "pair_widths",
    "sketch",
    "sketches",
    "two_stage",
    "whole_distances",
]

#: Frames of a clip that its sketch covers (about 5.9 s at 22,050 Hz, hop 512).
SKETCH_FRAMES = 256
#: Cells of a sketch: (mel, time).
SKETCH_SHAPE = (16, 32)
#: Candidates re-ranked by the real metric per query (per metric: see
#: :func:`default_budget`).
DEFAULT_BUDGET = 200
_BUDGETS = {"mse": 150, "nlpd": 60, "msssim": 60}
#: Numbers per pyramid level in the pyramid part of a sketch.
PYRAMID_DIMS = (128, 128, 96, 64, 64, 32)
#: Length of a whole sketch: the pooled image, then the pyramid projections.
SKETCH_DIM = SKETCH_SHAPE[0] * SKETCH_SHAPE[1] + sum(PYRAMID_DIMS)
#: Frames of silence at least added after a clip before its pyramid is
#: projected: the pair's padding puts an edge at the clip's end, which weighs
#: in NLPD; the clip's own width would hide it.
PYRAMID_MARGIN = 32
#: Bump when the sketch changes: indexes with another version are rebuilt.
SKETCH_VERSION = 2


def default_budget(metric_name: str) -> int:
    """How many candidates the exact stage re-ranks for ``metric_name``.

    Chosen from measured recall@10 against exact search (the bench's 5,000
    synthetic clips: MSE 0.988 at 20 candidates and 1.0 from 100, NLPD and
    MS-SSIM 0.996 at 20 and 1.0 from 40; real recordings rank their true top
    10 within the first 60-75 candidates), with room to spare where a
    candidate is cheap, and so that a query stays under 0.5 s on two CPU
    cores at 100,000 clips of up to 4 s: the candidate stage reads 512
    numbers per clip (about 40 ms at 100,000), the exact stage costs about
    0.15 ms per candidate for MSE, 1.3 ms for NLPD, 1.8 ms for MS-SSIM at
    128 x 64.
    """
    return _BUDGETS.get(metric_name, DEFAULT_BUDGET)


def pooled_sketch(image: np.ndarray) -> np.ndarray:
    """The (16 * 32,) float32 pooled part of a sketch (see the module notes)."""
    im = _check_sketch_image(image)
    f, t = im.shape
    fr, tr = SKETCH_SHAPE
    x = np.zeros((f, SKETCH_FRAMES), np.float32)
    x[:, : min(t, SKETCH_FRAMES)] = im[:, :SKETCH_FRAMES]
    if f % fr == 0:
        return x.reshape(fr, f // fr, tr, SKETCH_FRAMES // tr).mean(axis=(1, 3)).reshape(-1)
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x)[None, None], SKETCH_SHAPE)
    return pooled.reshape(-1).numpy()


def _check_sketch_image(image) -> np.ndarray:
    im = np.asarray(image, dtype=np.float32)
    if im.ndim != 2 or im.shape[1] < 1:
        raise ValueError(f"sketch: expected one clip's (F, T) image, got shape {im.shape}")
    if im.shape[0] < SKETCH_SHAPE[0]:
        raise ValueError(f"sketch: an image needs at least {SKETCH_SHAPE[0]} mel bands, got {im.shape[0]}")
    return im


def _level_sizes(n: int) -> list[int]:
    out = []
    for _ in range(N_LEVELS):
        out.append(n)
        n = (n + 1) // 2
    return out


_PROJECTIONS: dict = {}


def _projections(n_mels: int) -> list[torch.Tensor]:
    """Per pyramid level k a fixed Gaussian (F_k, W_k, r_k) / sqrt(r_k) projection (seeded)."""
    found = _PROJECTIONS.get(n_mels)
    if found is None:
        g = torch.Generator().manual_seed(20260101 + n_mels)
        found = [torch.randn(fk, wk, rk, generator=g) / math.sqrt(rk)
                 for fk, wk, rk in zip(_level_sizes(n_mels), _level_sizes(_pyramid_width(SKETCH_FRAMES)),
                                       PYRAMID_DIMS)]
        _PROJECTIONS[n_mels] = found
    return found


def _pyramid_width(frames: int) -> int:
    return compared_width(min(frames, SKETCH_FRAMES) + PYRAMID_MARGIN)


def pyramid_sketches(images: Sequence[np.ndarray]) -> np.ndarray:
    """(B, sum PYRAMID_DIMS) random projections of each image's normalised Laplacian pyramid.

    Each image (its first :data:`SKETCH_FRAMES` frames) is padded with at
    least :data:`PYRAMID_MARGIN` frames of silence to a compared width and
    transformed; level k's coefficients are projected to
    ``PYRAMID_DIMS[k]`` numbers whose squared distances estimate the
    level's summed squared differences (Johnson-Lindenstrauss). Images of
    one width are transformed together.
    """
    from .pyramid import nlpd_transform

    ims = [_check_sketch_image(im)[:, :SKETCH_FRAMES] for im in images]
    out = np.zeros((len(ims), sum(PYRAMID_DIMS)), np.float32)
    if not ims:
        return out
    proj = _projections(ims[0].shape[0])
    widths = np.array([_pyramid_width(im.shape[1]) for im in ims])
    with torch.no_grad():
        for w in np.unique(widths):
            rows = np.flatnonzero(widths == w)
            for s in range(0, len(rows), 64):
                part = rows[s : s + 64]
                x = torch.zeros(len(part), 1, ims[0].shape[0], int(w))
                for j, i in enumerate(part):
                    x[j, 0, :, : ims[i].shape[1]] = torch.from_numpy(ims[i])
                col = 0
                for c, r in zip(nlpd_transform(x, validate=False), proj):
                    wk = min(c.shape[-1], r.shape[1])
                    p = torch.einsum("bft,ftr->br", c[:, 0, :, :wk], r[:, :wk])
                    out[part, col : col + r.shape[2]] = p.numpy()
                    col += r.shape[2]
    return out


def sketch(image: np.ndarray) -> np.ndarray:
    """The (SKETCH_DIM,) float32 sketch of a whole (F, T) image: pooled image, then pyramid projections."""
    return np.concatenate([pooled_sketch(image), pyramid_sketches([image])[0]])


def sketches(images: Sequence[np.ndarray]) -> np.ndarray:
    """(B, SKETCH_DIM) sketches of several images (the pyramids batched by width)."""
    pooled = np.stack([pooled_sketch(im) for im in images]) if len(images) else np.zeros((0, 512), np.float32)
    return np.concatenate([pooled, pyramid_sketches(images)], axis=1)


def sketch_cell_area(n_mels: int) -> float:
    """Pixels per sketch cell (the factor from sketch distance to summed squared difference)."""
    return n_mels * SKETCH_FRAMES / (SKETCH_SHAPE[0] * SKETCH_SHAPE[1])


def pair_widths(query_frames: int, lengths: np.ndarray) -> np.ndarray:
    """(N,) compared widths of a query of ``query_frames`` against clips of ``lengths`` frames."""
    ladder = np.asarray(_width_ladder())
    longer = np.maximum(np.asarray(lengths, dtype=np.int64), int(query_frames))
    idx = np.searchsorted(ladder, longer, side="left")
    if longer.size and idx.max() >= len(ladder):
        raise ValueError(f"a clip of {int(longer.max())} frames is longer than perceptlab compares")
    return ladder[idx]


#: Reads many images at once: ``gather(positions, width)`` -> (R, 1, F, width)
#: float32, each image padded with silence (e.g. :meth:`ClipIndex.gather
#: <perceptlab.library.indexes.ClipIndex.gather>`).
GatherFn = Callable[[np.ndarray, int], np.ndarray]


def whole_distances(query: np.ndarray, images: Sequence[np.ndarray] | Callable[[int], np.ndarray] | None,
                    lengths: Sequence[int], metric_name: str, cancel: Optional[CancelFn] = None,
                    memory_budget_mb: float = 512, gather: Optional[GatherFn] = None) -> np.ndarray:
    """(N,) exact whole-clip distances from a (F, Tq) query image to N clips.

    Each pair is compared at its own width (the clips grouped by it, one
    index per group). ``images`` is a sequence of (F, T) images or a
    function ``i -> image``, read group by group; or ``gather`` reads a
    group at once (then ``images`` may be None).
    """
    if gather is None and images is None:
        raise ValueError("whole_distances: give the images (a sequence or i -> image) or a gather function")
    get = None if gather is not None else (images if callable(images) else images.__getitem__)
    lengths = np.asarray(lengths, dtype=np.int64)
    widths = pair_widths(query.shape[1], lengths)
    out = np.zeros(len(lengths), dtype=np.float64)
    for w in np.unique(widths):
        check_cancel(cancel)
        cols = np.flatnonzero(widths == w)
        if gather is not None:
            x = gather(cols, int(w))
            if x.shape != (len(cols), 1, query.shape[0], int(w)):
                raise ValueError(f"whole_distances: gather gave {tuple(x.shape)}, expected "
                                 f"{(len(cols), 1, query.shape[0], int(w))}")
        else:
            x = np.zeros((len(cols), 1, query.shape[0], int(w)), dtype=np.float32)  # (R, 1, F, w)
            for j, i in enumerate(cols):
                im = get(int(i))
                x[j, 0, :, : im.shape[1]] = im
        index = _index_for(x, metric_name, memory_budget_mb, cancel)
        q = pad_frames(np.asarray(query, np.float32), int(w))[None, None]
        out[cols] = index.distances(torch.from_numpy(q)).reshape(-1).numpy()
    return out


def _index_for(x: np.ndarray, metric_name: str, memory_budget_mb: float, cancel: Optional[CancelFn]):
    """The metric's index of x, without re-checking the values of images an index already checked."""
    from .pairwise import MSEIndex, MSSSIMIndex, NLPDIndex, build_index
    from .registry import get_metric

    m = get_metric(metric_name)
    if m.index in (MSEIndex, MSSSIMIndex, NLPDIndex):
        return m.index(x, memory_budget_mb=memory_budget_mb, cancel=cancel, validate=False)
    return build_index(x, metric_name, memory_budget_mb=memory_budget_mb, cancel=cancel)


class SketchSearch:
    """The candidate stage over N sketches (memory-mapped or not).

    Parameters
    ----------
    sketches : numpy.ndarray
        (N, D) float32 sketches (:func:`sketch`), e.g. an index's memory map.
    lengths : numpy.ndarray
        (N,) frames of each clip.
    n_mels : int
        Mel bands of the images.
    """

    def __init__(self, sketches: np.ndarray, lengths: np.ndarray, n_mels: int, chunk_rows: int = 1 << 14):
        self.sketches = sketches
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.n_mels = int(n_mels)
        self.chunk_rows = chunk_rows
        bounds = np.cumsum((0, SKETCH_SHAPE[0] * SKETCH_SHAPE[1]) + PYRAMID_DIMS)
        self.segments = list(zip(bounds[:-1], bounds[1:]))  # pooled, then level 0..5
        # An index keeps its sketches by dimension ((D, N), C order, seen here as its (N, D)
        # transpose): a segment's dimensions are then one contiguous run of the file.
        by_dim = sketches.T
        self._by_dim = by_dim if by_dim.flags["C_CONTIGUOUS"] else None
        # (N,) squared norm of each segment, computed when a query first needs that segment
        # (an MSE search never reads the pyramid part).
        self._norms: dict = {}

    @property
    def norms(self) -> np.ndarray:
        """(N, 7) squared norm of each sketch per segment (pooled, then pyramid levels 0-5)."""
        return np.stack([self._segment_norms(g) for g in range(len(self.segments))], axis=1)

    def _segment_norms(self, seg: int) -> np.ndarray:
        found = self._norms.get(seg)
        if found is None:
            a, b = self.segments[seg]
            found = np.empty(len(self.lengths), np.float32)
            for s in range(0, len(found), self.chunk_rows):  # in chunks: no (N, D) temporary
                part = self._rows(s, s + self.chunk_rows, a, b)
                found[s : s + part.shape[0]] = np.einsum("ij,ij->i", part, part)
            self._norms[seg] = found
        return found

    def _rows(self, s: int, e: int, a: int, b: int) -> np.ndarray:
        """Sketch dimensions a:b of rows s:e, (e - s, b - a), without copying a contiguous map."""
        return np.asarray(self.sketches[s:e, a:b])

    def _dots(self, qs: np.ndarray, seg: int) -> np.ndarray:
        """(N,) dot products of every sketch's segment with the query's."""
        a, b = self.segments[seg]
        if self._by_dim is not None:
            return (qs[a:b] @ self._by_dim[a:b]).astype(np.float32, copy=False)  # one pass over the run
        out = np.empty(len(self.lengths), np.float32)
        for s in range(0, len(out), self.chunk_rows):
            part = self._rows(s, s + self.chunk_rows, a, b)
            out[s : s + part.shape[0]] = part @ qs[a:b]
        return out

    def _sq(self, qs: np.ndarray, segments: Sequence[int]) -> np.ndarray:
        """(N, len(segments)) squared sketch distances per segment to a query sketch."""
        out = np.empty((len(self.lengths), len(segments)), np.float32)
        for j, seg in enumerate(segments):
            a, b = self.segments[seg]
            qn = np.float32(qs[a:b] @ qs[a:b])
            out[:, j] = self._segment_norms(seg) + qn - 2.0 * self._dots(qs, seg)
        return np.maximum(out, 0.0, out=out)

    def estimates(self, query: np.ndarray, metric_name: str = "mse") -> np.ndarray:
        """(N,) estimated distances of every clip to a (F, Tq) query image.

        MSE: the pooled sketch's summed squared difference over ``F *`` the
        pair width. NLPD and MS-SSIM: the NLPD estimate, mean over levels of
        sqrt(projected squared difference / the level's pixels at the pair
        width).
        """
        widths = pair_widths(query.shape[1], self.lengths)
        if metric_name == "mse":
            qs = np.concatenate([pooled_sketch(query), np.zeros(sum(PYRAMID_DIMS), np.float32)])
            sq = self._sq(qs, [0])[:, 0]
            return sq * sketch_cell_area(self.n_mels) / (self.n_mels * widths)
        qs = sketch(query)
        sq = self._sq(qs, list(range(1, len(self.segments))))  # (N, 6)
        out = np.zeros(len(self.lengths), np.float64)
        fk = _level_sizes(self.n_mels)
        wk = widths.astype(np.int64)
        for k in range(N_LEVELS):
            out += np.sqrt(sq[:, k] / (fk[k] * wk))
            wk = (wk + 1) // 2
        return out / N_LEVELS

    def candidates(self, query: np.ndarray, budget: int, allowed: Optional[np.ndarray] = None,
                   metric_name: str = "mse") -> np.ndarray:
        """Positions of the ``budget`` clips with the smallest estimates (among ``allowed``)."""
        est = self.estimates(query, metric_name)
        if allowed is not None:
            est = np.where(allowed, est, np.inf)
            n_ok = int(allowed.sum())
        else:
            n_ok = len(est)
        budget = min(int(budget), n_ok)
        if budget <= 0:
            return np.zeros(0, np.int64)
        if budget < len(est):
            part = np.argpartition(est, budget - 1)[:budget]
        else:
            part = np.arange(len(est))
        part = part[np.isfinite(est[part])]
        return np.sort(part)


def two_stage(query: np.ndarray, search: SketchSearch, image: Optional[Callable[[int], np.ndarray]],
              metric_name: str, budget: int, allowed: Optional[np.ndarray] = None, cancel: Optional[CancelFn] = None,
              gather: Optional[GatherFn] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Candidates by sketch, then the real metric on them.

    ``image(position)`` reads one clip's (F, T) image; ``gather(positions,
    width)`` (faster: e.g. an index's :meth:`~perceptlab.library.indexes.ClipIndex.gather`)
    reads the candidates of one compared width at once, padded.

    Returns
    -------
    positions : numpy.ndarray
        (C,) int64 positions of the re-ranked candidates, closest first
        (ties by position).
    distances : numpy.ndarray
        (C,) float64 exact distances.
    """
    cand = search.candidates(query, budget, allowed, metric_name)
    if not len(cand):
        return cand, np.zeros(0)
    check_cancel(cancel)
    if gather is not None:
        d = whole_distances(query, None, search.lengths[cand], metric_name, cancel,
                            gather=lambda cols, w: gather(cand[cols], w))
    else:
        d = whole_distances(query, lambda j: image(int(cand[j])), search.lengths[cand], metric_name, cancel)
    order = np.argsort(d, kind="stable")
    return cand[order], d[order]


class VectorSearch:
    """Cosine top-k over N z-scored vectors: one matrix-vector product, then the metric itself.

    The rows are normalised once (float32); a query ranks all of them by
    ``1 - cos`` with one product, and the best ``budget`` are re-scored by
    the metric's own function (so the distances returned are the metric's,
    and only float32 rounding can reorder near-ties at the cut).
    """

    def __init__(self, vectors: np.ndarray, metric_name: str):
        z = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(z, axis=1)
        self.z = z
        self.unit = z / np.where(norms > 0, norms, 1.0)[:, None]
        self.metric_name = metric_name

    def search(self, query: np.ndarray, k: int, allowed: Optional[np.ndarray] = None,
               budget: int = 64) -> Tuple[np.ndarray, np.ndarray]:
        """(positions, distances) of the k closest rows, closest first (ties by position)."""
        from .pairwise import build_index

        q = np.asarray(query, dtype=np.float32)
        qn = float(np.linalg.norm(q))
        est = 1.0 - self.unit @ (q / (qn if qn > 0 else 1.0))
        if allowed is not None:
            est = np.where(allowed, est, np.inf)
        n_ok = int(np.isfinite(est).sum())
        b = min(max(int(budget), int(k)), n_ok)
        if b <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        cand = np.sort(np.argpartition(est, b - 1)[:b] if b < len(est) else np.arange(len(est)))
        cand = cand[np.isfinite(est[cand])]
        d = build_index(self.z[cand], self.metric_name).distances(torch.from_numpy(q[None])).reshape(-1).numpy()
        order = np.argsort(d, kind="stable")[:k]
        return cand[order], d[order]
