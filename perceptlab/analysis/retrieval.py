"""Leave-one-out nearest-neighbour retrieval by label: does a metric find "the same kind"?

For every good, labelled clip of a library, the clip's nearest OTHER clip
under a metric is looked up in the metric's whole-clip distance matrix
(:func:`perceptlab.analysis.matrices.library_matrix`, the numbers the app
shows); the clip counts as a hit when that neighbour has the same label.
The score per metric is the fraction of hits (1-NN accuracy), with a
bootstrap interval over clips, next to two references: chance (the hit rate
of a neighbour picked at random) and precision at 5 (the fraction of the
five nearest clips that share the label).

Identical audio (same content hash) counts once, so an exact copy cannot be
anyone's neighbour. Ties in distance go to the lower clip id, so the result
does not depend on the order of the matrix.

This is the measurement behind the retrieval table of ``assets/models/README.md``:
on held-out instrument, drum and music libraries it shows whether an encoder
finds the same instrument, drum or track better than the simple baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from perceptlab.analysis.stats import bootstrap_ci
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn

from .matrices import library_matrix
from .similarity import DEFAULT_EXCERPT_FRAMES


@dataclass
class MetricRetrieval:
    """One metric's leave-one-out retrieval scores."""

    metric: str
    accuracy: float  # 1-NN: fraction of clips whose nearest other clip shares the label
    interval: tuple[float, float]  # bootstrap 95% interval of the accuracy over clips
    precision_at_5: float
    hits: list[bool] = field(repr=False)  # per clip, in the report's clip order

    def to_json(self) -> dict:
        interval = None if any(v != v for v in self.interval) else list(self.interval)  # no bootstrap: null
        return {"metric": self.metric, "accuracy": self.accuracy, "interval": interval,
                "precision_at_5": self.precision_at_5}


@dataclass
class RetrievalReport:
    library: str
    clips: list[Clip]
    labels: list[str]
    chance: float
    results: list[MetricRetrieval]
    left_out: list[tuple[str, str]]  # (path, why)

    def to_json(self) -> dict:
        counts = {lab: self.labels.count(lab) for lab in sorted(set(self.labels))}
        return {"library": self.library, "n": len(self.clips), "labels": counts, "chance": self.chance,
                "metrics": {r.metric: r.to_json() for r in self.results},
                "left_out": [{"path": p, "reason": r} for p, r in self.left_out]}

    def text(self, display=lambda name: name) -> str:
        counts = {lab: self.labels.count(lab) for lab in sorted(set(self.labels))}
        lines = [f"leave-one-out 1-NN by label: {len(self.clips)} clips, {len(counts)} labels "
                 f"({min(counts.values())}-{max(counts.values())} clips each); chance {self.chance:.2f}",
                 f"  {'metric':<34} {'1-NN':>5}  {'95% interval':<13} {'P@5':>5}"]
        for r in sorted(self.results, key=lambda r: -r.accuracy):
            lines.append(f"  {display(r.metric):<34} {r.accuracy:5.2f}  "
                         f"[{r.interval[0]:.2f}, {r.interval[1]:.2f}]  {r.precision_at_5:5.2f}")
        for p, why in self.left_out[:10]:
            lines.append(f"  left out: {p}: {why}")
        if len(self.left_out) > 10:
            lines.append(f"  ... and {len(self.left_out) - 10} more left out")
        return "\n".join(lines)


def retrieval_clips(library: Library) -> tuple[list[Clip], list[tuple[str, str]]]:
    """The clips retrieval scores: good, labelled, one per content, in id order."""
    keep, left_out, seen = [], [], {}
    for c in sorted(library.clips(), key=lambda c: c.id):
        if not c.ok:
            left_out.append((c.path, f"failed to import ({c.error})"))
        elif not c.label:
            left_out.append((c.path, "no label"))
        elif c.content_hash in seen:
            left_out.append((c.path, f"the same audio as {seen[c.content_hash]}"))
        else:
            seen[c.content_hash] = c.path
            keep.append(c)
    return keep, left_out


def chance_rate(labels: Sequence[str]) -> float:
    """Hit rate of a neighbour drawn at random from the other clips."""
    labels = list(labels)
    n = len(labels)
    counts = np.array([labels.count(lab) for lab in set(labels)], dtype=np.float64)
    return float(((counts / n) * (counts - 1) / (n - 1)).sum())


def nearest_hits(d: np.ndarray, labels: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: whether its nearest other clip shares its label, and the label share of its k nearest.

    Parameters
    ----------
    d : numpy.ndarray
        (N, N) distances; the diagonal is ignored.
    labels : sequence of str
        N labels.

    Returns
    -------
    hits : numpy.ndarray of bool, (N,)
    precision : numpy.ndarray of float, (N,)
    """
    d = np.array(d, dtype=np.float64, copy=True)
    n = d.shape[0]
    if d.shape != (n, n) or n != len(labels):
        raise ValueError(f"expected an ({len(labels)}, {len(labels)}) matrix, got {d.shape}")
    if not np.isfinite(d[~np.eye(n, dtype=bool)]).all():
        raise ValueError("the distance matrix holds NaN or infinite values")
    np.fill_diagonal(d, np.inf)
    lab = np.asarray(labels)
    # A stable sort on distance keeps ties in column (clip id) order.
    order = np.argsort(d, axis=1, kind="stable")
    same = lab[order] == lab[:, None]  # (N, N): neighbour rank r shares the label
    k = min(k, n - 1)
    return same[:, 0], same[:, :k].mean(axis=1)


def run_retrieval(library: Library, metrics: Sequence[str], *, config: FeatureConfig = FeatureConfig(),
                  excerpt: str = "whole", n_frames: int = DEFAULT_EXCERPT_FRAMES, n_boot: int = 2000,
                  seed: int = 0, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None) -> RetrievalReport:
    """Leave-one-out 1-NN by label for each metric (see the module docstring).

    Raises
    ------
    ValueError
        Fewer than 3 usable clips, or no label with two clips (nothing could
        ever be a hit).
    """
    clips, left_out = retrieval_clips(library)
    labels = [c.label for c in clips]
    if len(clips) < 3:
        raise ValueError(f"{library.path}: retrieval needs at least 3 labelled clips, found {len(clips)}")
    if max(labels.count(lab) for lab in set(labels)) < 2:
        raise ValueError(f"{library.path}: every label has one clip, so no clip can find another of its kind; "
                         "label the clips by their folder (import DIR/<label>/...) or with --labels")
    results = []
    cache: dict = {}
    for metric in metrics:
        _, d = library_matrix(library, metric, clips, config=config, n_frames=n_frames, excerpt=excerpt,
                              progress=progress, cancel=cancel, inputs_cache=cache)
        hits, prec = nearest_hits(d, labels)
        results.append(MetricRetrieval(metric, float(hits.mean()), bootstrap_ci(hits, n_boot, seed),
                                       float(prec.mean()), hits.tolist()))
    return RetrievalReport(str(library.path), clips, labels, chance_rate(labels), results, left_out)
