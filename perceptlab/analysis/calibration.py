"""Fit NLPD's divisive normalisation to listeners (after Namgyal et al. 2023).

NLPD normalises each Laplacian band ``L_k`` by ``sigma_k + sum_t w_kt
|L_k|(i + di_t, j + dj_t)`` (see :mod:`perceptlab.metrics.pyramid`). Here the
6 sigmas and every P-filter tap ``w_kt`` (on the published filters' support)
are free parameters, kept positive by an exponential parametrisation
(``sigma = exp(s)``, ``w = exp(u)``), and fitted by gradient descent (Adam)
to what listeners said:

* triplet answers: ``P(choose A) = sigmoid(alpha (d(X, B) - d(X, A)))`` with
  a learnt scale ``alpha``, binary cross-entropy (catch trials and screened
  listeners left out);
* MUSHRA or external ratings: minimise Pearson's r between the distance
  (reference to condition) and the mean score (it should approach -1).

A small L2 pull towards the published values (``reg``) keeps the fit
identifiable (scaling every sigma and tap together only rescales
distances). Data are split into training and held-out parts by trial (or by
item for ratings) with a seed; the report gives agreement on both, before
and after.

The parameters are :class:`perceptlab.metrics.pyramid.NLPDParams` and the
metric they define is :func:`perceptlab.metrics.pyramid.nlpd` with
``params=``: the metrics layer owns NLPD, this module only fits it. The
laplacian pyramid does not depend on the parameters, so during a fit each
image's pyramid is computed once and only the normalisation runs per step.

The fitted metric is a named variant ``nlpd:calibrated-<name>`` in the
metric registry; it is saved as JSON in the library's ``meta`` table (key
``calibrated_metric:<name>``) and re-registered by
:func:`register_saved_variants`.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from perceptlab.jsonable import jsonable
from perceptlab.metrics.pyramid import NLPDParams, laplacian_pyramid, nlpd, safe_sqrt
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

META_PREFIX = "calibrated_metric:"
METRIC_PREFIX = "nlpd:calibrated-"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _pad_of(taps) -> int:
    return max([max(abs(di), abs(dj)) for di, dj, _ in taps] or [0])


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


class _Pyramids:
    """Pyramids of a fixed set of images, for fast repeated normalisation.

    Per level k: the band flattened, (N, n_k), and the shifted |band| values
    the taps read, (N, n_k, taps_k), so a normalisation step is one
    matrix-vector product per level.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, template: NLPDParams):
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        if x.dim() == 3:
            x = x[:, None]
        self.n = x.shape[0]
        self.bands, self.shifts = [], []
        with torch.no_grad():
            for band, taps in zip(laplacian_pyramid(x), template.taps):
                h, w = band.shape[-2], band.shape[-1]
                pad = _pad_of(taps)
                ap = torch.nn.functional.pad(band.abs(), (pad, pad, pad, pad))
                cols = [ap[..., pad + di : pad + di + h, pad + dj : pad + dj + w].reshape(self.n, -1)
                        for di, dj, _ in taps]
                self.bands.append(band.reshape(self.n, -1))  # (N, n_k)
                self.shifts.append(torch.stack(cols, -1) if cols else torch.zeros(self.n, h * w, 0))  # (N, n_k, t)

    def coefficients(self, log_sigma: torch.Tensor, log_w: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level (N, n_k) normalised coefficients."""
        return [b / (log_sigma[k].exp() + s @ log_w[k].exp())
                for k, (b, s) in enumerate(zip(self.bands, self.shifts))]

    @staticmethod
    def distances(coeffs: list[torch.Tensor], i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        rms = [safe_sqrt((c[i] - c[j]).square().mean(1)) for c in coeffs]
        return torch.stack(rms, 1).mean(1)


class _Model(torch.nn.Module):
    def __init__(self, init: NLPDParams):
        super().__init__()
        self.init = init
        self.log_sigma = torch.nn.Parameter(torch.tensor([math.log(s) for s in init.sigmas]))
        # A published zero tap stays at zero: only the support's taps are fitted.
        self.log_w = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor([math.log(max(w, 1e-6)) for _, _, w in t])) for t in init.taps])
        self.log_alpha = torch.nn.Parameter(torch.tensor(0.0))
        self.a0 = [self.log_sigma.detach().clone(), [p.detach().clone() for p in self.log_w]]

    def params(self) -> NLPDParams:
        sig = tuple(float(v) for v in self.log_sigma.detach().exp())
        taps = tuple(
            tuple((di, dj, float(w)) for (di, dj, _), w in zip(t, lw.detach().exp()))
            for t, lw in zip(self.init.taps, self.log_w))
        return NLPDParams(sig, taps)

    def penalty(self) -> torch.Tensor:
        p = (self.log_sigma - self.a0[0]).square().sum()
        for lw, l0 in zip(self.log_w, self.a0[1]):
            p = p + (lw - l0).square().sum()
        return p


def _split(keys: Sequence[str], test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows; all rows of one key fall on the same side."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    uniq = sorted(set(keys))
    if len(uniq) < 2:
        raise ValueError(f"a held-out split needs at least 2 distinct trials or items, got {len(uniq)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    n_test = min(len(uniq) - 1, max(1, int(round(test_fraction * len(uniq)))))
    test = {uniq[i] for i in order[:n_test]}
    return np.array([k in test for k in keys], dtype=bool)


@dataclass
class FitResult:
    """The fitted parameters and how they did."""

    params: NLPDParams
    report: dict
    history: list[float] = field(default_factory=list)


def _adam_fit(loss_fn, parameters, steps: int, lr: float, progress: ProgressFn | None,
              cancel: CancelFn | None) -> list[float]:
    """Full-batch Adam on ``loss_fn()`` for ``steps`` steps; the loss of each step."""
    opt = torch.optim.Adam(parameters, lr=lr)
    history = []
    report(progress, 0, steps)
    for step in range(steps):
        check_cancel(cancel)
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        report(progress, step + 1, steps)
    return history


def _loss_summary(history: list[float], steps: int, lr: float, reg: float, seed: int, test_fraction: float) -> dict:
    return {"loss": {"first": history[0] if history else None, "last": history[-1] if history else None},
            "steps": steps, "lr": lr, "reg": reg, "seed": seed, "test_fraction": test_fraction}


def fit_triplets(images: np.ndarray, ix: Sequence[int], ia: Sequence[int], ib: Sequence[int],
                 chose_a: Sequence[bool], *, keys: Sequence[str] | None = None, init: NLPDParams | None = None,
                 steps: int = 300, lr: float = 0.05, reg: float = 1e-3, test_fraction: float = 0.3,
                 seed: int = 0, n_boot: int = 1000, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> FitResult:
    """Fit NLPD's normalisation to triplet answers.

    Parameters
    ----------
    images : numpy.ndarray
        (N, F, T) or (N, 1, F, T) unique images in [0, 1].
    ix, ia, ib : sequences of int
        Per answer, the image indices of X, A and B.
    chose_a : sequence of bool
        Per answer, True when the listener chose A.
    keys : sequence of str, optional
        Per answer, the trial identity (answers of one trial stay on one side
        of the split). Default: the (X, A, B) indices.
    init : NLPDParams, optional
        Starting point (default: the published values).
    steps, lr, reg : training settings (Adam on log-parameters, full batch).
    test_fraction, seed : held-out split.

    Returns
    -------
    FitResult
        ``report``: ``{"design": "triplet", "n_train", "n_test", "before":
        {"train", "test"}, "after": {"train", "test"}, "test_ci": {"before":
        [lo, hi], "after": [lo, hi]}, "loss": {"first", "last"}, "steps",
        "lr", "reg", "seed", "test_fraction"}`` (agreements are fractions).
    """
    from perceptlab.analysis.stats import bootstrap_ci

    init = init or NLPDParams.default()
    ix, ia, ib = (torch.as_tensor(np.asarray(v, dtype=np.int64)) for v in (ix, ia, ib))
    y = torch.as_tensor(np.asarray(chose_a, dtype=np.float32))
    if not (len(ix) == len(ia) == len(ib) == len(y)) or len(y) == 0:
        raise ValueError("fit_triplets needs the same positive number of X, A, B indices and answers")
    keys = list(keys) if keys is not None else [f"{a}:{min(b, c)}:{max(b, c)}" for a, b, c in
                                                 zip(ix.tolist(), ia.tolist(), ib.tolist())]
    test = torch.as_tensor(_split(keys, test_fraction, seed))
    train = ~test
    pyr = _Pyramids(images, init)
    model = _Model(init)

    def margins():
        c = pyr.coefficients(model.log_sigma, list(model.log_w))
        return _Pyramids.distances(c, ix, ib) - _Pyramids.distances(c, ix, ia)  # > 0: A closer

    def agreement(m: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        m, t = m[mask], y[mask]
        return torch.where(m == 0, torch.full_like(m, 0.5), ((m > 0).float() == t).float()).numpy()

    with torch.no_grad():
        m0 = margins()
        scale = float(m0[train].std()) or 1.0
        model.log_alpha.fill_(math.log(1.0 / scale))
    before_tr, before_te = agreement(m0, train), agreement(m0, test)

    def loss():
        logits = model.log_alpha.exp() * margins()[train]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y[train]) + reg * model.penalty()

    history = _adam_fit(loss, model.parameters(), steps, lr, progress, cancel)
    with torch.no_grad():
        m1 = margins()
    after_tr, after_te = agreement(m1, train), agreement(m1, test)
    rep = {
        "design": "triplet", "n_train": int(train.sum()), "n_test": int(test.sum()),
        "before": {"train": float(before_tr.mean()), "test": float(before_te.mean())},
        "after": {"train": float(after_tr.mean()), "test": float(after_te.mean())},
        "test_ci": {"before": list(bootstrap_ci(before_te, n_boot, seed)),
                    "after": list(bootstrap_ci(after_te, n_boot, seed))},
        **_loss_summary(history, steps, lr, reg, seed, test_fraction),
    }
    return FitResult(model.params(), rep, history)


def _pearson_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean()
    b = b - b.mean()
    return (a * b).sum() / (a.square().sum().sqrt() * b.square().sum().sqrt() + 1e-12)


def fit_ratings(images: np.ndarray, iref: Sequence[int], icond: Sequence[int], scores: Sequence[float], *,
                keys: Sequence[str] | None = None, init: NLPDParams | None = None, steps: int = 300,
                lr: float = 0.05, reg: float = 1e-3, test_fraction: float = 0.3, seed: int = 0,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> FitResult:
    """Fit NLPD's normalisation to (mean) ratings: minimise Pearson's r(distance, score).

    ``iref``/``icond`` index ``images`` per rated condition; ``scores`` are
    the mean scores; ``keys`` (default: the reference index) keep an item's
    conditions on one side of the split. The report has Pearson and
    Spearman before/after on both parts (``{"design": "ratings", "n_train",
    "n_test", "before": {"train": {"pearson", "spearman"}, "test": {...}},
    "after": {...}, ...}``).
    """
    from perceptlab.analysis.stats import spearman

    init = init or NLPDParams.default()
    ir = torch.as_tensor(np.asarray(iref, dtype=np.int64))
    ic = torch.as_tensor(np.asarray(icond, dtype=np.int64))
    s = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if not (len(ir) == len(ic) == len(s)) or len(s) < 4:
        raise ValueError("fit_ratings needs at least 4 rated conditions with matching indices")
    keys = list(keys) if keys is not None else [str(v) for v in ir.tolist()]
    test = torch.as_tensor(_split(keys, test_fraction, seed))
    train = ~test
    if int(train.sum()) < 3:
        raise ValueError("too few rated conditions left for training after the held-out split")
    pyr = _Pyramids(images, init)
    model = _Model(init)

    def dist():
        return _Pyramids.distances(pyr.coefficients(model.log_sigma, list(model.log_w)), ir, ic)

    def corr(d, mask):
        dd, ss = d[mask].double().numpy(), s[mask].double().numpy()
        if dd.size < 2:
            return {"pearson": None, "spearman": None}
        from perceptlab.analysis.stats import pearson

        return {"pearson": jsonable(pearson(dd, ss)), "spearman": jsonable(spearman(dd, ss))}

    with torch.no_grad():
        d0 = dist()
    history = _adam_fit(lambda: _pearson_t(dist()[train], s[train]) + reg * model.penalty(),
                        [model.log_sigma, *model.log_w], steps, lr, progress, cancel)
    with torch.no_grad():
        d1 = dist()
    rep = {
        "design": "ratings", "n_train": int(train.sum()), "n_test": int(test.sum()),
        "before": {"train": corr(d0, train), "test": corr(d0, test)},
        "after": {"train": corr(d1, train), "test": corr(d1, test)},
        **_loss_summary(history, steps, lr, reg, seed, test_fraction),
    }
    return FitResult(model.params(), rep, history)


# ---------------------------------------------------------------------------
# Variants: registry, persistence
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibratedVariant:
    """A fitted NLPD: its name, parameters and how it was fitted."""

    name: str
    params: NLPDParams
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if not _NAME_RE.match(self.name or ""):
            raise ValueError(
                f"calibrated metric name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")

    @property
    def metric_name(self) -> str:
        return METRIC_PREFIX + self.name

    def to_json(self) -> dict:
        return {"name": self.name, "metric": self.metric_name, "base": "nlpd", "params": self.params.to_json(),
                "info": self.info}

    @classmethod
    def from_json(cls, data: dict | str) -> "CalibratedVariant":
        if isinstance(data, str):
            data = json.loads(data)
        return cls(data["name"], NLPDParams.from_json(data["params"]), dict(data.get("info") or {}))


def calibrated_metric(variant: CalibratedVariant):
    """The registry :class:`~perceptlab.metrics.registry.Metric` of a variant.

    Its matrix and index are the NLPD engine's
    (:func:`~perceptlab.metrics.pairwise.nlpd_matrix`,
    :class:`~perceptlab.metrics.pairwise.NLPDIndex`) with the variant's
    parameters.
    """
    from perceptlab.metrics.pairwise import NLPDIndex, nlpd_matrix
    from perceptlab.metrics.registry import Metric

    params = variant.params

    def fn(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        return nlpd(x, y, params, validate=validate)

    def pairwise(specs, *, memory_budget_mb=512, progress=None, cancel=None, device=None) -> torch.Tensor:
        return nlpd_matrix(specs, params=params, memory_budget_mb=memory_budget_mb, progress=progress,
                           cancel=cancel, device=device)

    def index(specs, *, memory_budget_mb=512, progress=None, cancel=None, device=None) -> NLPDIndex:
        idx = NLPDIndex(specs, params=params, memory_budget_mb=memory_budget_mb, progress=progress,
                        cancel=cancel, device=device)
        idx.metric_name = variant.metric_name  # a query's errors name the variant
        return idx

    return Metric(
        name=variant.metric_name,
        display_name=f"NLPD calibrated ({variant.name})",
        fn=fn,
        params={"base": "nlpd", **params.to_json(), "fitted": variant.info.get("fitted_on")},
        description=("NLPD with divisive-normalisation sigmas and P-filter taps fitted to listening-test "
                     f"answers ({variant.info.get('design', 'listening data')})."),
        pairwise=pairwise,
        index=index,
    )


def register_variant(variant: CalibratedVariant):
    from perceptlab.metrics.registry import register_metric

    return register_metric(calibrated_metric(variant), replace=True)


def save_variant(library, variant: CalibratedVariant) -> None:
    """Store the variant in the library's meta table (replacing one of the same name)."""
    library.set_meta(META_PREFIX + variant.name, json.dumps(variant.to_json(), sort_keys=True))


def load_variants(library) -> list[CalibratedVariant]:
    """Every variant saved in the library (a damaged entry raises ValueError naming it)."""
    out = []
    for key, value in library.meta_items(META_PREFIX):
        try:
            out.append(CalibratedVariant.from_json(value))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{library.path}: saved calibrated metric {key!r} is damaged ({exc})") from None
    return out


def register_saved_variants(library) -> list:
    """Register every saved variant as ``nlpd:calibrated-<name>``; returns the Metric objects."""
    return [register_variant(v) for v in load_variants(library)]


def delete_variant(library, name: str) -> None:
    from perceptlab.metrics.registry import unregister_metric

    library.delete_meta(META_PREFIX + name)
    unregister_metric(METRIC_PREFIX + name)


# ---------------------------------------------------------------------------
# From listening sessions
# ---------------------------------------------------------------------------


def calibrate(library, session_ids: Sequence[int], name: str, *, steps: int = 300, lr: float = 0.05,
              reg: float = 1e-3, test_fraction: float = 0.3, seed: int = 0, save: bool = True,
              n_frames: int | None = None, threads: int | None = None, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None) -> tuple[CalibratedVariant, dict]:
    """Fit a calibrated NLPD to the answers of listening sessions, register (and save) it.

    All sessions must be of one design: triplet sessions fit the logistic
    triplet model (:func:`fit_triplets`), MUSHRA sessions the correlation
    loss on mean scores (:func:`fit_ratings`). Screening is applied first
    (catch trials / BS.1534 post-screening).

    ``threads`` caps torch's intra-op threads for the fit
    (:func:`perceptlab.threads.limited_threads`; the CLI passes 1). The fit is many small tensor
    operations: on two cores shared with other work, torch's default two
    threads made it 10x slower than one (measured: 20 steps on the demo
    library, 32.5 s against 2.9 s).

    Returns
    -------
    (CalibratedVariant, dict)
        The variant and the report: ``{"name", "metric", "design",
        "sessions", "n_train", "n_test", "before", "after", ...,
        "params": {"sigmas", "taps"}, "default_params": {...}}``.
    """
    from perceptlab.threads import limited_threads

    with limited_threads(threads):
        return _calibrate(library, session_ids, name, steps, lr, reg, test_fraction, seed, save, n_frames,
                          progress, cancel)


def _calibrate(library, session_ids, name, steps, lr, reg, test_fraction, seed, save, n_frames, progress, cancel):
    from perceptlab.library.features import sound_excerpt
    from perceptlab.listening.answers import (
        catch_screening,
        condition_means,
        mushra_ratings,
        post_screen,
        triplet_answers,
    )
    from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig
    from perceptlab.listening.session import Session

    CalibratedVariant(name, NLPDParams.default())  # validate the name before any work
    ids = [int(i) for i in session_ids]
    if not ids:
        raise ValueError("calibration needs at least one listening session")
    designs = {Session.open(library, i).design for i in ids}
    if len(designs) > 1:
        raise ValueError("calibrate on sessions of one design (triplet or mushra), not both")
    design = designs.pop()
    cfg = FeatureConfig()
    frames = n_frames or DEFAULT_EXCERPT_FRAMES
    index: dict[str, int] = {}
    images: list[np.ndarray] = []

    def img(sound: dict) -> int:
        k = sound.get("content_hash") or sound["path"]
        if k not in index:
            index[k] = len(images)
            images.append(sound_excerpt(library, sound, cfg, frames))
        return index[k]

    if design == "triplet":
        answers = triplet_answers(library, ids)
        _, excluded = catch_screening(answers)
        out = {e["listener"] for e in excluded}
        answers = [a for a in answers if not a.catch and a.listener not in out]
        if len(answers) < 4:
            raise ValueError(f"calibration needs at least 4 scored triplet answers, found {len(answers)}")
        ix = [img(a.x) for a in answers]
        ia = [img(a.a) for a in answers]
        ib = [img(a.b) for a in answers]
        res = fit_triplets(np.stack(images), ix, ia, ib, [a.choice == "A" for a in answers],
                           keys=[a.key for a in answers], steps=steps, lr=lr, reg=reg,
                           test_fraction=test_fraction, seed=seed, progress=progress, cancel=cancel)
    else:
        ratings = mushra_ratings(library, ids)
        excluded = post_screen(ratings)
        means = [c for c in condition_means(ratings, [e["listener"] for e in excluded])
                 if c["role"] != "hidden_reference"]
        if len(means) < 4:
            raise ValueError(f"calibration needs at least 4 rated conditions, found {len(means)}")
        ir = [img(c["reference"]) for c in means]
        ic = [img(c["sound"]) for c in means]
        res = fit_ratings(np.stack(images), ir, ic, [c["mean_score"] for c in means],
                          keys=[c["item"] for c in means], steps=steps, lr=lr, reg=reg,
                          test_fraction=test_fraction, seed=seed, progress=progress, cancel=cancel)
    info = {"design": design, "fitted_on": {"sessions": ids, "library": str(library.path)},
            "feature_config_hash": cfg.hash, "excerpt_frames": frames, "created_at": time.time(),
            "excluded_listeners": excluded, "report": res.report}
    variant = CalibratedVariant(name, res.params, info)
    register_variant(variant)
    if save:
        save_variant(library, variant)
    rep = {"name": name, "metric": variant.metric_name, "design": design, "sessions": ids, **res.report,
           "excluded_listeners": excluded, "params": res.params.to_json(),
           "default_params": NLPDParams.default().to_json(), "saved": bool(save)}
    return variant, rep
