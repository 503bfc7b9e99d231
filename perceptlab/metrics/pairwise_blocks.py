"""Shared plumbing of the all-pairs engines and indexes of :mod:`perceptlab.metrics.pairwise`.

Input preparation and validation (:func:`prepare_specs`, also used by the
calibrated NLPD variants), blocks of rows sized to a memory budget, progress
and cancellation between blocks (:mod:`perceptlab.tasks`), the finished
symmetric float64 matrix, squared Euclidean distances through a float64 Gram
matrix (MSE and every NLPD level use it), and the generic engine for a metric
without an all-pairs engine of its own (batched calls of its pair function).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch

from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

from .validation import check_image_batch

ArrayLike = Union[torch.Tensor, np.ndarray]
DeviceLike = Union[str, torch.device, None]

_MB = 1 << 20


class _Steps:
    """Progress and cancellation between chunks of work."""

    def __init__(self, total: int, progress: Optional[ProgressFn], cancel: Optional[CancelFn]):
        self.total = max(int(total), 1)
        self.done = 0
        self.progress = progress
        self.cancel = cancel
        check_cancel(cancel)
        report(progress, 0, self.total)

    def step(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        report(self.progress, self.done, self.total)
        check_cancel(self.cancel)


def _to_tensor(specs: ArrayLike, device: DeviceLike) -> torch.Tensor:
    x = specs if isinstance(specs, torch.Tensor) else torch.as_tensor(np.asarray(specs))
    if device is not None:
        x = x.to(device)
    return x


def prepare_specs(
    specs: ArrayLike, device: DeviceLike, validate: bool, metric: str, min_side: int = 1
) -> torch.Tensor:
    """A batch of spectrograms as a tensor on ``device``, checked.

    Parameters
    ----------
    specs : torch.Tensor or numpy.ndarray
        (N, 1, F, T) spectrograms in [0, 1].
    device : str or torch.device, optional
        Where the tensor goes; None keeps it where it is.
    validate : bool
        Also check the values (NaN/inf, range), not only rank and dtype.
    metric : str
        The metric's name, for the error messages.
    min_side : int
        The smallest side (mel bins or frames) the metric can take.

    Raises
    ------
    ValueError
        Bad rank, dtype or values, or a side shorter than ``min_side``.
    """
    x = _to_tensor(specs, device)
    check_image_batch(x, "specs", check_values=validate)
    side = min(x.shape[-2], x.shape[-1])
    if side < min_side:
        raise ValueError(
            f"{metric}: spectrograms of {x.shape[-2]} x {x.shape[-1]} are too small; both sides "
            f"must be at least {min_side} pixels"
        )
    return x


def _budget_rows(budget_bytes: int, bytes_per_row: int, cap: int) -> int:
    return int(max(1, min(cap, budget_bytes // max(bytes_per_row, 1))))


def _chunks(n: int, size: int) -> List[Tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _finish(d: torch.Tensor) -> torch.Tensor:
    """Symmetric float64 CPU matrix with an exact zero diagonal."""
    d = d.to("cpu", torch.float64)
    d = torch.triu(d, 1)
    d = d + d.T
    return d


# --------------------------------------------------------------------------
# Squared Euclidean distances through a float64 Gram matrix
# --------------------------------------------------------------------------


def _sq_dists_plan(n: int, dim: int, budget_bytes: int) -> List[Tuple[int, int]]:
    # Two float64 blocks of rows plus their (b, b) product must fit.
    b = _budget_rows(budget_bytes, 2 * dim * 8 + 3 * n * 8, n)
    return _chunks(n, b)


def _sq_dists(a: torch.Tensor, blocks: List[Tuple[int, int]], steps: _Steps) -> torch.Tensor:
    """Upper triangle of ||a_i - a_j||^2, float64, on a's device.

    a : (N, D). Blocks of rows are promoted to float64 before the GEMM so that
    ||a||^2 + ||b||^2 - 2 a.b does not lose near-duplicates to cancellation.
    """
    n = a.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64, device=a.device)
    for bi, (i0, i1) in enumerate(blocks):
        ai = a[i0:i1].to(torch.float64)  # (bi, D)
        ni = ai.square().sum(1)
        for j0, j1 in blocks[bi:]:
            aj = ai if j0 == i0 else a[j0:j1].to(torch.float64)  # (bj, D)
            nj = ni if j0 == i0 else aj.square().sum(1)
            s = ni[:, None] + nj[None, :] - 2.0 * (ai @ aj.T)  # (bi, bj)
            out[i0:i1, j0:j1] = s.clamp_min_(0.0)
            steps.step()
    return out


def _prepare_any(specs: ArrayLike, m: Any, device: DeviceLike) -> torch.Tensor:
    if m.input_kind == "vector":
        x = _to_tensor(specs, device)
        if x.dim() != 2 or not x.is_floating_point():
            raise ValueError(
                f"{m.name}: expected (N, D) floating vectors, got shape {tuple(x.shape)} {x.dtype}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{m.name}: vectors contain NaN or inf")
        return x
    return prepare_specs(specs, device, True, m.name, m.min_side)


def _generic_matrix(
    metric: Any,
    x: torch.Tensor,
    budget_bytes: int,
    progress: Optional[ProgressFn],
    cancel: Optional[CancelFn],
) -> torch.Tensor:
    """Upper triangle by batched calls of ``metric.fn`` (one row of pairs at a time)."""
    n = x.shape[0]
    per_pair = 8 * x[0].numel() * x.element_size()
    block = _budget_rows(budget_bytes, per_pair, 4096)
    row_blocks = [_chunks(n - i - 1, block) for i in range(n - 1)]
    steps = _Steps(sum(len(r) for r in row_blocks), progress, cancel)
    d = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i in range(n - 1):
            for b0, b1 in row_blocks[i]:
                j0, j1 = i + 1 + b0, i + 1 + b1
                a = x[i : i + 1].expand((j1 - j0,) + tuple(x.shape[1:]))
                d[i, j0:j1] = metric.fn(a, x[j0:j1]).to(torch.float64)
                steps.step()
    return _finish(d)
