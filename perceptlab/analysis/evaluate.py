"""The genre-classification protocol of Namgyal et al. (2024), for any labelled library.

(Over 700 lines: protocol, methods and report still live together here;
they are to be split into modules of their own.)

The paper's claim: an autoencoder trained with a PERCEPTUAL loss (NLPD or
MS-SSIM on log-mel images) gives features on which logistic regression
classifies genre better than (a) k-nearest-neighbours on the same metric
used directly as a distance, and (b) the features of the same autoencoder
trained with MSE. :func:`run_evaluation` tests it on the user's own clips
and says how sure the answer is.

Protocol
--------
* **Clips.** Every good, labelled clip of the library (the library's failed
  imports are listed in the report, never silently dropped). Identical
  audio (same content hash) counts once; the same audio under two labels is
  left out. Classes with fewer clips than folds are left out with a warning.
* **Segments.** Each clip's cached log-mel image is cut with
  :func:`perceptlab.audio.features.windows` into ``segment_frames``-frame
  windows every ``segment_hop`` frames (last window aligned to the end; a
  clip shorter than one window gives one looped window). Optionally at most
  ``max_segments_per_clip`` evenly spaced windows are kept.
* **Folds.** ``StratifiedGroupKFold`` over segments, grouped by clip: all
  segments of a recording fall on one side of every split. Everything that
  is fitted or selected -- k, C, the scaler, and in ``--train-config`` mode
  the autoencoders themselves -- sees only the fold's training clips; the
  inner cross-validation that picks k and C is grouped the same way.
* **Methods** (each predicts per segment, then per clip):

  - ``knn:<metric>``: k-NN (fixed k) on the metric's precomputed distance
    matrix between segments; ``knn-cv:<metric>``: k chosen by inner CV.
    A segment takes the majority label of its k nearest training segments
    (ties: the tied class with the smallest summed distance). A CLIP takes
    the majority vote of its segments (ties: the tied class whose voting
    segments have the smallest summed neighbour distance). The baselines
    ``logmel-stats`` and ``mfcc-stats`` are among the default metrics; their
    statistics are z-scored with the mean and std of the TRAINING segments
    of each fold (and of each inner split), never of the test segments, as
    the scaler of logistic regression is.
  - ``logreg:ae-<loss>``: ``StandardScaler`` + ``LogisticRegression``, C by
    inner CV, on the encoder embedding of each segment; a clip takes the
    class with the highest MEAN segment probability.
  - ``logreg:logmel``: the same on mean + std over time of each mel band.
  - ``majority``: the most frequent class of the training clips.

  Model selection (k, C) maximises the CLIP-level weighted F1 averaged over
  the inner folds; ties go to the smaller k / the smaller C.
* **Scores.** Accuracy, weighted F1 and macro F1 per fold at clip level
  (the headline) and at segment level; mean +- sample std over folds, the
  pooled out-of-fold score with a bootstrap CI over clips, and confusion
  matrices (pooled over folds).
* **Uncertainty.** Every pair of methods is compared on clip-level weighted
  F1: per-fold differences (mean, std, paired t-test, exact sign-flip test)
  and a paired bootstrap CI of the pooled difference, resampling clips. The
  verdict on the claim uses the bootstrap CI: a part of the claim is
  "supported" when the whole CI is above 0, "contradicted" when below.
* **Headline.** Before the verdict the report names the best method overall
  (highest POOLED clip-level weighted F1) and the bootstrap CI of its
  difference from the best perceptual-encoder method (``logreg:ae-nlpd`` /
  ``logreg:ae-msssim``). When a baseline (``logreg:logmel``, k-NN on
  ``logmel-stats`` / ``mfcc-stats``, ``majority``) beats every perceptual
  encoder with the whole CI above 0, the headline says that first, and so
  does the claim's summary: a partly supported claim never hides it.

Encoders come from ``--checkpoints`` (the user declares them trained on
other data; the report WARNS, with the count, when a checkpoint's recorded
training or validation clips -- ``data.train_hashes`` / ``val_hashes``, and
the file lists ``data.train_files`` / ``val_files`` when it has them -- are
among the evaluated clips) or from ``--train-config``: one autoencoder per
fold and loss, trained with the training engine on a temporary library that
holds only the fold's training clips (rows and cached features copied
through the :class:`~perceptlab.library.store.Library` API), so the encoder
never saw the fold's test clips (checked after each run from the
checkpoint's recorded split). Each fold's ``best.pt`` and ``last.pt`` are
kept (``run_evaluation(..., keep_encoders=DIR)``: ``DIR/fold-<k>-<loss>/``)
and listed in the report. Either way, an encoder whose best validation loss
came at its last epoch is reported as not converged.

Matching a recorded training file to a library clip: a clip's
``content_hash`` is the blake2b-128 of the file's bytes (32 hex digits;
:func:`perceptlab.library.store.file_hash`), not a SHA-256. A recorded
``content_hash`` (or a bare 32-digit hash) is matched to it directly; a
recorded ``sha256`` (or a bare 64-digit hash) is matched to the SHA-256 of
the clip's file as it is on disk now, computed only for that, and only when
the file still has the content that was imported (its blake2b equals the
clip's). A clip whose file cannot be read so is matched by file name and
size (name alone when the entry records no size) and counted apart, as
"matched by name".
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from perceptlab.atomic import atomic_path, atomic_write_bytes
from perceptlab.audio.features import FeatureConfig, windows
from perceptlab.jsonable import jsonable
from perceptlab.versions import package_versions
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, Cancelled, ProgressFn, check_cancel

from . import stats as st

FORMAT = "perceptlab-evaluation"
FORMAT_VERSION = 1

#: The losses the training engine knows (``--train-config`` trains one encoder per loss and fold).
TRAIN_LOSSES = ("mse", "nlpd", "msssim")
PERCEPTUAL_LOSSES = ("nlpd", "msssim")

CLAIM = (
    "Namgyal et al. (2024): logistic regression on the latent features of an autoencoder trained "
    "with a perceptual loss (NLPD, MS-SSIM) classifies genre better than (a) k-NN on the same "
    "metric used directly as a distance between spectrograms, and (b) the features of the same "
    "autoencoder trained with MSE."
)

LogFn = Callable[[str], None]


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything that defines an evaluation run.

    Attributes
    ----------
    metrics : tuple of str
        Spectrogram metrics for k-NN (and, with ``train_config``, the losses
        to train unless ``losses`` is given).
    checkpoints : tuple of str
        Encoder checkpoints (``best.pt``) declared to be trained on data
        disjoint from this library.
    train_config : str or None
        A training TOML: train one encoder per fold and loss instead.
    train_overrides : tuple of str
        ``KEY=VALUE`` overrides for the training config (like ``train --set``).
    losses : tuple of str
        Losses to train with ``train_config`` (default: ``metrics`` that are losses).
    folds, seed, k, k_grid, c_grid, inner_folds
        Outer folds, the seed of every split and resample, k of ``knn:``,
        the k candidates of ``knn-cv:``, the C candidates of logistic
        regression, inner folds for k and C.
    segment_frames, segment_hop, max_segments_per_clip
        Window length and hop in frames; at most this many evenly spaced
        windows per clip (0 = all).
    labels : tuple of str
        Only these classes (empty: all).
    bootstrap, confidence
        Bootstrap resamples and CI level.
    device : str or None
        Where metric matrices and embeddings are computed (None: CUDA if present).
    features : FeatureConfig
        The log-mel the metrics compare.
    memory_budget_mb : float
        Working memory of the distance-matrix engine.
    """

    metrics: tuple[str, ...] = ("mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats")
    checkpoints: tuple[str, ...] = ()
    train_config: str | None = None
    train_overrides: tuple[str, ...] = ()
    losses: tuple[str, ...] = ()
    folds: int = 5
    seed: int = 0
    k: int = 5
    k_grid: tuple[int, ...] = (1, 3, 5, 7, 9, 15)
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    inner_folds: int = 3
    segment_frames: int = 128
    segment_hop: int = 64
    max_segments_per_clip: int = 0
    labels: tuple[str, ...] = ()
    bootstrap: int = 2000
    confidence: float = 0.95
    device: str | None = None
    features: FeatureConfig = FeatureConfig()
    memory_budget_mb: float = 512.0
    logreg_max_iter: int = 2000

    def __post_init__(self):
        for name in ("metrics", "checkpoints", "train_overrides", "losses", "k_grid", "c_grid", "labels"):
            v = getattr(self, name)
            object.__setattr__(self, name, tuple([v] if isinstance(v, str) else v))
        object.__setattr__(self, "checkpoints", tuple(str(c) for c in self.checkpoints))
        problems = []
        if self.checkpoints and self.train_config:
            problems.append("give --checkpoints or --train-config, not both")
        if not self.metrics and not self.checkpoints and not self.train_config:
            problems.append("nothing to evaluate: no --metrics, --checkpoints or --train-config")
        if self.folds < 2:
            problems.append(f"--folds must be at least 2, got {self.folds}")
        if self.k < 1:
            problems.append(f"--k must be at least 1, got {self.k}")
        if not self.k_grid or any(int(k) < 1 for k in self.k_grid):
            problems.append(f"k_grid needs positive values, got {list(self.k_grid)}")
        if not self.c_grid or any(not (float(c) > 0 and math.isfinite(float(c))) for c in self.c_grid):
            problems.append(f"c_grid needs positive values, got {list(self.c_grid)}")
        if self.inner_folds < 2:
            problems.append(f"--inner-folds must be at least 2, got {self.inner_folds}")
        if self.segment_frames < 8:
            problems.append(f"--segment-frames must be at least 8, got {self.segment_frames}")
        if self.segment_hop < 1:
            problems.append(f"--segment-hop must be at least 1, got {self.segment_hop}")
        if self.max_segments_per_clip < 0:
            problems.append(f"--max-segments-per-clip must be >= 0, got {self.max_segments_per_clip}")
        if self.bootstrap < 100:
            problems.append(f"--bootstrap must be at least 100, got {self.bootstrap}")
        if not 0.5 <= self.confidence < 1:
            problems.append(f"confidence must be in [0.5, 1), got {self.confidence}")
        bad = [x for x in self.losses if x not in TRAIN_LOSSES]
        if bad:
            problems.append(f"--losses: unknown {bad}; choose from {', '.join(TRAIN_LOSSES)}")
        if self.losses and not self.train_config:
            problems.append("--losses needs --train-config")
        if self.train_overrides and not self.train_config:
            problems.append("--set needs --train-config")
        if problems:
            raise ValueError("evaluate: " + "; ".join(problems))

    @property
    def mode(self) -> str:
        """``"checkpoints"``, ``"train-config"`` or ``"none"`` (k-NN and baselines only)."""
        return "checkpoints" if self.checkpoints else ("train-config" if self.train_config else "none")

    @property
    def train_losses(self) -> list[str]:
        if self.losses:
            return list(self.losses)
        return [m for m in self.metrics if m in TRAIN_LOSSES]

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, FeatureConfig):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        out["mode"] = self.mode
        return out


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """The result of :func:`run_evaluation`: one JSON-able dict (``data``) and views of it.

    ``data`` is exactly what ``report.json`` holds (see :func:`write_report`
    and the README for the schema), so a report loaded from disk
    (:meth:`load`) is as good as a fresh one.
    """

    data: dict

    def to_json(self) -> dict:
        """The report as plain JSON types (a deep copy)."""
        return copy.deepcopy(self.data)

    @classmethod
    def from_json(cls, data: dict) -> "EvaluationReport":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a perceptlab evaluation report (format {data.get('format')!r})")
        return cls(copy.deepcopy(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvaluationReport":
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        return cls.from_json(json.loads(p.read_text(encoding="utf-8")))

    @property
    def methods(self) -> list[dict]:
        """Methods, best first (by clip-level weighted F1, mean over folds)."""
        return sorted(self.data["methods"], key=lambda m: m["rank"])

    @property
    def verdict(self) -> str:
        return self.data["claim"]["verdict"]

    @property
    def headline(self) -> str:
        """One line: the best method, and how it compares with the best perceptual encoder."""
        return (self.data.get("headline") or {}).get("text", "")

    @property
    def warnings(self) -> list[str]:
        return list(self.data["warnings"])

    def table(self) -> list[dict]:
        """Rows for a table view, best first."""
        rows = []
        for m in self.methods:
            c, s = m["clip"], m["segment"]
            rows.append({
                "rank": m["rank"], "method": m["name"], "kind": m["kind"], "description": m["description"],
                "f1_weighted": c["f1_weighted"]["mean"], "f1_weighted_std": c["f1_weighted"]["std"],
                "f1_weighted_pooled": c["f1_weighted"]["pooled"], "f1_weighted_ci": c["f1_weighted"]["ci"],
                "accuracy": c["accuracy"]["mean"], "accuracy_std": c["accuracy"]["std"],
                "f1_macro": c["f1_macro"]["mean"], "f1_macro_std": c["f1_macro"]["std"],
                "segment_f1_weighted": s["f1_weighted"]["mean"], "segment_f1_weighted_std": s["f1_weighted"]["std"],
                "params": m["params_summary"],
            })
        return rows

    def text(self) -> str:
        """A plain-text summary for the terminal: the headline first, then the table and verdict."""
        return render_text(self.data)


def render_text(data: dict) -> str:
    """The terminal summary of a report dict: the headline line, then the renderer's table and verdict."""
    from .report_markdown import render_text as table_text

    head = (data.get("headline") or {}).get("text")
    body = table_text(data)
    return f"headline: {head}\n{body}" if head else body


def render_markdown(data: dict) -> str:
    """``report.md`` of a report dict: the headline under the title and the kept encoders' files."""
    from .report_markdown import render_markdown as base

    text = base(data)
    head = (data.get("headline") or {}).get("text")
    if head:
        title, sep, rest = text.partition("\n\n")
        text = f"{title}{sep}**{head}**\n\n{rest}"
    kept = [r for r in (data.get("encoders") or {}).get("runs", []) if r.get("kept")]
    if kept:
        lines = ["## Kept encoders", "",
                 "Each fold's autoencoders, trained on that fold's training clips only (`best.pt` for use, "
                 "`last.pt` to resume):", ""]
        for r in kept:
            conv = " -- best at the last epoch: not converged" if r.get("best_at_last_epoch") else ""
            lines.append(f"* fold {r['fold']}, {r['loss']}: `{r['kept']['best']}`, `{r['kept']['last']}` "
                         f"(best epoch {r['best_epoch']} of {r['epochs']}){conv}")
        block = "\n".join(lines) + "\n\n"
        at = text.find("## Files\n")
        text = text[:at] + block + text[at:] if at >= 0 else text + "\n" + block
    return text


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------


class _Progress:
    """Stages with weights mapped onto one ``progress(done, 1000)`` scale."""

    SCALE = 1000

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None, log: LogFn | None,
                 stages: list[tuple[str, float]]):
        self.progress, self.cancel, self.log = progress, cancel, log
        total = sum(w for _, w in stages) or 1.0
        self.span: dict[str, tuple[float, float]] = {}
        acc = 0.0
        for name, w in stages:
            self.span[name] = (acc / total, (acc + w) / total)
            acc += w
        self.timings: dict[str, float] = {}
        self._t: dict[str, float] = {}
        self._last = -1

    def _emit(self, frac: float) -> None:
        units = int(round(min(1.0, max(0.0, frac)) * self.SCALE))
        if self.progress is not None and units > self._last:  # never backwards
            self._last = units
            self.progress(units, self.SCALE)

    def start(self, name: str, message: str | None = None) -> ProgressFn:
        check_cancel(self.cancel)
        self._t[name] = time.perf_counter()
        if message and self.log is not None:
            self.log(message)
        a, b = self.span.get(name, (0.0, 0.0))
        self._emit(a)

        def sub(done: int, total: int) -> None:
            self._emit(a + (b - a) * (done / total if total else 0.0))

        return sub

    def end(self, name: str) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - self._t.pop(name), 3)
        self._emit(self.span.get(name, (0.0, 0.0))[1])
        check_cancel(self.cancel)


@contextmanager
def _captured_warnings(sink: list[str], where: str):
    """Record (not raise, not print) warnings of model fitting; the report lists them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        sink.append(f"{where}: {w.category.__name__}: {str(w.message).splitlines()[0]}")


# --------------------------------------------------------------------------
# data: clips -> segments
# --------------------------------------------------------------------------


@dataclass
class SegmentData:
    """The evaluated clips and their segments."""

    clips: list[Clip]
    classes: list[str]
    y_clip: np.ndarray  # (N,) class index
    segs: np.ndarray  # (S, 1, F, T) float32
    seg_clip: np.ndarray  # (S,) clip index
    seg_window: np.ndarray  # (S,) index of the window among the clip's windows()
    n_windows: np.ndarray  # (N,) windows() of each clip before any subsampling
    failed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    dropped_classes: dict = field(default_factory=dict)

    @property
    def y_seg(self) -> np.ndarray:
        return self.y_clip[self.seg_clip]

    @property
    def hashes(self) -> list[str]:
        return [c.content_hash for c in self.clips]


def _chosen_windows(n: int, limit: int) -> np.ndarray:
    if limit <= 0 or n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def load_segments(library: Library, config: EvaluateConfig, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None) -> SegmentData:
    """Pick the clips, load their cached images and cut them into segments.

    Raises
    ------
    ValueError
        Fewer than two classes with at least ``folds`` clips each.
    """
    from perceptlab.audio.decode import AudioError
    from perceptlab.library.features import clip_image

    rows = library.clips(include_failed=True)
    failed = [{"path": c.path, "reason": c.error or "not imported"} for c in rows if not c.ok]
    skipped: list[dict] = []
    wanted = set(config.labels)
    candidates = []
    for c in rows:
        if not c.ok:
            continue
        if not c.label:
            skipped.append({"path": c.path, "reason": "no label"})
        elif wanted and c.label not in wanted:
            continue
        else:
            candidates.append(c)
    if wanted and not candidates:
        raise ValueError(f"{library.path}: no clips with labels {sorted(wanted)} (labels there: "
                         f"{', '.join(library.labels()) or 'none'})")
    # identical audio must not land in training and test: count it once
    by_hash: dict[str, list[Clip]] = {}
    for c in candidates:
        by_hash.setdefault(c.content_hash, []).append(c)
    unique = []
    for group in by_hash.values():
        labels = {c.label for c in group}
        if len(labels) > 1:
            skipped += [{"path": c.path, "reason": f"the same audio is labelled {sorted(labels)}"} for c in group]
            continue
        unique.append(group[0])
        skipped += [{"path": c.path, "reason": f"duplicate of {group[0].path}"} for c in group[1:]]

    images: dict[int, np.ndarray] = {}
    for i, c in enumerate(unique):
        check_cancel(cancel)
        try:
            images[c.id] = clip_image(library, c, config.features)
        except AudioError as exc:
            skipped.append({"path": c.path, "reason": str(exc)})
        if progress is not None:
            progress(i + 1, len(unique))
    usable = [c for c in unique if c.id in images]

    counts: dict[str, int] = {}
    for c in usable:
        counts[c.label] = counts.get(c.label, 0) + 1
    dropped = {lab: n for lab, n in sorted(counts.items()) if n < config.folds}
    classes = sorted(lab for lab in counts if lab not in dropped)
    if len(classes) < 2:
        have = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        raise ValueError(
            f"{library.path}: classification needs at least 2 classes with at least --folds "
            f"({config.folds}) usable labelled clips each; clips per class: {have}"
        )
    clips = sorted([c for c in usable if c.label in set(classes)], key=lambda c: (c.label, c.name, c.id))
    index = {lab: i for i, lab in enumerate(classes)}
    y_clip = np.array([index[c.label] for c in clips], dtype=np.int64)

    seg_list, seg_clip, seg_window, n_windows = [], [], [], []
    for ci, c in enumerate(clips):
        w = windows(images[c.id], config.segment_frames, config.segment_hop)  # (W, F, T)
        keep = _chosen_windows(len(w), config.max_segments_per_clip)
        n_windows.append(len(w))
        seg_list.append(w[keep])
        seg_clip += [ci] * len(keep)
        seg_window += list(keep)
    segs = np.ascontiguousarray(np.concatenate(seg_list)[:, None], dtype=np.float32)  # (S, 1, F, T)
    return SegmentData(clips, classes, y_clip, segs, np.array(seg_clip, dtype=np.int64),
                       np.array(seg_window, dtype=np.int64), np.array(n_windows, dtype=np.int64),
                       failed, skipped, dropped)


# --------------------------------------------------------------------------
# folds
# --------------------------------------------------------------------------


def make_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of samples grouped by ``groups`` (a group never straddles a split).

    Returns
    -------
    list of (train_indices, test_indices)
        Every sample is in exactly one test set.

    Raises
    ------
    AssertionError
        If a group ends up on both sides (never expected; checked because
        the whole protocol rests on it).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y)
    groups = np.asarray(groups)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed % (2**32))
    out = []
    for tr, te in splitter.split(np.zeros(len(y)), y, groups):
        shared = set(groups[tr].tolist()) & set(groups[te].tolist())
        if shared:
            raise AssertionError(f"groups {sorted(shared)[:5]} are split across training and test")
        out.append((np.sort(tr), np.sort(te)))
    seen = np.concatenate([te for _, te in out])
    if len(seen) != len(y) or len(np.unique(seen)) != len(y):
        raise AssertionError("the folds' test sets do not partition the samples")
    return out


def _inner_folds(y_seg_tr, groups_tr, y_clip_tr_counts_min: int, config: EvaluateConfig, fold: int):
    n = min(config.inner_folds, y_clip_tr_counts_min)
    if n < 2:
        return []
    return make_folds(y_seg_tr, groups_tr, n, config.seed + 1000 * (fold + 1))


# --------------------------------------------------------------------------
# segment -> clip aggregation and the classifiers
# --------------------------------------------------------------------------


def aggregate_votes(seg_pred: np.ndarray, seg_dist: np.ndarray, seg_clip: np.ndarray, n_classes: int):
    """Clip predictions by majority vote of segment predictions.

    Ties go to the tied class whose voting segments have the smallest summed
    ``seg_dist`` (the summed distance of each segment's neighbours in the
    class it voted for), then to the lower class index.

    Returns
    -------
    (clip_ids, predictions) : sorted unique clip indices and their classes
    """
    clip_ids, pos = np.unique(seg_clip, return_inverse=True)
    counts = np.zeros((len(clip_ids), n_classes))
    dsum = np.zeros((len(clip_ids), n_classes))
    np.add.at(counts, (pos, seg_pred), 1.0)
    np.add.at(dsum, (pos, seg_pred), seg_dist)
    tied = counts == counts.max(1, keepdims=True)
    return clip_ids, np.argmin(np.where(tied, dsum, np.inf), 1)


def aggregate_proba(seg_proba: np.ndarray, seg_clip: np.ndarray):
    """Clip predictions by the mean of segment class probabilities (ties: lower class index)."""
    clip_ids, pos = np.unique(seg_clip, return_inverse=True)
    sums = np.zeros((len(clip_ids), seg_proba.shape[1]))
    np.add.at(sums, pos, seg_proba)
    return clip_ids, np.argmax(sums / np.bincount(pos)[:, None], 1)


def knn_sorted(d: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of the ``k_max`` nearest columns of each row, nearest first.

    A stable sort: equal distances go to the lower training index.
    """
    k_max = min(k_max, d.shape[1])
    order = np.argsort(d, axis=1, kind="stable")[:, :k_max]
    return order, np.take_along_axis(d, order, 1)


def knn_vote(order: np.ndarray, dist: np.ndarray, y_train: np.ndarray, k: int, n_classes: int):
    """Segment predictions from sorted neighbours: (pred, summed distance to the predicted class)."""
    k = min(k, order.shape[1])
    lab = y_train[order[:, :k]]  # (T, k)
    rows = np.repeat(np.arange(lab.shape[0]), k)
    counts = np.zeros((lab.shape[0], n_classes))
    dsum = np.zeros((lab.shape[0], n_classes))
    np.add.at(counts, (rows, lab.ravel()), 1.0)
    np.add.at(dsum, (rows, lab.ravel()), dist[:, :k].ravel())
    tied = counts == counts.max(1, keepdims=True)
    pred = np.argmin(np.where(tied, dsum, np.inf), 1)
    return pred, dsum[np.arange(len(pred)), pred]


def _clip_wf1(y_clip, clip_ids, pred, n_classes) -> float:
    return st.scores(y_clip[clip_ids], pred, n_classes)["f1_weighted"]


def _logreg(c: float, seed: int, max_iter: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=max_iter, random_state=seed))


def _proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    p = model.predict_proba(x)
    out = np.zeros((x.shape[0], n_classes))
    out[:, model.classes_.astype(np.int64)] = p
    return out


# --------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------


@dataclass
class _Method:
    name: str
    kind: str  # knn | knn-cv | logreg-ae | logreg-logmel | majority
    representation: str
    description: str
    loss: str | None = None
    encoder: dict | None = None
    folds: list = field(default_factory=list)
    clip_pred: np.ndarray | None = None
    seg_pred: np.ndarray | None = None
    warnings: list = field(default_factory=list)


class _Runner:
    """One outer cross-validation over all methods."""

    def __init__(self, data: SegmentData, config: EvaluateConfig, folds, cancel: CancelFn | None = None):
        self.d, self.cfg, self.folds, self.cancel = data, config, folds, cancel
        self.C = len(data.classes)
        self.y_seg = data.y_seg
        self.inner = []
        for i, (tr, _) in enumerate(folds):
            tr_clips = np.unique(data.seg_clip[tr])
            min_count = int(np.bincount(data.y_clip[tr_clips], minlength=self.C).min())
            self.inner.append(_inner_folds(self.y_seg[tr], data.seg_clip[tr], min_count, config, i))

    def _new(self, m: _Method) -> _Method:
        m.clip_pred = np.full(len(self.d.clips), -1, dtype=np.int64)
        m.seg_pred = np.full(len(self.y_seg), -1, dtype=np.int64)
        return m

    def _record(self, m: _Method, i: int, te, seg_pred, clip_ids, clip_pred, params: dict) -> None:
        m.seg_pred[te] = seg_pred
        m.clip_pred[clip_ids] = clip_pred
        m.folds.append({
            "fold": i + 1,
            "clip": st.scores(self.d.y_clip[clip_ids], clip_pred, self.C),
            "segment": st.scores(self.y_seg[te], seg_pred, self.C),
            "params": params,
        })

    # -- k-NN ------------------------------------------------------------------
    def knn(self, metric: str, dmat, display: str, note: str = "") -> tuple[_Method, _Method]:
        """k-NN with fixed k and with k by inner CV.

        ``dmat`` is the (S, S) distance matrix, or a callable
        ``dmat(rows, cols) -> (len(rows), len(cols))`` whose distances may
        depend on what was fitted on ``cols`` (always the training segments
        of the split at hand).
        """
        d, cfg = self.d, self.cfg
        dist_of = dmat if callable(dmat) else (lambda rows, cols: dmat[np.ix_(rows, cols)])
        fixed = self._new(_Method(
            f"knn:{metric}", "knn", metric,
            f"k-NN (k={cfg.k}) on {display} distances between segments{note}; clip = majority vote"))
        tuned = self._new(_Method(
            f"knn-cv:{metric}", "knn-cv", metric,
            f"k-NN on {display} distances{note}, k in {list(cfg.k_grid)} by inner CV; clip = majority vote"))
        k_max = max(max(cfg.k_grid), cfg.k)
        for i, (tr, te) in enumerate(self.folds):
            order, dist = knn_sorted(dist_of(te, tr), k_max)
            y_tr = self.y_seg[tr]
            k_fixed = min(cfg.k, len(tr))
            pred, pd_ = knn_vote(order, dist, y_tr, k_fixed, self.C)
            cid, cp = aggregate_votes(pred, pd_, d.seg_clip[te], self.C)
            self._record(fixed, i, te, pred, cid, cp, {"k": k_fixed})
            # inner CV for k: training segments only
            scores: dict[int, list[float]] = {}
            for itr, ite in self.inner[i]:
                check_cancel(self.cancel)
                a, b = tr[itr], tr[ite]
                io, idist = knn_sorted(dist_of(b, a), k_max)
                for k in cfg.k_grid:
                    if k > len(a):
                        continue
                    p, pdist = knn_vote(io, idist, self.y_seg[a], k, self.C)
                    c_ids, c_pred = aggregate_votes(p, pdist, d.seg_clip[b], self.C)
                    scores.setdefault(int(k), []).append(_clip_wf1(d.y_clip, c_ids, c_pred, self.C))
            if scores:
                means = {k: float(np.mean(v)) for k, v in sorted(scores.items())}
                best = max(means, key=lambda k: (means[k], -k))
            else:
                means, best = {}, min(cfg.k, len(tr))
            pred, pd_ = knn_vote(order, dist, y_tr, best, self.C)
            cid, cp = aggregate_votes(pred, pd_, d.seg_clip[te], self.C)
            self._record(tuned, i, te, pred, cid, cp, {"k": int(best), "inner_f1_weighted": means})
        return fixed, tuned

    # -- logistic regression ------------------------------------------------------
    def logreg(self, m: _Method, features: Callable[[int], np.ndarray]) -> _Method:
        d, cfg = self.d, self.cfg
        self._new(m)
        for i, (tr, te) in enumerate(self.folds):
            x = features(i)  # (S, D) for this fold's encoder
            scores: dict[float, list[float]] = {}
            for itr, ite in self.inner[i]:
                a, b = tr[itr], tr[ite]
                for c in cfg.c_grid:
                    check_cancel(self.cancel)
                    with _captured_warnings(m.warnings, f"{m.name} fold {i + 1} inner C={c:g}"):
                        model = _logreg(c, cfg.seed, cfg.logreg_max_iter).fit(x[a], self.y_seg[a])
                    c_ids, c_pred = aggregate_proba(_proba(model, x[b], self.C), d.seg_clip[b])
                    scores.setdefault(float(c), []).append(_clip_wf1(d.y_clip, c_ids, c_pred, self.C))
            if scores:
                means = {c: float(np.mean(v)) for c, v in sorted(scores.items())}
                best = max(means, key=lambda c: (means[c], -c))
            else:
                means, best = {}, 1.0
            with _captured_warnings(m.warnings, f"{m.name} fold {i + 1} C={best:g}"):
                model = _logreg(best, cfg.seed, cfg.logreg_max_iter).fit(x[tr], self.y_seg[tr])
            proba = _proba(model, x[te], self.C)
            cid, cp = aggregate_proba(proba, d.seg_clip[te])
            self._record(m, i, te, np.argmax(proba, 1), cid, cp,
                         {"C": best, "inner_f1_weighted": {f"{c:g}": v for c, v in means.items()}})
        return m

    def majority(self) -> _Method:
        d = self.d
        m = self._new(_Method("majority", "majority", "none",
                              "the most frequent class of the training clips (a floor: with balanced "
                              "classes and stratified folds it falls below chance, as the training majority "
                              "is the class with fewest clips in the test fold)"))
        for i, (tr, te) in enumerate(self.folds):
            tr_clips = np.unique(d.seg_clip[tr])
            cls = int(np.argmax(np.bincount(d.y_clip[tr_clips], minlength=self.C)))
            cid = np.unique(d.seg_clip[te])
            self._record(m, i, te, np.full(len(te), cls), cid, np.full(len(cid), cls),
                         {"class": d.classes[cls]})
        return m


# --------------------------------------------------------------------------
# distances and embeddings
# --------------------------------------------------------------------------


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


def _primary_loss(loss) -> str | None:
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict) and loss:
        return max(sorted(loss), key=lambda k: loss[k])
    return None


def embed_segments(enc, library: Library, data: SegmentData, config: EvaluateConfig,
                   cancel: CancelFn | None = None) -> np.ndarray:
    """(S, D) embeddings of the segments with one encoder.

    A segment as long as the encoder's patch is one patch; a longer or
    shorter one is embedded like a clip (mean over its patches, see
    :meth:`perceptlab.models.encoder.Encoder.embed_image`). An encoder with
    another log-mel config gets its own images, cut into the same windows.
    """
    from perceptlab.library.features import clip_image

    if enc.feature_config == config.features:
        segs = data.segs
    else:
        parts = []
        for ci, c in enumerate(data.clips):
            check_cancel(cancel)
            w = windows(clip_image(library, c, enc.feature_config), config.segment_frames, config.segment_hop)
            if len(w) != data.n_windows[ci]:
                raise ValueError(
                    f"{enc.path}: its log-mel config (sample_rate {enc.feature_config.sample_rate}, hop "
                    f"{enc.feature_config.hop_length}) gives other frames than the evaluation's; its "
                    f"segments would not line up"
                )
            parts.append(w[data.seg_window[data.seg_clip == ci]])
        segs = np.concatenate(parts)[:, None].astype(np.float32)
    if segs.shape[-1] == enc.patch_frames:
        out = []
        for i in range(0, len(segs), 512):
            check_cancel(cancel)
            out.append(enc.embed_patches(segs[i : i + 512]).numpy())
        return np.concatenate(out).astype(np.float32)
    out = np.empty((len(segs), enc.dim()), dtype=np.float32)
    for i, s in enumerate(segs):
        if i % 64 == 0:
            check_cancel(cancel)
        out[i] = enc.embed_image(s[0])
    return out


def logmel_features(segs: np.ndarray) -> np.ndarray:
    """(S, 2F): mean and standard deviation over time of each mel band."""
    x = segs[:, 0].astype(np.float64)  # (S, F, T)
    return np.concatenate([x.mean(-1), x.std(-1)], 1).astype(np.float32)


def _hash_kind(text) -> str | None:
    """``"content_hash"`` for 32 hex digits (the library's blake2b-128), ``"sha256"`` for 64, else None."""
    if isinstance(text, str) and len(text) in (32, 64) and all(ch in "0123456789abcdef" for ch in text.lower()):
        return "content_hash" if len(text) == 32 else "sha256"
    return None


def recorded_files(rows) -> list[dict]:
    """A checkpoint's recorded file list (``data.train_files``) as dicts.

    Entries may be ``{"path", "sha256"}``, ``{"path", "content_hash", ...}``
    (what the training engine writes), a bare content hash (32 hex digits) or
    SHA-256 (64), or a bare path. Each comes back as ``{"name", "size",
    "content_hash", "sha256"}`` (lower-case hashes; None where not recorded).
    """
    out = []
    for r in rows or []:
        e = {"name": None, "size": None, "content_hash": None, "sha256": None}
        if isinstance(r, str):
            kind = _hash_kind(r)
            if kind:
                e[kind] = r.lower()
            else:
                e["name"] = Path(r).name
        elif isinstance(r, dict):
            path = r.get("path")
            e["name"] = r.get("name") or (Path(str(path)).name if path else None)
            e["size"] = r.get("size")
            for key in ("content_hash", "sha256"):
                v = r.get(key)
                e[key] = v.lower() if isinstance(v, str) and v else None
        else:
            continue
        out.append(e)
    return out


class _ClipMatcher:
    """Which evaluated clips a recorded training list names (see the module docstring for the rules)."""

    def __init__(self, clips: Sequence[Clip]):
        self.clips = list(clips)
        self.by_hash = {c.content_hash: i for i, c in enumerate(self.clips)}
        self._sha: dict[str, int] | None = None
        self._unverified: set[int] = set()

    def _sha256_index(self) -> dict[str, int]:
        """SHA-256 of each clip's file, for the files that still hold the imported content."""
        import hashlib

        if self._sha is None:
            self._sha = {}
            for i, c in enumerate(self.clips):
                sha, b2 = hashlib.sha256(), hashlib.blake2b(digest_size=16)
                try:
                    with open(c.path, "rb") as fh:
                        while chunk := fh.read(1 << 20):
                            sha.update(chunk)
                            b2.update(chunk)
                except OSError:
                    self._unverified.add(i)
                    continue
                if b2.hexdigest() != c.content_hash:  # changed since import: not the audio evaluated
                    self._unverified.add(i)
                    continue
                self._sha[sha.hexdigest()] = i
        return self._sha

    def _by_name(self, e: dict, allowed) -> set[int]:
        if not e["name"]:
            return set()
        return {i for i in allowed if Path(self.clips[i].path).name == e["name"]
                and (e["size"] is None or self.clips[i].size == e["size"])}

    def match(self, hashes, files) -> tuple[set[int], set[int]]:
        """(clips matched by content, clips matched only by file name) for a hash list and a file list."""
        content = {self.by_hash[h] for h in (hashes or []) if h in self.by_hash}
        by_name: set[int] = set()
        for e in recorded_files(files):
            if e["content_hash"]:
                if e["content_hash"] in self.by_hash:
                    content.add(self.by_hash[e["content_hash"]])
            elif e["sha256"]:
                hit = self._sha256_index().get(e["sha256"])
                if hit is not None:
                    content.add(hit)
                else:
                    by_name |= self._by_name(e, self._unverified)
            else:
                by_name |= self._by_name(e, range(len(self.clips)))
        return content, by_name - content


def _convergence(enc) -> dict:
    """Whether a checkpoint's best epoch was its run's last, from what it (and a last.pt beside it) records."""
    m, prog = enc.metrics or {}, enc.progress or {}
    history = m.get("history") or []
    best = m.get("best_epoch")
    saved = prog.get("epoch") or len(history) or None
    last, source = None, None
    if saved is not None and best is not None and saved > best:
        last, source = saved, "the checkpoint's progress"
    else:
        sib = enc.path.with_name("last.pt") if enc.path is not None and enc.path.name != "last.pt" else None
        if sib is not None and sib.is_file():
            from perceptlab.models.checkpoint import CheckpointError, load_checkpoint

            try:
                other = load_checkpoint(sib)
            except CheckpointError:
                other = None
            if other is not None and (other.get("data") or {}).get("selection_hash") == enc.data.get(
                    "selection_hash") and (other.get("train_config") or {}).get("name") == enc.name:
                last, source = (other.get("progress") or {}).get("epoch"), f"{sib.name} beside it"
        if last is None and enc.train_config.get("epochs"):
            last, source = int(enc.train_config["epochs"]), "its training config's epochs"
        if last is None and saved is not None:
            last, source = saved, "the checkpoint's progress"
    val = any(h.get("val_loss") is not None for h in history) if history else True
    return {"best_epoch": best, "last_epoch": last, "source": source, "validated": val,
            "best_at_last_epoch": best is not None and last is not None and best >= last}


def not_converged_warning(label: str, best_epoch, last_epoch, validated: bool = True) -> str:
    what = "best validation loss" if validated else "best training loss (no validation split)"
    return (f"{label}: {what} at the last epoch ({best_epoch} of {last_epoch}): not converged; train longer")


def _checkpoint_info(enc, data: SegmentData, library_fp: str) -> tuple[dict, list[str]]:
    d = enc.data or {}
    info = {
        "path": str(enc.path), "name": enc.name, "loss": enc.loss, "primary_loss": _primary_loss(enc.loss),
        "model_hash": enc.model_hash, "latent_dim": enc.latent_dim, "patch_frames": enc.patch_frames,
        "feature_config": enc.feature_config.to_dict(), "fingerprint": d.get("fingerprint"),
        "library": d.get("library"), "trained_on_this_library": d.get("fingerprint") == library_fp,
        "epochs": (enc.progress or {}).get("epoch"), "convergence": _convergence(enc),
    }
    warns = []
    recorded = [k for k in ("train_hashes", "val_hashes", "train_files", "val_files") if d.get(k) is not None]
    if d.get("train_hashes") is None and d.get("train_files") is None:
        info["overlap"] = None
        warns.append(
            f"checkpoint {enc.path}: it records no training clips (data.train_hashes or data.train_files), so "
            f"its independence from the evaluated clips cannot be checked; its scores are only as honest as "
            f"that declaration"
        )
        return info, warns
    matcher = _ClipMatcher(data.clips)
    tr, tr_name = matcher.match(d.get("train_hashes"), d.get("train_files"))
    va, va_name = matcher.match(d.get("val_hashes"), d.get("val_files"))
    va, va_name = va - tr - tr_name, va_name - tr - tr_name
    n_eval = len(data.clips)
    n_tr, n_val = len(tr | tr_name), len(va | va_name)
    info["overlap"] = {"train": n_tr, "val": n_val, "evaluated": n_eval,
                       "train_by_name": len(tr_name), "val_by_name": len(va_name), "recorded": recorded,
                       "train_clips": sorted(data.clips[i].id for i in tr | tr_name),
                       "val_clips": sorted(data.clips[i].id for i in va | va_name)}
    if n_tr or n_val:
        same = " (it was trained on this very library: same fingerprint)" if info["trained_on_this_library"] else ""
        named = len(tr_name) + len(va_name)
        how = (f" ({named} of them matched by file name only: their files could not be read to compare "
               f"content)" if named else "")
        examples = ", ".join(data.clips[i].name for i in sorted(tr | tr_name | va | va_name)[:3])
        warns.append(
            f"checkpoint {enc.path} ({enc.name}) was trained on {n_tr} of the {n_eval} evaluated clips and "
            f"validated on {n_val} more{how}{same}, e.g. {examples}: its encoder has seen the test folds, so its "
            f"scores are optimistic and the verdict on the claim is not trustworthy; use --train-config "
            f"(one encoder per fold) or a checkpoint trained on other data"
        )
    return info, warns


# --------------------------------------------------------------------------
# per-fold training (--train-config)
# --------------------------------------------------------------------------


def subset_library(source: Library, clips: Sequence[Clip], path: str | os.PathLike,
                   features: Sequence[FeatureConfig] = ()) -> Path:
    """A new library at ``path`` holding only ``clips`` (their rows and cached images).

    Images for each feature config in ``features`` are taken from (or
    computed into) the source's cache and copied, so training on the subset
    decodes nothing.
    """
    from perceptlab.library.features import clip_image

    with Library(path) as sub:
        with sub.transaction():
            for c in clips:
                row = dataclasses.asdict(c)
                for key in ("id", "imported_at"):
                    row.pop(key)
                sub.upsert_clip(**row)
                for fc in features:
                    sub.put_features(c.content_hash, fc.hash, clip_image(source, c, fc))
        return sub.path


def _train_fold_encoders(library: Library, data: SegmentData, config: EvaluateConfig, folds, losses: list[str],
                         workdir: Path, prog: _Progress, cancel: CancelFn | None, log: LogFn | None,
                         keep: str | os.PathLike | None = None):
    """Train one encoder per (fold, loss) on the fold's training clips; embed every segment with it.

    With ``keep``, each run's ``best.pt`` and ``last.pt`` are copied to
    ``keep/fold-<k>-<loss>/`` as soon as the run ends.

    Returns ({loss: [per-fold (S, D) embeddings]}, [per-run records], the base config).
    """
    from perceptlab.models.checkpoint import load_checkpoint
    from perceptlab.models.encoder import Encoder
    from perceptlab.train import load_config, train
    from perceptlab.train.progress import CallbackReporter

    base = load_config(config.train_config, list(config.train_overrides))
    feats: dict[str, list[np.ndarray]] = {loss: [] for loss in losses}
    records = []
    sub = prog.start("train", f"training {len(folds) * len(losses)} encoders (folds x losses)")
    n_runs, run = len(folds) * len(losses), 0
    for i, (tr, te) in enumerate(folds):
        tr_clips = [data.clips[j] for j in np.unique(data.seg_clip[tr])]
        test_hashes = {data.clips[j].content_hash for j in np.unique(data.seg_clip[te])}
        lib_path = subset_library(library, tr_clips, workdir / f"fold{i + 1}.sqlite", [base.features])
        for loss in losses:
            check_cancel(cancel)
            name = f"evaluate-fold{i + 1}-{loss}"
            out_dir = workdir / f"fold{i + 1}-{loss}"
            sets = list(config.train_overrides) + [
                f"name={json.dumps(name)}", f"out_dir={json.dumps(str(out_dir))}",
                f"data.library={json.dumps(str(lib_path))}", "data.labels=[]", f"loss={json.dumps(loss)}",
            ]
            cfg = load_config(config.train_config, sets)
            if log is not None:
                log(f"training {name} on {len(tr_clips)} clips ({run + 1}/{n_runs})")
            done_before = run

            def on_event(ev, _done=done_before):
                if ev.get("event") == "step" and ev.get("steps_per_epoch"):
                    total = ev["steps_per_epoch"] * cfg.epochs
                    sub(int(1000 * (_done + min(1.0, ev["step"] / total))), 1000 * n_runs)

            t0 = time.perf_counter()
            result = train(cfg, reporter=CallbackReporter(on_event), cancel=cancel, handle_signals=False)
            if result.status != "completed" or result.best is None:
                raise Cancelled("cancelled during training")
            enc = Encoder(load_checkpoint(result.best), Path(result.best), _device(config))
            seen = set(enc.data.get("train_hashes") or []) | set(enc.data.get("val_hashes") or [])
            leak = seen & test_hashes
            if leak:  # cannot happen: the subset library holds no test clip
                raise AssertionError(f"{name}: the encoder saw {len(leak)} test clips")
            feats[loss].append(embed_segments(enc, library, data, config, cancel))
            kept = None
            if keep is not None:
                dest = Path(keep).expanduser().resolve() / f"fold-{i + 1}-{_safe(loss)}"
                dest.mkdir(parents=True, exist_ok=True)
                kept = {}
                for kind, src in (("best", result.best), ("last", result.last)):
                    if src and Path(src).is_file():
                        with atomic_path(dest / f"{kind}.pt") as tmp:  # a rerun replaces, never half-writes
                            shutil.copyfile(src, tmp)
                        kept[kind] = str(dest / f"{kind}.pt")
            # The best checkpoint records the best epoch; the run's result says how many it ran.
            best_epoch = (enc.metrics or {}).get("best_epoch", result.best_epoch)
            history = result.history or []
            records.append({
                "fold": i + 1, "loss": loss, "name": name, "model_hash": enc.model_hash,
                "n_train_clips": enc.data.get("n_train_clips"), "n_val_clips": enc.data.get("n_val_clips"),
                "fold_training_clips": len(tr_clips), "test_clips_seen": 0,
                "epochs": result.epochs, "best_epoch": best_epoch, "best_val_loss": result.best_val_loss,
                "best_at_last_epoch": best_epoch is not None and best_epoch >= result.epochs,
                "validated": any(h.get("val_loss") is not None for h in history) if history else True,
                "kept": kept,
                "wall_s": round(time.perf_counter() - t0, 2),
            })
            run += 1
            sub(1000 * run, 1000 * n_runs)
    prog.end("train")
    return feats, records, base


# --------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------


def run_evaluation(
    library: Library | str | os.PathLike,
    config: EvaluateConfig = EvaluateConfig(),
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    log: LogFn | None = None,
    command: list[str] | None = None,
    keep_encoders: str | os.PathLike | None = None,
) -> EvaluationReport:
    """Run the protocol (see the module docstring) and return its report.

    Parameters
    ----------
    library : Library or path
        A path is opened (and closed) here, so a worker thread can pass one.
    config : EvaluateConfig
    progress, cancel : callables
        See :mod:`perceptlab.tasks`; progress is reported on a 0..1000 scale.
    log : callable, optional
        Receives one-line messages about the stage in progress.
    command : list of str, optional
        The command line, recorded in the report.
    keep_encoders : path, optional
        With ``--train-config``: copy each fold's ``best.pt`` and ``last.pt``
        to ``keep_encoders/fold-<k>-<loss>/`` (listed in the report's
        ``encoders.runs[].kept``). None: they are deleted with the run's
        temporary folder.

    Raises
    ------
    ValueError
        Unusable library or options (the message says which and why).
    Cancelled
        ``cancel()`` turned true; nothing is written.
    """
    if not isinstance(library, Library):
        path = Path(library).expanduser()
        if not path.exists():
            raise ValueError(f"{path}: no library here; create one with `perceptlab import DIR --library {path}`")
        with Library(path) as lib:
            return run_evaluation(lib, config, progress, cancel, log=log, command=command,
                                  keep_encoders=keep_encoders)

    from perceptlab.metrics.registry import get_metric

    t_start = time.perf_counter()
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:  # the library's own metrics (calibrated NLPD variants) may be named in --metrics
        from perceptlab.analysis.similarity import register_library_metrics
    except ImportError:
        pass
    else:
        register_library_metrics(library)
    for m in config.metrics:
        if get_metric(m).input_kind != "spectrogram" and not get_metric(m).params.get("baseline"):
            raise ValueError(f"--metrics: {m} compares stored vectors, not spectrogram segments; k-NN here "
                             f"takes spectrogram metrics and baselines ({', '.join(TRAIN_LOSSES)}, "
                             "logmel-stats, mfcc-stats, ...)")
    losses = config.train_losses if config.mode == "train-config" else []
    if config.mode == "train-config":
        from perceptlab.train import load_config

        load_config(config.train_config, list(config.train_overrides))  # fail before any work
        if not losses:
            raise ValueError(f"--train-config: no losses to train; give --losses or --metrics among "
                             f"{', '.join(TRAIN_LOSSES)}")
    encoders = []
    if config.mode == "checkpoints":
        from perceptlab.models.encoder import Encoder

        from perceptlab.models.checkpoint import CheckpointError

        try:
            encoders = [Encoder.load(p, _device(config)) for p in config.checkpoints]
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None

    n_ae = len(encoders) + len(losses)
    stages = [("load", 1.0)]
    for m in config.metrics:
        stages += [(f"matrix:{m}", 3.0), (f"knn:{m}", 1.0)]
    stages += [("train", 8.0 * config.folds * len(losses))] if losses else []
    stages += [("embed", 1.0 * len(encoders))] if encoders else []
    stages += [(f"logreg:{j}", 1.0) for j in range(n_ae)]
    stages += [("baselines", 1.0), ("stats", 0.5)]
    prog = _Progress(progress, cancel, log, stages)
    warns: list[str] = []

    sub = prog.start("load", "loading clips and cutting segments")
    data = load_segments(library, config, sub, cancel)
    prog.end("load")
    fingerprint = library.fingerprint()
    if data.dropped_classes:
        warns.append("classes with fewer clips than folds were left out: "
                     + ", ".join(f"{k} ({v})" for k, v in data.dropped_classes.items()))
    if data.failed:
        warns.append(f"{len(data.failed)} files of the library failed to import and are not evaluated "
                     f"(listed under library.failed)")
    folds = make_folds(data.y_seg, data.seg_clip, config.folds, config.seed)
    runner = _Runner(data, config, folds, cancel)
    device = _device(config)
    methods: list[_Method] = []

    # k-NN on each metric ----------------------------------------------------------
    knn_methods = []
    for metric in config.metrics:
        disp = get_metric(metric).display_name
        note = ""
        if get_metric(metric).params.get("baseline"):
            sub = prog.start(f"matrix:{metric}", f"{disp}: statistics of {len(data.segs)} segments")
            dmat = BaselineDistances(metric, data.segs, config.features, progress=sub, cancel=cancel)
            note = " (statistics z-scored on the fold's training segments)"
        else:
            sub = prog.start(f"matrix:{metric}", f"{disp}: distances between {len(data.segs)} segments")
            dmat = segment_distances(data.segs, metric, device=device, memory_budget_mb=config.memory_budget_mb,
                                     progress=sub, cancel=cancel, features=config.features)
        prog.end(f"matrix:{metric}")
        prog.start(f"knn:{metric}", f"k-NN on {disp}")
        knn_methods += list(runner.knn(metric, dmat, disp, note))
        prog.end(f"knn:{metric}")
        del dmat
    methods += [m for m in knn_methods if m.kind == "knn"] + [m for m in knn_methods if m.kind == "knn-cv"]

    # encoders ------------------------------------------------------------------------
    encoder_info: dict = {"mode": config.mode}
    if config.mode == "checkpoints":
        sub = prog.start("embed", f"embedding {len(data.segs)} segments with {len(encoders)} checkpoints")
        infos = []
        per_loss: dict[str, int] = {}
        for enc in encoders:
            per_loss[_primary_loss(enc.loss) or enc.name] = per_loss.get(_primary_loss(enc.loss) or enc.name, 0) + 1
        used = set()
        feats: dict[str, np.ndarray] = {}
        for j, enc in enumerate(encoders):
            info, w = _checkpoint_info(enc, data, fingerprint)
            warns += w
            infos.append(info)
            key = info["primary_loss"] or enc.name
            name = f"logreg:ae-{key}" if per_loss[key] == 1 else f"logreg:ae-{key}-{enc.name}"
            while name in used:
                name += f"-{j + 1}"
            used.add(name)
            conv = info["convergence"]
            if conv["best_at_last_epoch"]:
                warns.append(not_converged_warning(f"{name} checkpoint {Path(enc.path).name}", conv["best_epoch"],
                                                   conv["last_epoch"], conv["validated"]))
            feats[name] = embed_segments(enc, library, data, config, cancel)
            sub(j + 1, len(encoders))
            m = _Method(name, "logreg-ae", f"ae-{key}",
                        f"logistic regression on the embeddings of {Path(enc.path).name} "
                        f"(loss {json.dumps(enc.loss)}), C by inner CV; clip = mean probability",
                        loss=info["primary_loss"], encoder=info)
            methods.append(m)
        prog.end("embed")
        encoder_info["checkpoints"] = infos
        for j, m in enumerate([m for m in methods if m.kind == "logreg-ae"]):
            prog.start(f"logreg:{j}", f"{m.name}: logistic regression")
            runner.logreg(m, lambda i, x=feats.pop(m.name): x)
            prog.end(f"logreg:{j}")
    elif config.mode == "train-config":
        workdir = Path(tempfile.mkdtemp(prefix="perceptlab-evaluate-"))
        try:
            feats, records, base = _train_fold_encoders(library, data, config, folds, losses, workdir, prog,
                                                        cancel, log, keep_encoders)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        for r in records:
            if r["best_at_last_epoch"]:
                warns.append(not_converged_warning(f"{r['loss']} fold {r['fold']}", r["best_epoch"], r["epochs"],
                                                   r["validated"]))
        encoder_info.update({
            "train_config": str(Path(config.train_config).expanduser().resolve()),
            "overrides": list(config.train_overrides),
            "resolved_config": base.to_dict(),
            "subset": "each fold's encoders were trained on a temporary library holding only that fold's "
                      "training clips (rows and cached features copied); its own validation split comes "
                      "from those clips",
            "runs": records,
            "kept": str(Path(keep_encoders).expanduser().resolve()) if keep_encoders is not None else None,
        })
        for j, loss in enumerate(losses):
            m = _Method(f"logreg:ae-{loss}", "logreg-ae", f"ae-{loss}",
                        f"logistic regression on embeddings of an autoencoder trained per fold with the "
                        f"{loss} loss ({Path(config.train_config).name}, loss overridden), C by inner CV; "
                        f"clip = mean probability", loss=loss)
            prog.start(f"logreg:{j}", f"{m.name}: logistic regression")
            runner.logreg(m, lambda i, xs=feats[loss]: xs[i])
            prog.end(f"logreg:{j}")
            methods.append(m)

    # baselines ---------------------------------------------------------------------
    prog.start("baselines", "baselines: logistic regression on log-mel statistics, majority class")
    lm = logmel_features(data.segs)
    methods.append(runner.logreg(_Method(
        "logreg:logmel", "logreg-logmel", "logmel",
        "logistic regression on mean + std over time of each mel band, C by inner CV; clip = mean probability"),
        lambda i: lm))
    methods.append(runner.majority())
    prog.end("baselines")

    prog.start("stats", "scores, paired comparisons, bootstrap")
    report = _assemble(library, data, config, folds, methods, encoder_info, warns, fingerprint)
    prog.end("stats")
    report["timings"] = dict(prog.timings, total_s=round(time.perf_counter() - t_start, 3))
    report["created"] = created
    report["command"] = list(command) if command is not None else None
    return EvaluationReport(jsonable(report))


def _assemble(library: Library, data: SegmentData, config: EvaluateConfig, folds, methods: list[_Method],
              encoder_info: dict, warns: list[str], fingerprint: str) -> dict:
    C = len(data.classes)
    y_clip, y_seg = data.y_clip, data.y_seg
    boot_w = st.bootstrap_weights(len(y_clip), config.bootstrap, config.seed)
    boot = {}
    out_methods = []
    for m in methods:
        assert (m.clip_pred >= 0).all() and (m.seg_pred >= 0).all(), m.name
        boot[m.name] = st.bootstrap_scores(y_clip, m.clip_pred, C, boot_w)["f1_weighted"]
        entry = {"name": m.name, "kind": m.kind, "representation": m.representation, "loss": m.loss,
                 "description": m.description}
        for level, y, pred in (("clip", y_clip, m.clip_pred), ("segment", y_seg, m.seg_pred)):
            pooled = st.scores(y, pred, C)
            entry[level] = {}
            for s in st.SCORES:
                entry[level][s] = dict(st.mean_std([f[level][s] for f in m.folds]), pooled=pooled[s])
        entry["clip"]["f1_weighted"]["ci"] = st.percentile_ci(boot[m.name], config.confidence)
        entry["params"] = [dict(f["params"], fold=f["fold"]) for f in m.folds]
        entry["params_summary"] = _params_summary(m)
        entry["confusion"] = {"labels": data.classes,
                              "clip": st.confusion(y_clip, m.clip_pred, C).tolist(),
                              "segment": st.confusion(y_seg, m.seg_pred, C).tolist()}
        entry["predictions"] = {"clip": m.clip_pred.tolist()}
        if m.encoder is not None:
            entry["encoder"] = m.encoder
        if m.warnings:
            uniq = sorted(set(w.split(": ", 1)[1] for w in m.warnings))
            warns.append(f"{m.name}: {len(m.warnings)} warnings while fitting, e.g. {uniq[0]}")
            entry["fit_warnings"] = m.warnings[:50]
        out_methods.append(entry)
    order = sorted(range(len(out_methods)), key=lambda i: (-out_methods[i]["clip"]["f1_weighted"]["mean"],
                                                           -out_methods[i]["clip"]["f1_weighted"]["pooled"], i))
    for rank, i in enumerate(order, 1):
        out_methods[i]["rank"] = rank
    ranked = [out_methods[i] for i in order]

    fold_wf1 = {m["name"]: m["clip"]["f1_weighted"]["folds"] for m in out_methods}
    comparisons = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            comp = st.paired_comparison(fold_wf1[a["name"]], fold_wf1[b["name"]], boot[a["name"]],
                                        boot[b["name"]], config.confidence, config.seed)
            comparisons.append({"a": a["name"], "b": b["name"], "score": "f1_weighted", "level": "clip", **comp})

    claim = _claim(ranked, boot, fold_wf1, config, warns)
    headline = _headline(ranked, boot, config)
    if headline["baseline_beats_perceptual"]:
        # A baseline win leads the verdict's summary too (the GUI shows the verdict line).
        claim["summary"] = f"{headline['baseline_sentence']} {claim['summary']}"
        claim["baseline_beats_perceptual"] = headline["baseline_beats_perceptual"]
    clips_json = []
    fold_of = np.zeros(len(data.clips), dtype=np.int64)
    for i, (_, te) in enumerate(folds):
        fold_of[np.unique(data.seg_clip[te])] = i + 1
    n_seg = np.bincount(data.seg_clip, minlength=len(data.clips))
    for ci, c in enumerate(data.clips):
        clips_json.append({"id": c.id, "name": c.name, "path": c.path, "label": c.label,
                           "content_hash": c.content_hash, "fold": int(fold_of[ci]), "n_segments": int(n_seg[ci])})
    folds_json = []
    for i, (tr, te) in enumerate(folds):
        tr_c, te_c = np.unique(data.seg_clip[tr]), np.unique(data.seg_clip[te])
        folds_json.append({
            "fold": i + 1,
            "train_clips": [data.clips[j].id for j in tr_c], "test_clips": [data.clips[j].id for j in te_c],
            "n_train_segments": int(len(tr)), "n_test_segments": int(len(te)),
            "test_class_counts": {data.classes[k]: int(v) for k, v in
                                  enumerate(np.bincount(y_clip[te_c], minlength=C))},
        })
    counts = np.bincount(y_clip, minlength=C)
    mode_text = {
        "checkpoints": "checkpoints: encoders given with --checkpoints, declared by the user to be trained on "
                       "data disjoint from this library (checked against their recorded training clips)",
        "train-config": "train-config: one encoder per fold and loss, trained on that fold's training clips only",
        "none": "no encoders: k-NN on the metrics and the baselines only",
    }[config.mode]
    if config.folds <= 5:
        warns.append(f"with {config.folds} folds the exact sign-flip test cannot give p below "
                     f"{2 / 2 ** config.folds:.3g}; the verdict uses the bootstrap CI over clips")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mode": config.mode,
        "mode_description": mode_text,
        "config": config.to_dict(),
        "versions": package_versions(),
        "seeds": {"folds": config.seed, "inner_folds": f"{config.seed} + 1000 * fold", "bootstrap": config.seed,
                  "logreg": config.seed},
        "library": {
            "path": str(library.path), "fingerprint": fingerprint,
            "n_clips_total": library.count(include_failed=True), "n_evaluated": len(data.clips),
            "classes": data.classes, "class_counts": {c: int(n) for c, n in zip(data.classes, counts)},
            "failed": data.failed, "skipped": data.skipped, "dropped_classes": data.dropped_classes,
        },
        "segments": {
            "frames": config.segment_frames, "hop": config.segment_hop,
            "seconds": round(config.segment_frames * config.features.seconds_per_frame(), 3),
            "n": int(len(data.segs)), "per_clip_min": int(n_seg.min()), "per_clip_max": int(n_seg.max()),
            "per_clip_mean": float(n_seg.mean()), "max_per_clip": config.max_segments_per_clip,
        },
        "protocol": {
            "folds": f"StratifiedGroupKFold({config.folds}, shuffle, seed {config.seed}) over segments grouped "
                     f"by clip: all segments of a recording are on one side of every split",
            "selection": f"k in {list(config.k_grid)} (knn-cv) and C in {list(config.c_grid)} (logreg) by "
                         f"{config.inner_folds}-fold grouped inner CV on the training clips, maximising "
                         f"clip-level weighted F1; ties to the smaller value",
            "aggregation": {
                "knn": "segment: majority of the k nearest training segments (ties: smallest summed "
                       "distance); clip: majority vote of its segments (ties: smallest summed distance); "
                       "baselines (logmel-stats, mfcc-stats): statistics z-scored with the mean and std of "
                       "the training segments of each fold and inner split, then cosine distance",
                "logreg": "clip: the class with the highest mean segment probability",
            },
            "scores": "accuracy, weighted F1, macro F1 (zero_division=0); mean and sample std (ddof=1) over "
                      "folds; pooled = all out-of-fold predictions at once",
            "uncertainty": f"paired differences over folds (t-test, exact sign-flip test) and a "
                           f"{config.bootstrap}-resample paired bootstrap over clips of the pooled "
                           f"difference ({config.confidence:.0%} percentile CI)",
        },
        "folds": folds_json,
        "clips": clips_json,
        "encoders": encoder_info,
        "methods": ranked,
        "comparisons": comparisons,
        "headline": headline,
        "claim": claim,
        "warnings": warns,
    }


def _params_summary(m: _Method) -> str:
    keys = [k for k in ("k", "C", "class") if k in (m.folds[0]["params"] if m.folds else {})]
    if not keys:
        return ""
    k = keys[0]
    vals = [f["params"][k] for f in m.folds]
    fmt = (lambda v: f"{v:g}") if k == "C" else str
    return f"{k}=" + ",".join(fmt(v) for v in vals)


def is_baseline_method(m: dict) -> bool:
    """True for the baselines a perceptual encoder must beat to earn its cost: logistic regression on
    log-mel statistics, k-NN on a baseline metric (``logmel-stats``, ``mfcc-stats``), the majority class."""
    if m["kind"] in ("logreg-logmel", "majority"):
        return True
    if m["kind"] in ("knn", "knn-cv"):
        try:
            from perceptlab.metrics.registry import get_metric

            return bool(get_metric(m["representation"]).params.get("baseline"))
        except (KeyError, ValueError):
            return m["representation"] in ("logmel-stats", "mfcc-stats")
    return False


def _headline(ranked: list[dict], boot: dict, config: EvaluateConfig) -> dict:
    """The report's first line: the best method by POOLED clip-level weighted F1 and the paired
    bootstrap CI of its difference from the best perceptual-encoder method; a baseline that beats
    every perceptual encoder (whole CI above 0) is named first."""
    out = _headline_parts(ranked, boot, config)
    # The numbers are pooled scores, not the tables' fold means: say so once, at the end.
    out["text"] += f" (pooled clip-level weighted F1; {config.confidence:.0%} bootstrap CI over clips)"
    return out


def _headline_parts(ranked: list[dict], boot: dict, config: EvaluateConfig) -> dict:
    def pooled(m):
        return m["clip"]["f1_weighted"]["pooled"]

    def compare(a, b) -> dict:
        ci = st.percentile_ci(np.asarray(boot[a["name"]], np.float64) - np.asarray(boot[b["name"]], np.float64),
                              config.confidence)
        return {"a": a["name"], "b": b["name"], "diff": pooled(a) - pooled(b), "ci": ci, "status": st.status_of(ci)}

    def named(m) -> str:
        return f"{m['name']} {pooled(m):.3f}"

    def delta(c) -> str:
        return f"{c['diff']:+.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"

    order = sorted(ranked, key=lambda m: -pooled(m))  # stable: ties keep the rank order (mean over folds)
    best = order[0]
    perceptual = [m for m in order if m["kind"] == "logreg-ae" and m.get("loss") in PERCEPTUAL_LOSSES]
    out = {"score": f"pooled clip-level weighted F1; {config.confidence:.0%} paired bootstrap CI over clips",
           "best": best["name"], "best_f1_weighted": pooled(best),
           "best_perceptual": perceptual[0]["name"] if perceptual else None,
           "comparison": None, "baseline_beats_perceptual": None, "baseline_comparisons": [],
           "baseline_sentence": None}
    if not perceptual:
        out["text"] = (f"Best: {named(best)}; no perceptual encoder was evaluated (give --checkpoints or "
                       f"--train-config with an NLPD or MS-SSIM loss)")
        return out
    top_p = perceptual[0]
    winner = None
    for b in (m for m in order if is_baseline_method(m)):
        comps = [compare(b, p) for p in perceptual]
        if all(c["ci"][0] > 0 for c in comps):
            winner = b
            out["baseline_comparisons"] = comps
            break
    if best is top_p:
        other = next((m for m in order if m is not best), None)
        if other is None:
            out["text"] = f"Best: {named(best)} (a perceptual encoder; nothing else to compare with)"
            return out
        out["comparison"] = c = compare(best, other)
        out["text"] = f"Best: {named(best)}, a perceptual encoder; vs the best other method {named(other)}: {delta(c)}"
        return out
    out["comparison"] = c = compare(best, top_p)
    best_text = f"Best: {named(best)}; vs best perceptual encoder {named(top_p)}: {delta(c)}"
    if winner is None:
        out["text"] = best_text
        return out
    wc = out["baseline_comparisons"][0]  # against the best perceptual encoder
    many = f" (and each of the {len(perceptual)}, CI above 0)" if len(perceptual) > 1 else " (CI above 0)"
    out["baseline_beats_perceptual"] = winner["name"]
    out["baseline_sentence"] = (f"A baseline beats every perceptual encoder: {named(winner)} vs best perceptual "
                                f"encoder {named(top_p)}: {delta(wc)}{many}.")
    out["text"] = (f"A baseline beats every perceptual encoder. {best_text}" if winner is best else
                   f"{out['baseline_sentence']} {best_text}")
    return out


def _claim(ranked: list[dict], boot: dict, fold_wf1: dict, config: EvaluateConfig, warns: list[str]) -> dict:
    by_name = {m["name"]: m for m in ranked}
    aes = [m for m in ranked if m["kind"] == "logreg-ae"]
    perceptual = [m for m in aes if m["loss"] in PERCEPTUAL_LOSSES]
    mse_aes = [m for m in aes if m["loss"] == "mse"]
    parts = []
    for m in sorted(perceptual, key=lambda m: m["name"]):
        knn_name = f"knn-cv:{m['loss']}"
        if knn_name in by_name:
            parts.append((f"(a) {m['name']} beats k-NN on {m['loss']} distances ({knn_name})", m["name"], knn_name))
        for b in sorted(mse_aes, key=lambda m: m["name"]):
            parts.append((f"(b) {m['name']} beats the MSE-trained autoencoder ({b['name']})", m["name"], b["name"]))
    out_parts = []
    for text, a, b in parts:
        comp = st.paired_comparison(fold_wf1[a], fold_wf1[b], boot[a], boot[b], config.confidence, config.seed)
        out_parts.append({"claim": text, "a": a, "b": b, "status": st.status_of(comp["ci"]), **comp})
    caveat = None
    if config.mode == "checkpoints":
        if any("has seen the test folds" in w or "cannot be checked" in w for w in warns):
            caveat = ("at least one checkpoint saw evaluated clips during training, or cannot be checked: "
                      "autoencoder scores may be optimistic; rerun with --train-config for an honest answer")
        else:
            caveat = "checkpoints declared trained on other data; no evaluated clip is in their recorded splits"
    if not out_parts:
        why = ("no encoders were evaluated: give --train-config or --checkpoints" if not aes else
               "the claim needs an NLPD or MS-SSIM autoencoder and, to compare with, k-NN on the same "
               "metric (--metrics) and/or an MSE autoencoder")
        verdict, summary = "untestable", f"This run cannot test the claim: {why}."
    else:
        statuses = [p["status"] for p in out_parts]
        if all(s == "supported" for s in statuses):
            verdict = "supported"
        elif "contradicted" in statuses:
            verdict = "contradicted"
        elif "supported" in statuses:
            verdict = "partly supported"
        else:
            verdict = "inconclusive"
        n_sup = statuses.count("supported")
        n_con = statuses.count("contradicted")
        summary = {
            "supported": f"This run supports the claim: in all {len(statuses)} comparisons the perceptual "
                         f"autoencoder's weighted F1 is higher with the whole {config.confidence:.0%} CI above 0.",
            "partly supported": f"This run partly supports the claim: {n_sup} of {len(statuses)} comparisons "
                                f"are significantly in its favour, the others are not significant either way.",
            "inconclusive": f"This run does not support the claim: none of the {len(statuses)} comparisons is "
                            f"significant at {config.confidence:.0%} (their CIs include 0).",
            "contradicted": f"This run contradicts the claim: {n_con} of {len(statuses)} comparisons go "
                            f"significantly against it.",
        }[verdict]
        if caveat and "optimistic" in caveat:
            summary += " CAUTION: " + caveat + "."
    return {"statement": CLAIM, "verdict": verdict, "summary": summary, "caveat": caveat,
            "criterion": f"a part is supported when the {config.confidence:.0%} paired-bootstrap CI (over clips) "
                         f"of the difference in clip-level weighted F1 lies above 0, contradicted when below",
            "parts": out_parts}


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_report(report: EvaluationReport | dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``chart.png`` and ``confusion/*.csv`` into ``out_dir``.

    Returns
    -------
    dict
        {"json", "markdown", "chart", "confusion": [paths]}.
    """
    import csv
    import io

    from .report_png import bar_chart, encode_png

    data = report.data if isinstance(report, EvaluationReport) else report
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "confusion").mkdir(exist_ok=True)
    paths: dict = {"confusion": []}
    methods = sorted(data["methods"], key=lambda m: m["rank"])
    for m in methods:
        for level in ("clip", "segment"):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            labels = m["confusion"]["labels"]
            w.writerow(["true \\ predicted"] + labels)
            for lab, row in zip(labels, m["confusion"][level]):
                w.writerow([lab] + row)
            p = out / "confusion" / f"{_safe(m['name'])}{'' if level == 'clip' else '.segments'}.csv"
            atomic_write_bytes(p, buf.getvalue().encode())
            paths["confusion"].append(p)
    rows = [{"label": m["name"], "value": m["clip"]["f1_weighted"]["mean"], "err": m["clip"]["f1_weighted"]["std"],
             "kind": m["kind"]} for m in methods]
    n = data["config"]["folds"]
    chart = bar_chart(rows, f"weighted F1 per clip, mean +- std over {n} folds")
    paths["chart"] = out / "chart.png"
    atomic_write_bytes(paths["chart"], encode_png(chart))
    paths["json"] = out / "report.json"
    atomic_write_bytes(paths["json"], (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())
    paths["markdown"] = out / "report.md"
    atomic_write_bytes(paths["markdown"], render_markdown(data).encode())
    return paths
