"""From a metric's distance to a listener's score: the ITU-T P.1401 mapping and its correlations.

:func:`fit_monotonic_cubic` fits the third-order mapping from objective to
subjective values, kept monotonic over the data (least squares when that is
already monotonic, else a bounded least-squares fit in Bernstein form);
:func:`correlation_report` gives Pearson, Spearman, the mapping and the RMSE
after it, the per-metric block of the MUSHRA and external-ratings reports of
:mod:`perceptlab.analysis.agreement`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perceptlab.analysis.stats import pearson, spearman
from perceptlab.jsonable import jsonable


@dataclass(frozen=True)
class MonotonicCubic:
    """``y = c0 + c1 x + c2 x^2 + c3 x^3``, monotonic over [x_min, x_max] (ITU-T P.1401 mapping)."""

    coefficients: tuple[float, float, float, float]
    x_min: float
    x_max: float
    increasing: bool
    method: str  # "unconstrained" (the least-squares cubic is monotonic) or "constrained"

    def __call__(self, x):
        c0, c1, c2, c3 = self.coefficients
        x = np.asarray(x, dtype=np.float64)
        return c0 + x * (c1 + x * (c2 + x * c3))

    def derivative(self, x):
        _, c1, c2, c3 = self.coefficients
        x = np.asarray(x, dtype=np.float64)
        return c1 + x * (2 * c2 + 3 * c3 * x)

    def to_json(self) -> dict:
        return {"coefficients": list(self.coefficients), "x_range": [self.x_min, self.x_max],
                "increasing": self.increasing, "method": self.method}


def _is_monotonic(c: np.ndarray, increasing: bool) -> bool:
    """Is the cubic with (t-domain) coefficients c monotonic on t in [0, 1]?"""
    # derivative q(t) = c1 + 2 c2 t + 3 c3 t^2: check the ends and the vertex.
    q = lambda t: c[1] + 2 * c[2] * t + 3 * c[3] * t * t  # noqa: E731
    pts = [0.0, 1.0]
    if c[3] != 0:
        v = -c[2] / (3 * c[3])
        if 0 < v < 1:
            pts.append(v)
    vals = np.array([q(t) for t in pts])
    tol = 1e-12 * max(1.0, float(np.abs(c).max()))
    return bool((vals >= -tol).all()) if increasing else bool((vals <= tol).all())


def fit_monotonic_cubic(x, y, increasing: bool | None = None) -> MonotonicCubic:
    """ITU-T P.1401 third-order mapping from objective ``x`` to subjective ``y``, kept monotonic.

    The least-squares cubic is used when it is monotonic over the data range.
    Otherwise the cubic is fitted in Bernstein form on the normalised range,
    ``y = sum_k beta_k B_k(t)``, with ordered coefficients (``beta_0 <=
    beta_1 <= beta_2 <= beta_3`` for increasing), which makes it monotonic;
    that is a bounded linear least-squares problem (``scipy.optimize.lsq_linear``),
    convex, so the result is the best such cubic, deterministically.

    Parameters
    ----------
    x, y : array_like
        At least 4 points (fewer give a straight line).
    increasing : bool, optional
        Direction; default from the sign of Pearson's r.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("fit_monotonic_cubic needs two 1-D arrays of the same length")
    if x.size < 2:
        raise ValueError("fit_monotonic_cubic needs at least 2 points")
    x0, x1 = float(x.min()), float(x.max())
    if increasing is None:
        r = pearson(x, y)
        increasing = not (r < 0)
    if x1 == x0:
        return MonotonicCubic((float(y.mean()), 0.0, 0.0, 0.0), x0, x1, increasing, "constant")
    s = x1 - x0
    t = (x - x0) / s
    if x.size < 4:
        c = np.polyfit(t, y, 1)[::-1]
        c = np.array([c[0], c[1], 0.0, 0.0])
        if (c[1] >= 0) != increasing:
            c = np.array([y.mean(), 0.0, 0.0, 0.0])
        return _to_raw(c, x0, s, increasing, "linear")
    V = np.stack([np.ones_like(t), t, t * t, t ** 3], axis=1)
    c, *_ = np.linalg.lstsq(V, y, rcond=None)
    if _is_monotonic(c, increasing):
        return _to_raw(c, x0, s, increasing, "unconstrained")
    from scipy.optimize import lsq_linear

    # Bernstein basis on [0, 1]; beta = L @ p with p = (beta0, d1, d2, d3), d >= 0 (or <= 0).
    B = np.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3], axis=1)
    sign = 1.0 if increasing else -1.0
    L = np.array([[1, 0, 0, 0], [1, sign, 0, 0], [1, sign, sign, 0], [1, sign, sign, sign]], dtype=np.float64)
    res = lsq_linear(B @ L, y, bounds=([-np.inf, 0, 0, 0], [np.inf, np.inf, np.inf, np.inf]),
                     method="bvls")
    beta = L @ res.x
    # Bernstein -> power basis in t.
    b0, b1, b2, b3 = beta
    c = np.array([b0, 3 * (b1 - b0), 3 * (b0 - 2 * b1 + b2), b3 - 3 * b2 + 3 * b1 - b0])
    return _to_raw(c, x0, s, increasing, "constrained")


def _to_raw(c: np.ndarray, x0: float, s: float, increasing: bool, method: str) -> MonotonicCubic:
    """Coefficients in t = (x - x0) / s to coefficients in x."""
    # p(t) = sum c_k ((x - x0)/s)^k; expand with the binomial theorem.
    raw = np.zeros(4)
    for k in range(4):
        ck = c[k] / s ** k
        for j in range(k + 1):
            raw[j] += ck * math.comb(k, j) * (-x0) ** (k - j)
    return MonotonicCubic(tuple(float(v) for v in raw), x0, x0 + s, bool(increasing), method)


def correlation_report(x: np.ndarray, y: np.ndarray) -> dict:
    """Pearson, Spearman, the P.1401 monotonic cubic mapping and the RMSE after it.

    ``rmse`` follows P.1401 (sum of squared errors over N - 4 degrees of
    freedom for the 4-parameter mapping); ``rmse_raw`` divides by N.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = int(x.size)
    out = {"n": n, "pearson": None, "spearman": None, "mapping": None, "pearson_mapped": None,
           "rmse": None, "rmse_raw": None}
    if n < 2:
        return out
    out["pearson"] = jsonable(pearson(x, y))
    out["spearman"] = jsonable(spearman(x, y))
    # Metrics are distances: expect the score to fall as the distance grows.
    fit = fit_monotonic_cubic(x, y, increasing=False)
    pred = fit(x)
    err = y - pred
    out["mapping"] = fit.to_json()
    out["pearson_mapped"] = jsonable(pearson(pred, y))
    dof = n - 4 if fit.method in ("unconstrained", "constrained") else n - 2
    out["rmse"] = float(math.sqrt((err ** 2).sum() / dof)) if dof > 0 else None
    out["rmse_raw"] = float(math.sqrt((err ** 2).mean()))
    return out
