"""Statistics for every report: correlation, bootstrap intervals, classification scores, paired tests.

One module on scipy and scikit-learn, used by agreement, calibration,
retrieval, the probe and the classification protocol (numpy + scipy, no Qt).

* :func:`pearson`, :func:`spearman`, :func:`ranks`: correlation of two
  samples; NaN (never a warning) when one of them is constant.
* :func:`bootstrap_ci`: percentile bootstrap interval of a mean, seeded.
* :func:`confusion`, :func:`scores_from_confusion`: accuracy, weighted F1 and
  macro F1 from a confusion matrix. Defined like scikit-learn's
  ``f1_score(average=..., zero_division=0)`` over a FIXED list of classes (a
  class absent from both the truth and the predictions of a fold contributes
  an F1 of 0 to the macro mean and a weight of 0 to the weighted mean), but
  written out over (B, C, C) arrays, so that thousands of bootstrap
  resamples cost one matrix product (``sklearn.metrics.f1_score`` would be
  called once per resample).
* :func:`paired_comparison`: "method A beats method B" with its uncertainty:
  the per-fold differences (mean, std, paired t-test, exact sign-flip
  permutation test) and a paired bootstrap confidence interval of the
  difference in pooled out-of-fold scores, resampling CLIPS.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# --------------------------------------------------------------------------
# correlation
# --------------------------------------------------------------------------


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, ties given their average rank (as Spearman's rho needs)."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(x), method="average").astype(np.float64)


def _constant(x: np.ndarray) -> bool:
    return x.size < 2 or bool(np.all(x == x.flat[0]))


def pearson(a, b) -> float:
    """Pearson's r; NaN when either sample is constant."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if _constant(a) or _constant(b):
        return math.nan
    return float(stats.pearsonr(a, b).statistic)


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties averaged); NaN when either sample is constant."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if _constant(a) or _constant(b):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


# --------------------------------------------------------------------------
# bootstrap intervals of a mean
# --------------------------------------------------------------------------


def bootstrap_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling with replacement, seeded).

    (NaN, NaN) for no values; the mean twice for one value or ``n_boot`` < 1.
    The resamples are drawn in blocks of about 2 million values, so a long
    sample never needs an (n_boot, n) array at once (:func:`cluster_bootstrap_ci`
    with one value per group).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    return cluster_bootstrap_ci(v, np.arange(v.size), n_boot, seed, level)  # every value its own group


def cluster_bootstrap_ci(values, groups, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling whole groups.

    Values of one group (clips of one source) are not independent draws:
    each resample draws as many groups as there are, with replacement, and
    takes the mean over all their values. :func:`bootstrap_ci` is this with
    one value per group.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    if groups.size != v.size:
        raise ValueError(f"expected {v.size} groups, one per value, got {groups.size}")
    if v.size == 0:
        return (math.nan, math.nan)
    _, idx = np.unique(groups, return_inverse=True)
    sums = np.bincount(idx, weights=v)
    counts = np.bincount(idx).astype(np.float64)
    g = sums.size
    if g == 1 or n_boot < 1:
        return (float(v.mean()), float(v.mean()))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // g)
    for i in range(0, n_boot, chunk):
        j = min(n_boot, i + chunk)
        pick = rng.integers(0, g, (j - i, g))
        means[i:j] = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = percentile_ci(means, level)
    return lo, hi


# --------------------------------------------------------------------------
# classification scores
# --------------------------------------------------------------------------


SCORES = ("accuracy", "f1_weighted", "f1_macro")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; rows are true classes, columns predicted classes (all C listed)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64),
                            labels=np.arange(n_classes)).astype(np.int64)


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, weighted F1 and macro F1 of one or many confusion matrices.

    Parameters
    ----------
    cm : numpy.ndarray
        (C, C) or (B, C, C) counts (may be fractional, e.g. bootstrap weights).

    Returns
    -------
    dict
        ``{"accuracy", "f1_weighted", "f1_macro"}``, each a float array of
        shape () or (B,). Undefined precision or recall count as 0
        (scikit-learn's ``zero_division=0``).
    """
    cm = np.asarray(cm, dtype=np.float64)
    diag = np.diagonal(cm, axis1=-2, axis2=-1)  # (..., C)
    support = cm.sum(-1)  # true counts per class
    predicted = cm.sum(-2)
    total = support.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, diag / predicted, 0.0)
        recall = np.where(support > 0, diag / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
        accuracy = np.where(total > 0, diag.sum(-1) / total, 0.0)
        weighted = np.where(total > 0, (f1 * support).sum(-1) / total, 0.0)
    return {"accuracy": accuracy, "f1_weighted": weighted, "f1_macro": f1.mean(-1)}


def scores(y_true, y_pred, n_classes: int) -> dict[str, float]:
    """Accuracy, weighted and macro F1 as plain floats."""
    s = scores_from_confusion(confusion(y_true, y_pred, n_classes))
    return {k: float(v) for k, v in s.items()}


def mean_std(values) -> dict:
    """``{"mean", "std", "folds"}``; std is the sample std (ddof=1), 0 for one value."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()) if v.size else float("nan"),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "folds": [float(x) for x in v],
    }


# --------------------------------------------------------------------------
# bootstrap over clips
# --------------------------------------------------------------------------


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) resampling counts (each row sums to n): the same draws for every method, so
    differences between methods are PAIRED."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float32)


def bootstrap_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray) -> dict:
    """Scores of each bootstrap resample: ``{score: (B,) array}``.

    One matrix product: the (B, N) counts times the (N, C*C) one-hot of each
    clip's (true, predicted) cell gives the B confusion matrices at once.
    """
    cells = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    onehot = np.zeros((cells.size, n_classes * n_classes), dtype=np.float32)
    onehot[np.arange(cells.size), cells] = 1.0
    cms = (weights @ onehot).reshape(-1, n_classes, n_classes)
    return scores_from_confusion(cms)


def percentile_ci(samples: np.ndarray, level: float) -> list[float]:
    lo = (1.0 - level) / 2.0
    q = np.quantile(np.asarray(samples, dtype=np.float64), [lo, 1.0 - lo])
    return [float(q[0]), float(q[1])]


# --------------------------------------------------------------------------
# paired tests over folds
# --------------------------------------------------------------------------


def paired_t(diffs) -> tuple[float | None, float | None]:
    """Paired t-test of mean(diffs) = 0, two-sided: (t, p).

    With zero spread the test degenerates: p = 1 when every difference is 0,
    p = 0 when all are the same non-zero number.
    """
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n < 2:
        return None, None
    mean, sd = d.mean(), d.std(ddof=1)
    if sd == 0.0 or not math.isfinite(sd):
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    from scipy import stats

    with warnings.catch_warnings():
        # Folds that differ by rounding only make scipy warn of "precision
        # loss"; the t and p it returns for them are still the right ones.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_1samp(d, 0.0)
    return float(res.statistic), float(res.pvalue)


def sign_flip_p(diffs, seed: int = 0, max_exact: int = 16, n_random: int = 20000) -> tuple[float | None, bool]:
    """Two-sided sign-flip permutation p-value of mean(diffs) = 0: (p, exact).

    Exact (all 2**n sign patterns) for n <= ``max_exact``; otherwise Monte
    Carlo. With n folds the smallest attainable exact p is 2 / 2**n (0.0625
    for 5 folds): a handful of folds cannot give p < 0.05 by this test.
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n == 0:
        return None, True
    exact = n <= max_exact
    # permutation_type="samples" on one sample flips the signs of the differences.
    res = stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                 n_resamples=np.inf if exact else n_random, alternative="two-sided",
                                 random_state=np.random.default_rng(seed))
    return float(res.pvalue), exact


def paired_comparison(
    a_fold: list[float],
    b_fold: list[float],
    a_boot: np.ndarray,
    b_boot: np.ndarray,
    level: float,
    seed: int = 0,
) -> dict:
    """Everything that says whether A beats B (A minus B; positive = A better).

    Parameters
    ----------
    a_fold, b_fold : list of float
        Per-fold scores of the two methods (same folds).
    a_boot, b_boot : numpy.ndarray
        (B,) scores of the two methods on the SAME bootstrap resamples of
        the pooled out-of-fold predictions.
    level : float
        Confidence level of the interval (e.g. 0.95).
    """
    diffs = np.asarray(a_fold, dtype=np.float64) - np.asarray(b_fold, dtype=np.float64)
    t, tp = paired_t(diffs)
    pp, exact = sign_flip_p(diffs, seed)
    boot = np.asarray(a_boot, dtype=np.float64) - np.asarray(b_boot, dtype=np.float64)
    return {
        "mean_diff": float(diffs.mean()),
        "std_diff": float(diffs.std(ddof=1)) if diffs.size > 1 else 0.0,
        "fold_diffs": [float(x) for x in diffs],
        "wins": int((diffs > 0).sum()),
        "losses": int((diffs < 0).sum()),
        "t_stat": t,
        "t_p": tp,
        "perm_p": pp,
        "perm_exact": exact,
        "ci": percentile_ci(boot, level),
        "ci_level": level,
        "p_boot_le_0": float(np.mean(boot <= 0.0)),
    }


def status_of(ci: list[float]) -> str:
    """``"supported"`` when the whole interval is above 0, ``"contradicted"`` when below,
    else ``"not significant"``."""
    lo, hi = ci
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    return "not significant"
