"""Leave-one-out nearest-neighbour retrieval by label: does a metric find "the same kind"?

For every good, labelled clip of a library, the clip's nearest OTHER clip
under a metric is looked up in the metric's whole-clip distance matrix
(:func:`perceptlab.analysis.matrices.library_matrix`, the numbers the app
shows); the clip counts as a hit when that neighbour has the same label.
The score per metric is the fraction of hits (1-NN accuracy), with a
bootstrap interval over clips (over sources, below), next to two references: chance (the hit rate
of a neighbour picked at random) and precision at 5 (the fraction of the
five nearest clips that share the label).

Identical audio (same content hash) counts once, so an exact copy cannot be
anyone's neighbour. Ties in distance go to the lower clip id, so the result
does not depend on the order of the matrix.

Other sources only (``source_pattern``)
---------------------------------------
When several clips come from one source (phrases of one instrument, hits of
one drum), the nearest clip of the same label is often the same source, and
1-NN then measures "the same instrument again". With a ``source_pattern``
(a regular expression), a clip's source is the first match of the pattern
in its file name without the extension (``^[0-9]+`` takes the program number
of ``032-acoustic-bass-1.flac``); a file name it does not match is a source
of its own. Neighbours from the clip's own source are skipped, so the score
measures finding the same label in ANOTHER source. Chance and precision at
5 skip them too, and the bootstrap resamples sources rather than clips
(clips of one source are not independent draws).

This is the measurement behind the retrieval table of ``assets/models/README.md``:
on held-out instrument, drum and music libraries it shows whether an encoder
finds the same instrument, drum or track better than the simple baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import re
from pathlib import Path

import numpy as np

from perceptlab.analysis.stats import bootstrap_ci, cluster_bootstrap_ci
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
    interval: tuple[float, float]  # bootstrap 95% interval of the accuracy over clips (or sources)
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
    source_pattern: str | None = None
    sources: list[str] | None = None  # per clip, with a source_pattern

    @property
    def unmatched(self) -> int:
        """Clips whose file name the source pattern does not match (each its own source)."""
        return 0 if self.sources is None else sum(s == c.path for s, c in zip(self.sources, self.clips))

    def to_json(self) -> dict:
        counts = {lab: self.labels.count(lab) for lab in sorted(set(self.labels))}
        out = {"library": self.library, "n": len(self.clips), "labels": counts, "chance": self.chance,
               "metrics": {r.metric: r.to_json() for r in self.results},
               "left_out": [{"path": p, "reason": r} for p, r in self.left_out]}
        if self.source_pattern is not None:
            out.update(source_pattern=self.source_pattern, n_sources=len(set(self.sources)),
                       unmatched=self.unmatched)
        return out

    def text(self, display=lambda name: name) -> str:
        counts = {lab: self.labels.count(lab) for lab in sorted(set(self.labels))}
        lines = [f"leave-one-out 1-NN by label: {len(self.clips)} clips, {len(counts)} labels "
                 f"({min(counts.values())}-{max(counts.values())} clips each); chance {self.chance:.2f}"]
        if self.source_pattern is not None:
            lines.append(f"  other sources only: {len(set(self.sources))} sources by {self.source_pattern!r}; "
                         "a clip's neighbours from its own source are skipped"
                         + (f" ({self.unmatched} names unmatched, each its own source)" if self.unmatched else ""))
        lines.append(f"  {'metric':<34} {'1-NN':>5}  {'95% interval':<13} {'P@5':>5}")
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


def clip_sources(clips: Sequence[Clip], pattern: str) -> list[str]:
    """Each clip's source: the first match of ``pattern`` in its file name without the extension.

    A name the pattern does not match is a source of its own (its path).
    Sources come from the name alone: the same match in two folders is one
    source.

    Raises
    ------
    ValueError
        ``pattern`` is not a regular expression, matches empty text in a
        name, or matches no name at all (every clip would be its own source:
        the plain score under another name).
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"source pattern {pattern!r} is not a regular expression: {exc}") from None
    out = []
    for c in clips:
        m = rx.search(Path(c.path).stem)
        if m is not None and not m.group(0):
            raise ValueError(f"source pattern {pattern!r} matches empty text in {Path(c.path).name!r}; "
                             "it must match part of the name, e.g. '^\\d+'")
        out.append(m.group(0) if m else c.path)
    if clips and all(m == c.path for m, c in zip(out, clips)):
        raise ValueError(f"source pattern {pattern!r} matches none of the {len(clips)} file names "
                         f"(e.g. {Path(clips[0].path).stem!r})")
    return out


def _allowed(n: int, sources: Sequence[str] | None) -> np.ndarray:
    """(N, N): whether clip j may be clip i's neighbour (not itself, not its source)."""
    if sources is None:
        return ~np.eye(n, dtype=bool)
    src = np.asarray(sources)
    return src[:, None] != src[None, :]


def chance_rate(labels: Sequence[str], sources: Sequence[str] | None = None) -> float:
    """Hit rate of a neighbour drawn at random from the other clips (of other sources, with ``sources``)."""
    lab = np.asarray(list(labels))
    ok = _allowed(len(lab), sources)
    same = (lab[:, None] == lab[None, :]) & ok
    per_clip = same.sum(1) / np.maximum(ok.sum(1), 1)
    return float(per_clip.mean())


def nearest_hits(d: np.ndarray, labels: Sequence[str], k: int = 5,
                 sources: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: whether its nearest other clip shares its label, and the label share of its k nearest.

    Parameters
    ----------
    d : numpy.ndarray
        (N, N) distances; the diagonal is ignored.
    labels : sequence of str
        N labels.
    sources : sequence of str, optional
        N sources: a clip's neighbours from its own source are skipped.

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
    if sources is not None and len(sources) != n:
        raise ValueError(f"expected {n} sources, got {len(sources)}")
    ok = _allowed(n, sources)
    d[~ok] = np.inf
    lab = np.asarray(labels)
    # A stable sort on distance keeps ties in column (clip id) order; skipped clips sort last.
    order = np.argsort(d, axis=1, kind="stable")
    same = lab[order] == lab[:, None]  # (N, N): neighbour rank r shares the label
    usable = np.take_along_axis(ok, order, axis=1)
    same &= usable
    kk = np.minimum(k, np.maximum(usable.sum(1), 1))  # fewer allowed neighbours: the share of those
    first_k = np.arange(n)[None, :] < kk[:, None]
    return same[:, 0], (same & first_k).sum(1) / kk


def run_retrieval(library: Library, metrics: Sequence[str], *, config: FeatureConfig = FeatureConfig(),
                  excerpt: str = "whole", n_frames: int = DEFAULT_EXCERPT_FRAMES, n_boot: int = 2000,
                  seed: int = 0, source_pattern: str | None = None, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None, matrix_cache: dict | None = None) -> RetrievalReport:
    """Leave-one-out 1-NN by label for each metric (see the module docstring).

    ``source_pattern``: skip neighbours from a clip's own source (see
    "Other sources only" in the module docstring).

    ``matrix_cache``: a dict the caller keeps to score the same library
    again (another ``source_pattern``) without recomputing its distance
    matrices; valid while the library's clips and embeddings are unchanged.

    Raises
    ------
    ValueError
        Fewer than 3 usable clips, no label with two clips (nothing could
        ever be a hit), a bad ``source_pattern``, or no label found in two
        sources.
    """
    clips, left_out = retrieval_clips(library)
    labels = [c.label for c in clips]
    if len(clips) < 3:
        raise ValueError(f"{library.path}: retrieval needs at least 3 labelled clips, found {len(clips)}")
    if max(labels.count(lab) for lab in set(labels)) < 2:
        raise ValueError(f"{library.path}: every label has one clip, so no clip can find another of its kind; "
                         "label the clips by their folder (import DIR/<label>/...) or with --labels")
    sources = None
    if source_pattern is not None:
        sources = clip_sources(clips, source_pattern)
        if chance_rate(labels, sources) == 0:
            raise ValueError(f"{library.path}: no label has clips from two sources by {source_pattern!r}, "
                             "so no clip can find its kind in another source")
    results = []
    cache: dict = {}
    for metric in metrics:
        key = (metric, config.hash, excerpt, n_frames, tuple(c.id for c in clips))
        d = None if matrix_cache is None else matrix_cache.get(key)
        if d is None:
            _, d = library_matrix(library, metric, clips, config=config, n_frames=n_frames, excerpt=excerpt,
                                  progress=progress, cancel=cancel, inputs_cache=cache)
            if matrix_cache is not None:
                matrix_cache[key] = d
        hits, prec = nearest_hits(d, labels, sources=sources)
        interval = (bootstrap_ci(hits, n_boot, seed) if sources is None
                    else cluster_bootstrap_ci(hits, sources, n_boot, seed))
        results.append(MetricRetrieval(metric, float(hits.mean()), interval, float(prec.mean()), hits.tolist()))
    return RetrievalReport(str(library.path), clips, labels, chance_rate(labels, sources), results, left_out,
                           source_pattern, sources)
