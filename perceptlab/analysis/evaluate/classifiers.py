"""The classifiers of the protocol and their cross-validation.

k-NN on a distance matrix between segments (fixed k, and k by grouped inner
CV), logistic regression on segment features (C by grouped inner CV), the
majority-class floor, and the segment -> clip aggregation rules they share.
:class:`_Runner` runs one outer cross-validation over the folds and records
per-fold predictions and scores in a :class:`_Method`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from perceptlab.tasks import CancelFn, check_cancel

from .. import stats as st
from .config import EvaluateConfig
from .data import SegmentData, _inner_folds
from .progress import _captured_warnings

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



def logmel_features(segs: np.ndarray) -> np.ndarray:
    """(S, 2F): mean and standard deviation over time of each mel band."""
    x = segs[:, 0].astype(np.float64)  # (S, F, T)
    return np.concatenate([x.mean(-1), x.std(-1)], 1).astype(np.float32)

