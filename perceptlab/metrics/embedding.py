"""Distances in an encoder's latent space, as registry metrics.

A trained encoder registers itself at run time as ``"embedding:<name>"``::

    metric = embedding_metric("ae-nlpd-v1", encode=model.encode_batch)
    register_metric(metric, replace=True)

``encode(x)`` maps spectrograms (B, 1, F, T) in [0, 1] to vectors (B, D).
The metric then works everywhere the built-ins do: ``metric.fn`` compares two
batches of spectrograms, ``distance_matrix`` encodes every clip once and
forms the matrix with one GEMM, and ``build_index`` keeps the embeddings for
queries. With ``encode=None`` the metric takes stored vectors (N, D) directly
(``input_kind="vector"``).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from perceptlab.tasks import CancelFn, ProgressFn

from .pyramid import safe_sqrt
from .pairwise_index import DistanceIndex
from .pairwise_blocks import _chunks, _prepare_any, _Steps
from .metric import Metric
from .validation import check_inputs

DISTANCES = ("euclidean", "cosine")


def vector_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "euclidean") -> torch.Tensor:
    """Row-wise distance between (B, D) vectors: Euclidean, or 1 - cosine similarity."""
    if kind == "euclidean":
        return safe_sqrt((a - b).square().sum(-1))
    if kind == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)
    raise ValueError(f"unknown vector distance {kind!r}; use one of {DISTANCES}")


def vector_distance_matrix(v: torch.Tensor, kind: str = "euclidean") -> torch.Tensor:
    """(N, N) float64 distances between the rows of ``v`` (N, D), zero diagonal."""
    v = v.to(torch.float64)
    if kind == "euclidean":
        sq = v.square().sum(1)
        d = (sq[:, None] + sq[None, :] - 2.0 * (v @ v.T)).clamp_min_(0.0).sqrt_()
    elif kind == "cosine":
        u = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        d = (1.0 - u @ u.T).clamp_min_(0.0)
    else:
        raise ValueError(f"unknown vector distance {kind!r}; use one of {DISTANCES}")
    d = torch.triu(d, 1)
    return (d + d.T).cpu()


def embedding_metric(
    name: str,
    encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    *,
    distance: str = "euclidean",
    display_name: Optional[str] = None,
    description: str = "",
    params: Optional[Dict] = None,
    batch_size: int = 64,
) -> Metric:
    """Build the :class:`Metric` ``"embedding:<name>"`` for an encoder.

    Parameters
    ----------
    name : str
        The encoder's name; the metric is called ``"embedding:" + name``.
    encode : callable, optional
        ``encode(x (B, 1, F, T)) -> (B, D)``. None makes a vector metric that
        takes (N, D) embeddings instead of spectrograms.
    distance : {"euclidean", "cosine"}
        Distance between embeddings (cosine: 1 - cosine similarity).
    display_name, description, params
        Registry fields.
    batch_size : int
        Clips per ``encode`` call in the all-pairs and index paths.
    """
    if distance not in DISTANCES:
        raise ValueError(f"unknown vector distance {distance!r}; use one of {DISTANCES}")
    full = name if name.startswith("embedding:") else f"embedding:{name}"

    def encode_all(specs, progress: Optional[ProgressFn], cancel: Optional[CancelFn], device) -> torch.Tensor:
        if encode is None:
            return _prepare_any(specs, metric, device)
        x = _prepare_any(specs, metric, device)
        parts = _chunks(x.shape[0], batch_size)
        steps = _Steps(len(parts), progress, cancel)
        out = []
        with torch.no_grad():
            for i0, i1 in parts:
                out.append(encode(x[i0:i1]))  # (b, D)
                steps.step()
        return torch.cat(out)

    def fn(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        if encode is None:
            if x.shape != y.shape or x.dim() != 2:
                raise ValueError(
                    f"{full}: expected two (B, D) batches, got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            return vector_distance(x, y, distance)
        if validate:
            check_inputs(x, y, metric=full)
        return vector_distance(encode(x), encode(y), distance)

    def pairwise(specs, *, memory_budget_mb=512, progress=None, cancel=None, device=None) -> torch.Tensor:
        return vector_distance_matrix(encode_all(specs, progress, cancel, device), distance)

    def index(specs, *, memory_budget_mb=512, progress=None, cancel=None, device=None) -> "EmbeddingIndex":
        return EmbeddingIndex(encode_all(specs, progress, cancel, device), metric, encode, distance)

    metric = Metric(
        name=full,
        display_name=display_name or f"Embedding ({name})",
        fn=fn,
        params=dict(params or {}, distance=distance),
        description=description or f"{distance.capitalize()} distance between {name} encoder embeddings.",
        pairwise=pairwise,
        index=index,
        input_kind="spectrogram" if encode is not None else "vector",
    )
    return metric


class EmbeddingIndex(DistanceIndex):
    """Stored embeddings (N, D); a query is encoded once and compared with every row."""

    def __init__(self, vectors: torch.Tensor, metric: Metric, encode, distance: str):
        self.vectors = vectors  # (N, D)
        self.metric_name = metric.name
        self.encode = encode
        self.distance = distance
        self.n = vectors.shape[0]
        self.device = vectors.device
        self.dtype = vectors.dtype

    def _queries(self, query) -> Tuple[torch.Tensor, bool]:
        q = torch.as_tensor(query).to(self.device)
        if self.encode is None:
            single = q.dim() == 1
            q = q.reshape(1, -1) if single else q
            if q.dim() != 2 or q.shape[1] != self.vectors.shape[1]:
                raise ValueError(
                    f"{self.metric_name}: expected query vectors of length {self.vectors.shape[1]}, "
                    f"got shape {tuple(q.shape)}"
                )
            return q.to(self.dtype), single
        single = q.dim() < 4
        while q.dim() < 4:
            q = q.unsqueeze(0)
        check_inputs(q, metric=self.metric_name)
        return q, single

    def _distances(self, q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.encode is not None:
                q = self.encode(q).to(self.dtype)  # (Q, D)
            return torch.stack([vector_distance(qi[None], self.vectors, self.distance) for qi in q])
