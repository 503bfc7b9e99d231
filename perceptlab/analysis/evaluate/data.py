"""The evaluated data: which clips count (labelled, deduplicated, classes with enough clips),
their log-mel segments, and the folds grouped by clip."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perceptlab.audio.features import windows
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel

from .config import EvaluateConfig

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

