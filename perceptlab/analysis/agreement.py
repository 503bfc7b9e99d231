"""Do the metrics agree with what listeners hear?

Triplet sessions (2AFC)
    A metric *agrees* with an answer when its smaller distance to X is the
    candidate the listener chose (a tie counts one half). Agreement is the
    mean over answers, with a seeded percentile-bootstrap 95 % CI, per
    listener and pooled. Catch trials are left out of agreement and used to
    screen listeners (a listener under ``catch_min`` correct on catch trials
    is excluded and listed). The ceiling is inter-listener agreement: over
    every pair of listeners and every trial both answered, how often they
    chose the same sound.

MUSHRA sessions (ITU-R BS.1534-3)
    Post-screening first: a listener who rates the hidden reference below 90
    on MORE than 15 % of the items is excluded (and listed); the comparison
    is on counts, so exactly 15 % is kept. Then per (item, condition) the
    mean score of the remaining listeners; per metric Pearson and Spearman
    correlation between the distance (reference to condition) and that mean,
    and the ITU-T P.1401 mapping: a third-order polynomial fitted from
    distance to score, constrained monotonic
    (:func:`perceptlab.analysis.score_mapping.fit_monotonic_cubic`),
    with the RMSE after mapping. The hidden reference is left out of the
    correlations by default (its distance is 0 by construction, which only
    inflates them).

External ratings
    :func:`read_ratings_csv` reads ``reference,degraded,score[,listener]``
    rows and :func:`ratings_report` gives the MUSHRA-style report, with
    distances computed for files outside the library too.

Everything returns plain dicts (stable keys, see :func:`agreement_report`)
including the data for plots (``"plot"``), which the GUI draws itself.
"""

from __future__ import annotations

import os
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig
from perceptlab.analysis.score_mapping import correlation_report
from perceptlab.analysis.stats import bootstrap_ci
from perceptlab.library.features import sound_excerpt, sound_image, sound_key
from perceptlab.listening.answers import (
    CATCH_MIN,
    HIDDEN_REFERENCE,
    SCREEN_MAX_FRACTION,
    SCREEN_THRESHOLD,
    Rating,
    TripletAnswer,
    catch_screening,
    condition_means,
    mushra_ratings,
    post_screen,
    read_ratings_csv,
    triplet_answers,
)
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

REPORT_VERSION = 1


# ---------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------


def _summary(values: np.ndarray, n_boot: int, seed: int) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"agreement": None, "ci_low": None, "ci_high": None, "n": 0}
    lo, hi = bootstrap_ci(v, n_boot, seed)
    return {"agreement": float(v.mean()), "ci_low": lo, "ci_high": hi, "n": int(v.size)}


# ---------------------------------------------------------------------------
# Images and distances of sounds
# ---------------------------------------------------------------------------


def pair_distance_table(library, pairs: Sequence[tuple[dict, dict]], metrics: Sequence[str],
                        config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                        *, batch: int = 32, progress: ProgressFn | None = None,
                        cancel: CancelFn | None = None, excerpt: str = "whole",
                        align: bool = True) -> dict[str, np.ndarray]:
    """Each metric's distance for each (sound, sound) pair.

    Returns
    -------
    dict
        {metric: (P,) float64}. By default spectrogram metrics compare the
        whole sounds by the pair rule of
        :func:`perceptlab.analysis.similarity.pair_comparison`, each pair
        (a stimulus and its reference) time-aligned first; with
        ``excerpt="centre"`` they run batched on the centre excerpts. Vector
        metrics (embeddings, baselines) go through
        :func:`perceptlab.analysis.similarity.pair_distances`.
    """
    import torch

    from perceptlab.analysis.similarity import Query, pair_comparison, pair_distances, resolve
    from perceptlab.metrics.registry import get_metric

    pairs = list(pairs)
    uniq: dict[tuple[str, str], int] = {}
    for a, b in pairs:
        uniq.setdefault((sound_key(a), sound_key(b)), len(uniq))
    first = {}
    for a, b in pairs:
        first.setdefault((sound_key(a), sound_key(b)), (a, b))
    keys = list(uniq)
    spectro = [m for m in metrics if get_metric(m).input_kind != "vector"]
    vector = [m for m in metrics if get_metric(m).input_kind == "vector"]
    total = len(keys) * (1 if spectro else 0) + len(keys) * len(vector)
    done = 0
    report(progress, 0, total)
    values = {m: np.empty(len(keys)) for m in metrics}
    if spectro and excerpt == "whole":
        whole: dict[str, np.ndarray] = {}

        def full(s):
            k = sound_key(s)
            if k not in whole:
                whole[k] = sound_image(library, s, config)
            return whole[k]

        for i, k in enumerate(keys):
            check_cancel(cancel)
            a, b = first[k]
            qa, qb = Query(a["path"], Path(a["path"]).name), Query(b["path"], Path(b["path"]).name)
            got = pair_comparison(library, qa, qb, spectro, config, align=align, images=(full(a), full(b)))
            for m in spectro:
                values[m][i] = got.distances[m]
            done += 1
            report(progress, done, total)
    elif spectro:
        images: dict[str, np.ndarray] = {}

        def image(s):
            k = sound_key(s)
            if k not in images:
                images[k] = sound_excerpt(library, s, config, n_frames)
            return images[k]

        for i0 in range(0, len(keys), batch):
            check_cancel(cancel)
            chunk = keys[i0 : i0 + batch]
            xa = torch.from_numpy(np.stack([image(first[k][0]) for k in chunk])[:, None])  # (b, 1, F, T)
            xb = torch.from_numpy(np.stack([image(first[k][1]) for k in chunk])[:, None])
            with torch.no_grad():
                for m in spectro:
                    values[m][i0 : i0 + len(chunk)] = get_metric(m).fn(xa, xb).double().numpy()
            done += len(chunk)
            report(progress, done, total)
    for m in vector:
        for i, k in enumerate(keys):
            check_cancel(cancel)
            a, b = first[k]
            qa, qb = resolve(library, a["path"]), resolve(library, b["path"])
            values[m][i] = pair_distances(library, qa, qb, [m], config, n_frames, excerpt=excerpt)[m]
            done += 1
            report(progress, done, total)
    index = np.array([uniq[(sound_key(a), sound_key(b))] for a, b in pairs], dtype=int)
    return {m: values[m][index] if len(index) else np.empty(0) for m in metrics}


# ---------------------------------------------------------------------------
# Triplets
# ---------------------------------------------------------------------------


def triplet_distances(library, triplets: Sequence, metrics: Sequence[str],
                      config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                      progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                      excerpt: str = "whole") -> dict[str, np.ndarray]:
    """{metric: (N, 2) array of (d(X, A), d(X, B))} for objects with ``x``, ``a``, ``b`` sound dicts."""
    pairs = [(t.x, t.a) for t in triplets] + [(t.x, t.b) for t in triplets]
    d = pair_distance_table(library, pairs, metrics, config, n_frames, progress=progress, cancel=cancel,
                            excerpt=excerpt)
    n = len(triplets)
    return {m: np.stack([v[:n], v[n:]], axis=1) for m, v in d.items()}


def metric_agrees(d: np.ndarray, choices: Sequence[str]) -> np.ndarray:
    """Per answer, 1 if the metric's closer candidate is the chosen one, 0 if not, 0.5 on a tie.

    ``d`` is (N, 2): (d(X, A), d(X, B)); ``choices`` the N answers "A"/"B".
    """
    d = np.asarray(d, dtype=np.float64)
    pick_a = np.asarray([c == "A" for c in choices])
    closer_a = d[:, 0] < d[:, 1]
    tie = d[:, 0] == d[:, 1]
    return np.where(tie, 0.5, (closer_a == pick_a).astype(np.float64))


def inter_listener_agreement(answers: Sequence[TripletAnswer], n_boot: int = 1000, seed: int = 0) -> dict:
    """How often two listeners chose the same sound on a trial both answered.

    Returns {"agreement", "ci_low", "ci_high", "n" (listener-pair comparisons),
    "pairs": [{"a", "b", "n_shared", "agreement"}]}; agreement is None when
    no two listeners share a trial.
    """
    from perceptlab.listening.designs import sound_id

    by_listener: dict[str, dict[str, str]] = defaultdict(dict)
    for a in answers:
        if a.catch:
            continue
        by_listener[a.listener].setdefault(a.key, sound_id(a.chosen))
    pairs, all_same = [], []
    for la, lb in combinations(sorted(by_listener), 2):
        shared = sorted(set(by_listener[la]) & set(by_listener[lb]))
        if not shared:
            continue
        same = [float(by_listener[la][k] == by_listener[lb][k]) for k in shared]
        all_same.extend(same)
        pairs.append({"a": la, "b": lb, "n_shared": len(shared), "agreement": float(np.mean(same))})
    s = _summary(np.asarray(all_same), n_boot, seed)
    return {**s, "pairs": pairs}


def triplet_report(answers: Sequence[TripletAnswer], distances: dict[str, np.ndarray], *, n_boot: int = 1000,
                   seed: int = 0, catch_min: float = CATCH_MIN) -> dict:
    """Metric/listener agreement on triplets.

    Parameters
    ----------
    answers : sequence of TripletAnswer
    distances : dict
        {metric: (N, 2)} aligned with ``answers`` (see :func:`triplet_distances`).
    n_boot, seed : int
        Bootstrap resamples and seed (the same seed for every metric, so
        their CIs are comparable).
    catch_min : float
        Catch-trial accuracy below which a listener is excluded.

    Returns
    -------
    dict
        ``{"n_answers", "n_trials", "listeners", "excluded_listeners",
        "catch", "metrics": {metric: {"pooled": {"agreement", "ci_low",
        "ci_high", "n"}, "per_listener": {listener: {...}}}},
        "inter_listener": {...}, "plot": {"bars": [{"metric", "agreement",
        "ci_low", "ci_high"}], "ceiling": {...} | None}}``.
    """
    answers = list(answers)
    catch, excluded = catch_screening(answers, catch_min)
    out_names = {e["listener"] for e in excluded}
    keep = np.array([not a.catch and a.listener not in out_names for a in answers], dtype=bool)
    kept = [a for a, k in zip(answers, keep) if k]
    listeners = sorted({a.listener for a in answers})
    metrics = {}
    for m, d in distances.items():
        d = np.asarray(d)
        if d.shape != (len(answers), 2):
            raise ValueError(f"{m}: distances have shape {d.shape}, expected ({len(answers)}, 2)")
        agree = metric_agrees(d[keep], [a.choice for a in kept])
        per = {}
        for lst in sorted({a.listener for a in kept}):
            mask = np.array([a.listener == lst for a in kept], dtype=bool)
            per[lst] = _summary(agree[mask], n_boot, seed)
        metrics[m] = {"pooled": _summary(agree, n_boot, seed), "per_listener": per}
    inter = inter_listener_agreement(kept, n_boot, seed)
    bars = [{"metric": m, "agreement": v["pooled"]["agreement"], "ci_low": v["pooled"]["ci_low"],
             "ci_high": v["pooled"]["ci_high"]} for m, v in metrics.items()]
    ceiling = None if inter["agreement"] is None else {
        "agreement": inter["agreement"], "ci_low": inter["ci_low"], "ci_high": inter["ci_high"]}
    return {
        "n_answers": len(answers),
        "n_scored": int(keep.sum()),
        "n_trials": len({a.key for a in kept}),
        "listeners": listeners,
        "excluded_listeners": excluded,
        "catch": catch,
        "metrics": metrics,
        "inter_listener": inter,
        "plot": {"bars": bars, "ceiling": ceiling},
    }


# ---------------------------------------------------------------------------
# MUSHRA and external ratings
# ---------------------------------------------------------------------------


def mushra_report(ratings: Sequence[Rating], distances: dict[str, dict[tuple[str, str], float]], *,
                  screen: bool = True, exclude_hidden_reference: bool = True,
                  threshold: float = SCREEN_THRESHOLD, max_fraction: float = SCREEN_MAX_FRACTION) -> dict:
    """Metric/score agreement on MUSHRA-style ratings.

    Parameters
    ----------
    ratings : sequence of Rating
    distances : dict
        {metric: {(item, condition): distance from the reference}}.
    screen : bool
        Apply the BS.1534-3 post-screening (:func:`post_screen`).
    exclude_hidden_reference : bool
        Leave hidden references out of the correlations.

    Returns
    -------
    dict
        ``{"n_ratings", "n_items", "n_conditions" (distinct condition names),
        "n_item_conditions" (rated (item, condition) pairs), "listeners",
        "excluded_listeners", "screening", "conditions": [{"item",
        "item_name", "condition", "role", "mean_score", "ci95", "n",
        "distances": {metric: d}}], "metrics": {metric: {"n", "pearson",
        "spearman", "mapping": {"coefficients", "x_range", "increasing",
        "method"}, "pearson_mapped", "rmse", "rmse_raw"}}, "plot":
        {"scatter": {metric: {"x", "y", "labels", "fit_x", "fit_y"}}}}``.
    """
    ratings = list(ratings)
    excluded = post_screen(ratings, threshold, max_fraction) if screen else []
    means = condition_means(ratings, [e["listener"] for e in excluded])
    used = [c for c in means if not (exclude_hidden_reference and c["role"] == HIDDEN_REFERENCE)]
    metrics, scatter = {}, {}
    for m, table in distances.items():
        rows = [c for c in used if (c["item"], c["condition"]) in table]
        x = np.array([table[(c["item"], c["condition"])] for c in rows], dtype=np.float64)
        y = np.array([c["mean_score"] for c in rows], dtype=np.float64)
        rep = correlation_report(x, y)
        metrics[m] = rep
        fit_x, fit_y = [], []
        if rep["mapping"] is not None:
            fx = np.linspace(x.min(), x.max(), 50)
            c = rep["mapping"]["coefficients"]
            fit_x, fit_y = fx.tolist(), (c[0] + fx * (c[1] + fx * (c[2] + fx * c[3]))).tolist()
        scatter[m] = {"x": x.tolist(), "y": y.tolist(),
                      "labels": [f"{c['item_name'] or c['item']} / {c['condition']}" for c in rows],
                      "fit_x": fit_x, "fit_y": fit_y}
    conditions = []
    for c in sorted(means, key=lambda c: (c["item_name"] or c["item"], c["condition"])):
        d = {m: float(t[(c["item"], c["condition"])]) for m, t in distances.items()
             if (c["item"], c["condition"]) in t}
        conditions.append({k: c[k] for k in ("item", "item_name", "condition", "role", "mean_score", "ci95", "n")}
                          | {"distances": d})
    return {
        "n_ratings": len(ratings),
        "n_items": len({r.item for r in ratings}),
        "n_conditions": len({c["condition"] for c in means}),
        "n_item_conditions": len(means),
        "listeners": sorted({r.listener for r in ratings}),
        "excluded_listeners": excluded,
        "screening": {"applied": bool(screen), "threshold": threshold, "max_fraction": max_fraction,
                      "rule": "exclude a listener who rates the hidden reference below the threshold "
                              "on more than max_fraction of the items (ITU-R BS.1534-3)"},
        "hidden_reference_in_correlations": not exclude_hidden_reference,
        "conditions": conditions,
        "metrics": metrics,
        "plot": {"scatter": scatter},
    }


def rating_distances(library, ratings: Sequence[Rating], metrics: Sequence[str],
                     config: FeatureConfig = FeatureConfig(), n_frames: int = DEFAULT_EXCERPT_FRAMES,
                     progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                     excerpt: str = "whole") -> dict[str, dict]:
    """{metric: {(item, condition): d(reference, condition)}} for the rated conditions."""
    pairs, keys = [], []
    seen = set()
    for r in ratings:
        k = (r.item, r.condition)
        if k not in seen:
            seen.add(k)
            keys.append(k)
            pairs.append((r.reference, r.sound))
    d = pair_distance_table(library, pairs, metrics, config, n_frames, progress=progress, cancel=cancel,
                            excerpt=excerpt)
    return {m: {k: float(v) for k, v in zip(keys, d[m])} for m in metrics}


# ---------------------------------------------------------------------------
# One call for the CLI and the GUI
# ---------------------------------------------------------------------------


def agreement_report(library, session_ids: Sequence[int] | None = None, metrics: Sequence[str] | None = None, *,
                     ratings_csv: str | os.PathLike | None = None, n_boot: int = 1000, seed: int = 0,
                     screen: bool | None = None, catch_min: float = CATCH_MIN,
                     exclude_hidden_reference: bool = True, config: FeatureConfig = FeatureConfig(),
                     n_frames: int = DEFAULT_EXCERPT_FRAMES, progress: ProgressFn | None = None,
                     cancel: CancelFn | None = None, excerpt: str = "whole") -> dict:
    """The full agreement report (what ``perceptlab agreement --json`` prints).

    Parameters
    ----------
    library : Library or None
        None only with ``ratings_csv``.
    session_ids : sequence of int, optional
        Listening sessions to analyse (default: all, unless ``ratings_csv``).
    metrics : sequence of str, optional
        Default: mse, nlpd, msssim.
    ratings_csv : path, optional
        External ratings (:func:`read_ratings_csv`).
    screen : bool, optional
        BS.1534 post-screening; default on for sessions, off for a CSV
        (external scores need not be on a 0-100 scale).

    Returns
    -------
    dict
        ``{"version": 1, "library", "metrics": [names], "feature_config",
        "excerpt", "excerpt_frames", "sessions": [ids], "ratings_csv", "bootstrap":
        {"n", "seed", "level"}, "triplet": <triplet_report> | None,
        "mushra": <mushra_report> | None, "ratings": <mushra_report> | None}``.
    """
    from perceptlab.analysis.similarity import metric_names

    names = metric_names(list(metrics) if metrics is not None else None, with_baselines=library is not None)
    out = {"version": REPORT_VERSION, "library": None if library is None else str(library.path),
           "metrics": names, "feature_config": config.hash, "excerpt": excerpt, "excerpt_frames": n_frames,
           "sessions": [], "ratings_csv": None,
           "bootstrap": {"n": n_boot, "seed": seed, "level": 0.95},
           "triplet": None, "mushra": None, "ratings": None}
    if ratings_csv is not None:
        ratings = read_ratings_csv(ratings_csv)
        d = rating_distances(library, ratings, names, config, n_frames, progress=progress, cancel=cancel,
                             excerpt=excerpt)
        out["ratings_csv"] = str(Path(ratings_csv).resolve())
        out["ratings"] = mushra_report(ratings, d, screen=bool(screen),
                                       exclude_hidden_reference=exclude_hidden_reference)
        if session_ids is None:
            return out
    if library is None:
        raise ValueError("listening sessions need a library")
    from perceptlab.listening.session import Session, list_sessions

    ids = [s.id for s in list_sessions(library)] if session_ids is None else [int(i) for i in session_ids]
    designs = {}
    for sid in ids:
        designs[sid] = Session.open(library, sid).design
    out["sessions"] = ids
    trip_ids = [i for i in ids if designs[i] == "triplet"]
    mush_ids = [i for i in ids if designs[i] == "mushra"]
    if trip_ids:
        answers = triplet_answers(library, trip_ids)
        if answers:
            d = triplet_distances(library, answers, names, config, n_frames, progress=progress, cancel=cancel,
                                  excerpt=excerpt)
            out["triplet"] = triplet_report(answers, d, n_boot=n_boot, seed=seed, catch_min=catch_min)
            out["triplet"]["sessions"] = trip_ids
    if mush_ids:
        ratings = mushra_ratings(library, mush_ids)
        if ratings:
            d = rating_distances(library, ratings, names, config, n_frames, progress=progress, cancel=cancel,
                             excerpt=excerpt)
            out["mushra"] = mushra_report(ratings, d, screen=True if screen is None else screen,
                                          exclude_hidden_reference=exclude_hidden_reference)
            out["mushra"]["sessions"] = mush_ids
    return out


def report_text(rep: dict) -> str:
    """A readable summary of :func:`agreement_report`'s dict."""
    lines = []
    t = rep.get("triplet")
    if t:
        lines.append(f"Triplets: {t['n_scored']} answers scored ({t['n_trials']} trials, "
                     f"listeners: {', '.join(t['listeners'])})")
        for e in t["excluded_listeners"]:
            lines.append(f"  excluded {e['listener']}: {e['reason']}")
        for m, v in t["metrics"].items():
            p = v["pooled"]
            if p["agreement"] is None:
                lines.append(f"  {m:<20} no scored answers")
                continue
            lines.append(f"  {m:<20} agreement {100 * p['agreement']:5.1f} %  "
                         f"[{100 * p['ci_low']:5.1f}, {100 * p['ci_high']:5.1f}]  n={p['n']}")
        il = t["inter_listener"]
        if il["agreement"] is not None:
            lines.append(f"  {'listeners (ceiling)':<20} agreement {100 * il['agreement']:5.1f} %  "
                         f"[{100 * il['ci_low']:5.1f}, {100 * il['ci_high']:5.1f}]  n={il['n']}")
    for key, title in (("mushra", "MUSHRA"), ("ratings", "Ratings")):
        m = rep.get(key)
        if not m:
            continue
        lines.append(f"{title}: {m['n_ratings']} ratings of {m['n_items']} items x {m['n_conditions']} conditions, "
                     f"listeners: {', '.join(m['listeners'])}")
        for e in m["excluded_listeners"]:
            lines.append(f"  excluded {e['listener']}: hidden reference below 90 on "
                         f"{e['below_threshold']} of {e['items']} items")
        for name, v in m["metrics"].items():
            f = lambda x: "   -  " if x is None else f"{x:+.3f}"  # noqa: E731
            rm = "-" if v["rmse"] is None else f"{v['rmse']:.2f}"
            lines.append(f"  {name:<20} pearson {f(v['pearson'])}  spearman {f(v['spearman'])}  "
                         f"mapped r {f(v['pearson_mapped'])}  rmse {rm}  n={v['n']}")
    if not lines:
        lines.append("no answered listening trials or ratings to analyse")
    return "\n".join(lines)
