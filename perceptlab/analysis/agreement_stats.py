"""Rank agreement between metrics over a set of clips, and the label order of the matrix views."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from perceptlab.analysis.stats import spearman


def upper(d: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a square matrix, flattened."""
    return d[np.triu_indices(len(d), 1)]


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
