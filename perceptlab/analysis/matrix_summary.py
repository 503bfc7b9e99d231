"""Distance matrices too large to draw clip by clip, and matrices written out.

A library of thousands of clips has millions of clip pairs: an N x N image
of them is more pixels than a screen has, and its label axis would need a
name every few pixels. Two smaller views keep what the eye looks for (do the
labels separate?):

- :func:`label_block_means`: the mean distance of every pair of labels, an
  L x L matrix (a label against itself: the mean over its distinct clip
  pairs, the diagonal of zeros left out);
- :func:`stratified_sample`: a sample of the clips that keeps every label's
  share (every label at least once), sorted by label.

:func:`label_groups` gives the runs of equal labels that both the clip and
the label views draw their axis from, and :func:`write_matrix_csv` writes a
matrix with the clips' ids, names and labels.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Above this many clips the matrix view summarises by label (or samples).
LARGE_MATRIX_CLIPS = 2000
NO_LABEL = "-"


def label_name(label: str | None) -> str:
    """The label as shown: an unlabelled clip is ``-``."""
    return label or NO_LABEL


def label_groups(labels: Sequence[str | None]) -> list[tuple[int, int, str]]:
    """Runs of equal consecutive labels: ``(start, end, label)`` with ``end`` exclusive."""
    groups: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            groups.append((start, i, label_name(labels[start])))
            start = i
    return groups


@dataclass
class LabelBlocks:
    """Mean distances between labels.

    Attributes
    ----------
    labels : list of str
        The labels, sorted (unlabelled last), one row and column each.
    means : ndarray, (L, L)
        Mean distance over the clip pairs of two labels; NaN on the diagonal
        of a label with one clip (no pair).
    pairs : ndarray of int, (L, L)
        How many clip pairs each mean is over.
    sizes : ndarray of int, (L,)
        Clips per label.
    """

    labels: list[str]
    means: np.ndarray
    pairs: np.ndarray
    sizes: np.ndarray


def label_block_means(d: np.ndarray, labels: Sequence[str | None], progress=None, cancel=None) -> LabelBlocks:
    """The L x L matrix of mean distances between labels, in O(N^2) time and O(N L) extra memory.

    Parameters
    ----------
    d : ndarray, (N, N)
        A symmetric distance matrix.
    labels : sequence of str or None, length N
    progress, cancel : callable, optional
        Labels summed so far; checked after each label (see :mod:`perceptlab.tasks`).
    """
    from perceptlab.tasks import check_cancel, report

    d = np.asarray(d)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance matrix: expected a square (N, N) array, got shape {d.shape}")
    if len(labels) != d.shape[0]:
        raise ValueError(f"labels: {len(labels)} labels for a matrix of {d.shape[0]} clips")
    names = [label_name(x) for x in labels]
    unique = sorted(set(names), key=lambda s: (s == NO_LABEL, s))
    index = {s: k for k, s in enumerate(unique)}
    code = np.array([index[s] for s in names], dtype=np.int64)
    order = np.argsort(code, kind="stable")
    sizes = np.bincount(code, minlength=len(unique))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    if len(unique) == 0:
        return LabelBlocks([], np.zeros((0, 0)), np.zeros((0, 0), dtype=np.int64), sizes)
    # Row sums per label (L, N), then column sums per label (L, L): the
    # matrix is read once, a row block at a time, never copied whole.
    rows = np.zeros((len(unique), d.shape[0]), dtype=np.float64)
    for k, (s, n) in enumerate(zip(starts, sizes)):
        for c in range(s, s + n, 512):  # a few rows at a time: one label may be the whole library
            rows[k] += d[order[c:min(c + 512, s + n)]].sum(axis=0, dtype=np.float64)
        check_cancel(cancel)
        report(progress, k + 1, len(unique))
    sums = np.add.reduceat(rows[:, order], starts, axis=1)
    diag = np.bincount(code, weights=np.diag(d).astype(np.float64), minlength=len(unique))
    sums[np.diag_indices(len(unique))] -= diag
    pairs = np.outer(sizes, sizes)
    pairs[np.diag_indices(len(unique))] = sizes * (sizes - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(pairs > 0, sums / np.maximum(pairs, 1), np.nan)
    # Ordered pairs were counted: the number of distinct clip pairs is half on the diagonal.
    distinct = pairs.copy()
    distinct[np.diag_indices(len(unique))] //= 2
    return LabelBlocks(unique, means, distinct, sizes)


def stratified_sample(labels: Sequence[str | None], limit: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` clips keeping each label's share, sorted by label then index.

    Every label keeps at least one clip while ``limit`` allows; with more
    labels than ``limit`` the largest labels are kept. The same
    ``(labels, limit, seed)`` always gives the same sample.
    """
    if limit < 1:
        raise ValueError(f"sample size: at least 1 clip, got {limit}")
    names = [label_name(x) for x in labels]
    n = len(names)
    if n <= limit:
        idx = np.arange(n)
    else:
        rng = np.random.default_rng(seed)
        by_label: dict[str, list[int]] = {}
        for i, s in enumerate(names):
            by_label.setdefault(s, []).append(i)
        groups = sorted(by_label.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
        # Largest-remainder shares, each at least one clip.
        quota = np.array([len(g) for _, g in groups], dtype=float) * limit / n
        take = np.maximum(1, np.floor(quota)).astype(int)
        while take.sum() > limit:
            k = int(np.argmax(take))
            take[k] -= 1
        rest = quota - np.floor(quota)
        for k in np.argsort(-rest, kind="stable"):
            if take.sum() >= limit:
                break
            if take[k] < len(groups[k][1]):
                take[k] += 1
        chosen = [np.sort(rng.choice(np.array(g), size=min(t, len(g)), replace=False))
                  for (_, g), t in zip(groups, take)]
        idx = np.concatenate(chosen)
    key = sorted(idx.tolist(), key=lambda i: (names[i] == NO_LABEL, names[i], i))
    return np.array(key, dtype=int)


def write_matrix_csv(path: str | os.PathLike, ids: Sequence, names: Sequence[str], labels: Sequence[str | None],
                     d: np.ndarray, value_name: str = "distance") -> None:
    """Write a square matrix as CSV: one row per item, ``id,name,label`` then a column per item.

    The header row names each column ``<id>:<name>``, so the columns can be
    matched to the rows; values are written in full precision (``repr``).
    """
    d = np.asarray(d)
    if d.shape != (len(ids), len(ids)) or len(names) != len(ids) or len(labels) != len(ids):
        raise ValueError(f"{value_name} matrix: shape {d.shape} does not match {len(ids)} ids, "
                         f"{len(names)} names, {len(labels)} labels")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "label"] + [f"{i}:{n}" for i, n in zip(ids, names)])
        for i, n, lab, row in zip(ids, names, labels, d):
            w.writerow([i, n, label_name(lab)] + ["" if not np.isfinite(v) else repr(float(v)) for v in row])
