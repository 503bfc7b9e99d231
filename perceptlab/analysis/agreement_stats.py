"""Rank agreement between metrics over a set of clips."""

from __future__ import annotations

from itertools import combinations

import numpy as np


def upper(d: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a square matrix, flattened."""
    return d[np.triu_indices(len(d), 1)]


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, ties given their average rank (as Spearman's rho needs)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start and end of each run of equal values, then the mean rank of the run.
    edges = np.flatnonzero(np.diff(sorted_x) != 0) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(x)]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    out = np.empty(len(x), dtype=np.float64)
    out[order] = np.repeat(avg, ends - starts)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's r of the tie-averaged ranks)."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def matrix_rank_correlations(matrices: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Spearman's rho between every two metrics' pair distances (same clips, same order)."""
    out = {}
    for a, b in combinations(matrices, 2):
        if matrices[a].shape != matrices[b].shape or len(matrices[a]) < 3:
            continue
        out[(a, b)] = spearman(upper(matrices[a]), upper(matrices[b]))
    return out


def label_order(labels: list[str | None]) -> np.ndarray:
    """Indices that sort clips by label (stable: ties keep their order)."""
    return np.array(sorted(range(len(labels)), key=lambda i: (labels[i] is None, labels[i] or "")), dtype=int)
