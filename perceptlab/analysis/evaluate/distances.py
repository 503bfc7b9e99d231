"""Distances between segments for k-NN: a registry metric's all-pairs matrix (dense or blocked),
and the baselines' statistics z-scored on each split's training side."""

from __future__ import annotations

import numpy as np

from perceptlab.audio.features import FeatureConfig
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel

from .config import EvaluateConfig

def _device(config: EvaluateConfig) -> str:
    import torch

    if config.device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(config.device)


def segment_distances(segs: np.ndarray, metric: str, *, device: str = "cpu", memory_budget_mb: float = 512,
                      dense_limit: int = 6000, progress: ProgressFn | None = None,
                      cancel: CancelFn | None = None, features: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """(S, S) float32 distances between segments under ``metric``.

    Up to ``dense_limit`` segments the all-pairs engine computes the matrix
    at once (float64 inside); above it, rows are filled in blocks from a
    distance index so that only the float32 result is held in full.
    """
    import torch

    from perceptlab.metrics.pairwise import build_index, distance_matrix
    from perceptlab.metrics.registry import get_metric

    n = segs.shape[0]
    if get_metric(metric).params.get("baseline"):
        # A baseline compares each segment's statistics, z-scored over all
        # segments given. The protocol does not use this pooled matrix: it
        # z-scores on each fold's training segments (BaselineDistances).
        from perceptlab.metrics.baselines import baseline_vectors

        vectors, _ = baseline_vectors(metric, list(segs[:, 0]), features)
        d = distance_matrix(vectors, metric, memory_budget_mb=memory_budget_mb, progress=progress,
                            cancel=cancel, device=device)
        return d.numpy().astype(np.float32)
    if n <= dense_limit:
        d = distance_matrix(segs, metric, memory_budget_mb=memory_budget_mb, progress=progress,
                            cancel=cancel, device=device)
        return d.numpy().astype(np.float32)
    index = build_index(segs, metric, memory_budget_mb=memory_budget_mb, cancel=cancel, device=device)
    out = np.empty((n, n), dtype=np.float32)
    block = 256
    for i in range(0, n, block):
        check_cancel(cancel)
        q = torch.from_numpy(segs[i : i + block])
        out[i : i + block] = index.distances(q).reshape(-1, n).numpy()
        if progress is not None:
            progress(min(n, i + block), n)
    out = np.minimum(out, out.T)  # exact symmetry (the index's float32 path may differ in the last bit)
    np.fill_diagonal(out, 0.0)
    return out


class BaselineDistances:
    """Distances of a baseline (``logmel-stats``, ``mfcc-stats``) between segments, z-scored per split.

    The raw statistics of every segment are computed once; each call
    ``(rows, cols)`` fits the z-score statistics on the ``cols`` segments
    only (the training side of a fold or inner split) and applies them to
    both sides, then takes the baseline's cosine distance. Pooled z-scoring
    over all segments would use no labels, but it would let the test
    segments' statistics shape the training side's geometry (a transductive
    step logistic regression's scaler does not take), so the protocol fits
    it like any other preprocessing.
    """

    def __init__(self, metric: str, segs: np.ndarray, features: FeatureConfig = FeatureConfig(),
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None):
        from perceptlab.metrics.baselines import raw_vector

        self.metric = metric
        raw = []
        for i, s in enumerate(segs[:, 0]):
            if i % 256 == 0:
                check_cancel(cancel)
            raw.append(raw_vector(metric, s, features))
            if progress is not None and (i + 1) % 256 == 0:
                progress(i + 1, len(segs))
        self.raw = np.stack(raw).astype(np.float64)  # (S, D)
        if progress is not None:
            progress(len(segs), len(segs))

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        from perceptlab.metrics.baselines import apply_standardisation, standardise

        z_cols, stats = standardise(self.raw[cols])
        z_rows = apply_standardisation(self.raw[rows], stats)
        return cosine_distances(z_rows, z_cols)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) float32 1 - cosine similarity between rows, as the baselines' registry metric gives
    it (float64 inside, clamped at 0; two all-zero rows are at distance 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ua = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    ub = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    d = np.maximum(1.0 - ua @ ub.T, 0.0)
    d[(a == 0).all(1)[:, None] & (b == 0).all(1)[None, :]] = 0.0
    return d.astype(np.float32)
