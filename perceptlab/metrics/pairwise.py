"""All-pairs distance matrices and nearest-neighbour queries over a set of clips.

Calling a pair metric N^2 times repeats the per-clip work N times. The
engines here do the per-clip work once and keep only the truly pairwise part
in the loop:

- MSE: ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, one GEMM (float64).
- NLPD: the normalised pyramid of every clip once; per level the squared
  distance is again a Gram-matrix identity, one float64 GEMM per level. The
  float64 accumulation matters: near-duplicate clips differ by ~1e-4 in RMS
  on top of norms ~1, and float32 cancellation would swamp that.
- MS-SSIM: local means and variances of every clip at every scale once; per
  pair only the cross term G * (x y) and the map arithmetic remain, computed
  for blocks of pairs at a time.

Queries against a fixed set use an index object (:class:`NLPDIndex`,
:class:`MSEIndex`, :class:`MSSSIMIndex`, :class:`GenericIndex`, each a
:class:`~perceptlab.metrics.pairwise_index.DistanceIndex`) that caches
those per-clip transforms; an NLPD or MSE query is then one pass of direct
differences over the cached coefficients (``torch.cdist`` without the GEMM
shortcut, which is exact in float32 because nothing cancels).

Long work follows :mod:`perceptlab.tasks`: ``progress(done, total)`` is
called between chunks and ``cancel()`` is polled there; cancelling raises
:class:`perceptlab.tasks.Cancelled`.

Every matrix comes back as an (N, N) float64 CPU tensor, symmetric with an
exact zero diagonal, whatever device did the work.

The shared blocks, budgets, progress steps and the generic engine (a metric
without an all-pairs engine of its own) are in
:mod:`perceptlab.metrics.pairwise_blocks`, the per-clip statistics of the
NLPD and MS-SSIM engines in :mod:`~perceptlab.metrics.pairwise_nlpd` and
:mod:`~perceptlab.metrics.pairwise_msssim`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import torch

from perceptlab.tasks import CancelFn, Cancelled, ProgressFn

from . import ssim as _ms
from .metric import Metric
from .pairwise_blocks import (
    _MB,
    ArrayLike,
    DeviceLike,
    _budget_rows,
    _chunks,
    _finish,
    _generic_matrix,
    _prepare_any,
    prepare_specs,
    _sq_dists,
    _sq_dists_plan,
    _Steps,
    _to_tensor,
)
from .pairwise_index import DistanceIndex, _ImageIndexBase
from .pairwise_msssim import _msssim_block, _msssim_chunk, _MSSSIMStats
from .pairwise_nlpd import _nlpd_chunk, _nlpd_coefficients
from .pyramid import N_LEVELS, NLPDParams, nlpd_transform

__all__ = [
    "Cancelled",
    "GenericIndex",
    "MSEIndex",
    "MSSSIMIndex",
    "NLPDIndex",
    "build_index",
    "distance_matrix",
    "mse_matrix",
    "msssim_matrix",
    "nearest",
    "nlpd_matrix",
]


# --------------------------------------------------------------------------
# Built-in all-pairs engines
# --------------------------------------------------------------------------


def mse_matrix(
    specs: ArrayLike,
    *,
    memory_budget_mb: float = 512,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    device: DeviceLike = None,
    validate: bool = True,
) -> torch.Tensor:
    """All-pairs MSE, (N, N) float64 CPU tensor. See :func:`distance_matrix`."""
    x = prepare_specs(specs, device, validate, "mse")
    n = x.shape[0]
    flat = x.reshape(n, -1)  # (N, F*T)
    blocks = _sq_dists_plan(n, flat.shape[1], int(memory_budget_mb * _MB))
    steps = _Steps(len(blocks) * (len(blocks) + 1) // 2, progress, cancel)
    with torch.no_grad():
        sq = _sq_dists(flat, blocks, steps)
    return _finish(sq / flat.shape[1])


def nlpd_matrix(
    specs: ArrayLike,
    *,
    params: Optional[NLPDParams] = None,
    memory_budget_mb: float = 512,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    device: DeviceLike = None,
    validate: bool = True,
) -> torch.Tensor:
    """All-pairs NLPD, (N, N) float64 CPU tensor. See :func:`distance_matrix`.

    Each clip is transformed once; per level k the squared RMS difference
    (|y_a|^2 + |y_b|^2 - 2 y_a.y_b) / n_k comes from one float64 GEMM.
    ``params`` (:class:`~perceptlab.metrics.pyramid.NLPDParams`) are the
    normalisation's sigmas and taps, e.g. a calibrated variant's; None: the
    published values.
    """
    x = prepare_specs(specs, device, validate, "nlpd")
    n = x.shape[0]
    budget = int(memory_budget_mb * _MB)
    chunk = _nlpd_chunk(x, budget)
    sizes = []
    h, w = x.shape[-2], x.shape[-1]
    for _ in range(N_LEVELS):
        sizes.append(h * w)
        h, w = (h + 1) // 2, (w + 1) // 2
    plans = [_sq_dists_plan(n, s, budget) for s in sizes]
    total = len(_chunks(n, chunk)) + sum(len(p) * (len(p) + 1) // 2 for p in plans)
    steps = _Steps(total, progress, cancel)
    coeffs = _nlpd_coefficients(x, budget, steps, chunk, params)
    with torch.no_grad():
        d = torch.zeros(n, n, dtype=torch.float64, device=x.device)
        for c, plan in zip(coeffs, plans):
            sq = _sq_dists(c, plan, steps)  # (N, N) upper triangle
            d += torch.sqrt(sq / c.shape[1])
        d /= N_LEVELS
    return _finish(d)


def msssim_matrix(
    specs: ArrayLike,
    *,
    cs_floor: float = _ms.CS_FLOOR,
    memory_budget_mb: float = 512,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    device: DeviceLike = None,
    validate: bool = True,
) -> torch.Tensor:
    """All-pairs 1 - MS-SSIM, (N, N) float64 CPU tensor. See :func:`distance_matrix`.

    Local means and variances of each clip are computed once per scale; the
    pair loop only filters the products x_a x_b, in blocks of pairs.
    """
    if not cs_floor > 0:
        raise ValueError(f"msssim: cs_floor must be > 0 (got {cs_floor})")
    x = prepare_specs(specs, device, validate, "msssim", _ms.MIN_SIDE)
    _ms.check_msssim_size(x.shape[-2], x.shape[-1])
    n = x.shape[0]
    budget = int(memory_budget_mb * _MB)
    chunk = _msssim_chunk(x, budget)
    block = _msssim_block(x, budget)
    row_blocks = [_chunks(n - i - 1, block) for i in range(n - 1)]
    total = len(_chunks(n, chunk)) + sum(len(r) for r in row_blocks)
    steps = _Steps(total, progress, cancel)
    stats = _MSSSIMStats(x, chunk)
    steps.step(len(_chunks(n, chunk)))
    d = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i in range(n - 1):
            for b0, b1 in row_blocks[i]:
                j0, j1 = i + 1 + b0, i + 1 + b1
                d[i, j0:j1] = stats.row(stats, i, j0, j1, cs_floor)
                steps.step()
    return _finish(d)


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def distance_matrix(
    specs: ArrayLike,
    metric: Any,
    *,
    memory_budget_mb: float = 512,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Distances between all pairs of a set of clips.

    Parameters
    ----------
    specs : torch.Tensor or numpy.ndarray
        (N, 1, F, T) spectrograms in [0, 1], all the same shape (or (N, D)
        vectors for a metric whose ``input_kind`` is ``"vector"``).
    metric : str or Metric
        A registered metric name (``"mse"``, ``"nlpd"``, ``"msssim"``, ...)
        or a :class:`~perceptlab.metrics.registry.Metric`.
    memory_budget_mb : float
        Upper bound for the working blocks of the computation (the cached
        per-clip transforms, ~1.3-4x the size of ``specs``, come on top).
    progress : callable, optional
        ``progress(done, total)``, called between chunks.
    cancel : callable, optional
        ``cancel() -> bool``, polled between chunks; True raises
        :class:`~perceptlab.tasks.Cancelled`.
    device : str or torch.device, optional
        Where to compute (e.g. ``"cuda"``); default: where ``specs`` is.

    Returns
    -------
    torch.Tensor
        (N, N) float64 on the CPU, symmetric, zero diagonal; entry (i, j)
        equals ``metric.fn(specs[i:i+1], specs[j:j+1])`` to ~1e-6.

    Raises
    ------
    ValueError
        Unknown metric, bad input (rank, NaN/inf, range, too small).
    Cancelled
        When ``cancel()`` returned True.
    """
    m = Metric.named(metric)
    kwargs = dict(memory_budget_mb=memory_budget_mb, progress=progress, cancel=cancel, device=device)
    if m.pairwise is not None:
        return m.pairwise(specs, **kwargs)
    x = _prepare_any(specs, m, device)
    return _generic_matrix(m, x, int(memory_budget_mb * _MB), progress, cancel)


class MSEIndex(_ImageIndexBase):
    """Cached flattened spectrograms; a query is one pass of direct differences."""

    def __init__(
        self,
        specs: ArrayLike,
        *,
        memory_budget_mb: float = 512,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[CancelFn] = None,
        device: DeviceLike = None,
        validate: bool = True,
    ):
        super().__init__(specs, "mse", device, validate)
        steps = _Steps(1, progress, cancel)
        self._flat = self._x.reshape(self.n, -1)  # (N, F*T)
        del self._x
        steps.step()

    def _distances(self, q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            qf = q.reshape(q.shape[0], -1)
            # Direct differences (no ||a||^2 + ||b||^2 - 2ab): exact in float32.
            e = torch.cdist(qf, self._flat, compute_mode="donot_use_mm_for_euclid_dist")  # (Q, N)
            return e.to(torch.float64).square() / qf.shape[1]


class NLPDIndex(_ImageIndexBase):
    """Cached normalised pyramids of N clips for fast NLPD queries.

    Holds, per level k, an (N, F_k * T_k) matrix of the clips' normalised
    coefficients (about 1.33x the size of the spectrograms). A query is
    transformed once and compared with every clip by direct differences per
    level (``torch.cdist``, exact in float32).

    Parameters
    ----------
    specs : array
        (N, 1, F, T) spectrograms in [0, 1].
    params : NLPDParams, optional
        The normalisation's sigmas and taps (a calibrated variant), for the
        clips and every query; None: the published values.
    memory_budget_mb, progress, cancel, device
        As in :func:`distance_matrix` (progress counts transform chunks).
    validate : bool
        Check ``specs`` and later queries for NaN/inf and range.
    """

    params: Optional[NLPDParams] = None

    def __init__(
        self,
        specs: ArrayLike,
        *,
        params: Optional[NLPDParams] = None,
        memory_budget_mb: float = 512,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[CancelFn] = None,
        device: DeviceLike = None,
        validate: bool = True,
    ):
        super().__init__(specs, "nlpd", device, validate)
        self.params = params
        budget = int(memory_budget_mb * _MB)
        chunk = _nlpd_chunk(self._x, budget)
        steps = _Steps(len(_chunks(self.n, chunk)), progress, cancel)
        self.levels = _nlpd_coefficients(self._x, budget, steps, chunk, params)  # 6 x (N, n_k)
        del self._x

    @classmethod
    def from_coefficients(
        cls, levels: Sequence[torch.Tensor], shape: Tuple[int, int], params: Optional[NLPDParams] = None
    ) -> "NLPDIndex":
        """Build an index from already transformed clips (6 tensors (N, n_k)), e.g. a cache.

        ``params``: those the clips were transformed with (None: the published values).
        """
        self = cls.__new__(cls)
        self.metric_name = "nlpd"
        self.params = params
        self.levels = [lv.contiguous() for lv in levels]
        self.n = self.levels[0].shape[0]
        self.shape = (1,) + tuple(shape)
        self.device = self.levels[0].device
        self.dtype = self.levels[0].dtype
        self.validate = True
        return self

    def _distances(self, q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            qc = nlpd_transform(q, self.params, validate=False)  # 6 x (Q, 1, F_k, T_k)
            total = None
            for c, lv in zip(qc, self.levels):
                cf = c.reshape(c.shape[0], -1)
                e = torch.cdist(cf, lv, compute_mode="donot_use_mm_for_euclid_dist")  # (Q, N)
                r = e.to(torch.float64) / math.sqrt(cf.shape[1])
                total = r if total is None else total + r
            return total / N_LEVELS


class MSSSIMIndex(_ImageIndexBase):
    """Cached per-clip MS-SSIM statistics; a query costs one row of the all-pairs loop."""

    def __init__(
        self,
        specs: ArrayLike,
        *,
        cs_floor: float = _ms.CS_FLOOR,
        memory_budget_mb: float = 512,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[CancelFn] = None,
        device: DeviceLike = None,
        validate: bool = True,
    ):
        super().__init__(specs, "msssim", device, validate, _ms.MIN_SIDE)
        budget = int(memory_budget_mb * _MB)
        steps = _Steps(1, progress, cancel)
        self._stats = _MSSSIMStats(self._x, _msssim_chunk(self._x, budget))
        self._block = _msssim_block(self._x, budget)
        self.cs_floor = cs_floor
        del self._x
        steps.step()

    def _distances(self, q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            qs = _MSSSIMStats(q, q.shape[0])  # (Q, 1, F, T) -> per-scale stats
            rows = []
            for i in range(q.shape[0]):
                parts = [
                    self._stats.row(qs, i, j0, j1, self.cs_floor) for j0, j1 in _chunks(self.n, self._block)
                ]
                rows.append(torch.cat(parts))
            return torch.stack(rows)  # (Q, N)


class GenericIndex(DistanceIndex):
    """Index for a metric without its own: stores the clips, calls ``metric.fn`` in batches."""

    def __init__(
        self,
        specs: ArrayLike,
        metric: Any,
        *,
        memory_budget_mb: float = 512,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[CancelFn] = None,
        device: DeviceLike = None,
    ):
        self.metric = Metric.named(metric)
        self.metric_name = self.metric.name
        x = _prepare_any(specs, self.metric, device)
        steps = _Steps(1, progress, cancel)
        self._x = x
        self.n = x.shape[0]
        self.shape = tuple(x.shape[1:])
        self.device = x.device
        self.dtype = x.dtype
        self._block = _budget_rows(int(memory_budget_mb * _MB), 8 * x[0].numel() * x.element_size(), 4096)
        steps.step()

    def _queries(self, query: ArrayLike) -> Tuple[torch.Tensor, bool]:
        if self.metric.input_kind == "vector":
            q = _to_tensor(query, self.device)
            single = q.dim() == 1
            q = q.reshape(1, -1) if single else q
            if tuple(q.shape[1:]) != tuple(self.shape):
                raise ValueError(f"{self.metric_name}: query length {q.shape[-1]} != {self.shape[0]}")
            return q.to(self.dtype), single
        return super()._queries(query)

    def _distances(self, q: torch.Tensor) -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for i in range(q.shape[0]):
                parts = []
                for j0, j1 in _chunks(self.n, self._block):
                    a = q[i : i + 1].expand((j1 - j0,) + tuple(q.shape[1:]))
                    parts.append(self.metric.fn(a, self._x[j0:j1]).to(torch.float64))
                rows.append(torch.cat(parts))
        return torch.stack(rows)


def build_index(
    specs: ArrayLike,
    metric: Any,
    *,
    memory_budget_mb: float = 512,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    device: DeviceLike = None,
) -> DistanceIndex:
    """Prepare ``specs`` for repeated queries with ``metric`` (its own index type when it has one)."""
    m = Metric.named(metric)
    kwargs = dict(memory_budget_mb=memory_budget_mb, progress=progress, cancel=cancel, device=device)
    if m.index is not None:
        return m.index(specs, **kwargs)
    return GenericIndex(specs, m, **kwargs)


def nearest(
    query: ArrayLike,
    specs: Union[ArrayLike, DistanceIndex],
    metric: Any = None,
    k: int = 10,
    *,
    exclude: Optional[Sequence[int]] = None,
    memory_budget_mb: float = 512,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    device: DeviceLike = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The k clips of ``specs`` closest to ``query``.

    Parameters
    ----------
    query : array
        One clip: (F, T), (1, F, T) or (1, 1, F, T).
    specs : array or DistanceIndex
        (N, 1, F, T) spectrograms, or an index from :func:`build_index`
        (then ``metric`` may be omitted). For repeated queries build the
        index once.
    metric : str or Metric
        The metric (ignored when ``specs`` is an index).
    k : int
        Number of neighbours.
    exclude : sequence of int, optional
        Positions to leave out (e.g. the query's own).

    Returns
    -------
    indices : torch.Tensor
        (k,) int64, closest first.
    distances : torch.Tensor
        (k,) float64.
    """
    if isinstance(specs, DistanceIndex):
        index = specs
    else:
        if metric is None:
            raise ValueError("nearest() needs a metric when specs is not an index")
        index = build_index(
            specs, metric, memory_budget_mb=memory_budget_mb, progress=progress, cancel=cancel, device=device
        )
    return index.nearest(query, k, exclude=exclude)
