"""What every index of :mod:`perceptlab.metrics.pairwise` does: checked queries, distances, top-k.

:class:`DistanceIndex` is a fixed set of N clips prepared for repeated
queries: a query is checked against the index's clips (rank, values, shape),
a subclass's ``_distances`` gives (Q, N) distances, and :meth:`~DistanceIndex.nearest`
the k closest, ties in position order. ``_ImageIndexBase`` prepares the
spectrograms of the image indexes (MSE, NLPD, MS-SSIM);
:class:`~perceptlab.metrics.embedding.EmbeddingIndex` and
:class:`~perceptlab.metrics.pairwise.GenericIndex` derive from
:class:`DistanceIndex` directly.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from .pairwise_blocks import ArrayLike, DeviceLike, _to_tensor, prepare_specs
from .validation import check_image_batch


class DistanceIndex:
    """A fixed set of N clips prepared for repeated queries.

    Subclasses implement :meth:`distances`; :meth:`nearest` is shared.
    """

    metric_name: str = ""
    n: int = 0

    def __len__(self) -> int:
        return self.n

    def distances(self, query: ArrayLike) -> torch.Tensor:
        """Distances from each query to every clip in the index.

        Parameters
        ----------
        query : torch.Tensor or numpy.ndarray
            One clip (F, T), (1, F, T) or (1, 1, F, T), or a batch
            (Q, 1, F, T), in [0, 1], same F and T as the index.

        Returns
        -------
        torch.Tensor
            (N,) float64 CPU for one clip, (Q, N) for a batch.
        """
        q, single = self._queries(query)
        d = self._distances(q)  # (Q, N)
        d = d.to("cpu", torch.float64)
        return d[0] if single else d

    def nearest(
        self, query: ArrayLike, k: int = 10, *, exclude: Optional[Sequence[int]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k closest clips to one query.

        Parameters
        ----------
        query : array
            One clip, as in :meth:`distances`.
        k : int
            How many neighbours (capped at the number available).
        exclude : sequence of int, optional
            Index positions to leave out (e.g. the query's own position).

        Returns
        -------
        indices : torch.Tensor
            (k,) int64 positions in the index, closest first; ties keep the
            lower position first.
        distances : torch.Tensor
            (k,) float64 distances.
        """
        d = self.distances(query)
        if d.dim() == 2 and d.shape[0] == 1:
            d = d[0]  # a (1, 1, F, T) batch of one
        if d.dim() != 1:
            raise ValueError("nearest() takes one query clip; use distances() for a batch")
        return _topk(d, k, exclude)

    # -- to implement ------------------------------------------------------

    def _distances(self, q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------

    shape: Tuple[int, ...] = ()
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    validate: bool = True

    def _queries(self, query: ArrayLike) -> Tuple[torch.Tensor, bool]:
        q = _to_tensor(query, self.device)
        single = q.dim() < 4
        while q.dim() < 4:
            q = q.unsqueeze(0)
        check_image_batch(q, "query", check_values=self.validate)
        if tuple(q.shape[1:]) != tuple(self.shape):
            raise ValueError(
                f"{self.metric_name}: query shape {tuple(q.shape[1:])} does not match the index "
                f"clips {tuple(self.shape)}"
            )
        return q.to(self.dtype), single


def _topk(d: torch.Tensor, k: int, exclude: Optional[Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    d = d.clone()
    if exclude is not None:
        d[torch.as_tensor(list(exclude), dtype=torch.long)] = math.inf
    n_ok = int(torch.isfinite(d).sum())
    order = torch.sort(d, stable=True).indices[: min(k, n_ok)]
    return order, d[order]


class _ImageIndexBase(DistanceIndex):
    def __init__(
        self, specs: ArrayLike, metric_name: str, device: DeviceLike, validate: bool, min_side: int = 1
    ):
        x = prepare_specs(specs, device, validate, metric_name, min_side)
        self.metric_name = metric_name
        self.n = x.shape[0]
        self.shape = tuple(x.shape[1:])
        self.device = x.device
        self.dtype = x.dtype
        self.validate = validate
        self._x = x
