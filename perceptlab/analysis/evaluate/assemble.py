"""From the methods' out-of-fold predictions to the report dict: scores per fold and pooled,
bootstrap CIs, ranks, every paired comparison, the claim's parts, the folds and the protocol."""

from __future__ import annotations

import numpy as np

from perceptlab.library.store import Library
from perceptlab.versions import package_versions

from .. import stats as st
from .claim import _claim, _headline, claim_pairs
from .classifiers import _Method
from .config import FORMAT, FORMAT_VERSION, EvaluateConfig
from .data import SegmentData


def _assemble(library: Library, data: SegmentData, config: EvaluateConfig, folds, methods: list[_Method],
              encoder_info: dict, warns: list[str], fingerprint: str) -> dict:
    """The report dict (without timings, creation time and command, which the run adds)."""
    boot_w = st.bootstrap_weights(len(data.y_clip), config.bootstrap, config.seed)
    boot: dict[str, np.ndarray] = {}
    out_methods = []
    for m in methods:
        boot[m.name] = st.bootstrap_scores(data.y_clip, m.clip_pred, len(data.classes), boot_w)["f1_weighted"]
        out_methods.append(_method_entry(m, data, boot[m.name], config, warns))
    ranked = _rank(out_methods)

    fold_wf1 = {m["name"]: m["clip"]["f1_weighted"]["folds"] for m in out_methods}
    listed = [(a["name"], b["name"]) for i, a in enumerate(ranked) for b in ranked[i + 1:]]
    # The claim's parts are oriented (perceptual encoder first); each pair is compared once.
    compared = compare_pairs(listed + [(a, b) for _, a, b in claim_pairs(ranked)], fold_wf1, boot, config)
    comparisons = [{"a": a, "b": b, "score": "f1_weighted", "level": "clip", **compared[a, b]} for a, b in listed]

    claim = _claim(ranked, compared, config, warns)
    headline = _headline(ranked, boot, config)
    if headline["baseline_beats_perceptual"]:
        # A baseline win leads the verdict's summary too (the GUI shows the verdict line).
        claim["summary"] = f"{headline['baseline_sentence']} {claim['summary']}"
        claim["baseline_beats_perceptual"] = headline["baseline_beats_perceptual"]
    n_seg = np.bincount(data.seg_clip, minlength=len(data.clips))
    counts = np.bincount(data.y_clip, minlength=len(data.classes))
    if config.folds <= 5:
        warns.append(f"with {config.folds} folds the exact sign-flip test cannot give p below "
                     f"{2 / 2 ** config.folds:.3g}; the verdict uses the bootstrap CI over clips")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mode": config.mode,
        "mode_description": _MODE_TEXT[config.mode],
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
        "protocol": _protocol(config),
        "folds": _folds_json(data, folds),
        "clips": _clips_json(data, folds, n_seg),
        "encoders": encoder_info,
        "methods": ranked,
        "comparisons": comparisons,
        "headline": headline,
        "claim": claim,
        "warnings": warns,
    }


_MODE_TEXT = {
    "checkpoints": "checkpoints: encoders given with --checkpoints, declared by the user to be trained on "
                   "data disjoint from this library (checked against their recorded training clips)",
    "train-config": "train-config: one encoder per fold and loss, trained on that fold's training clips only",
    "none": "no encoders: k-NN on the metrics and the baselines only",
}


def compare_pairs(pairs, fold_wf1: dict, boot: dict, config: EvaluateConfig) -> dict[tuple[str, str], dict]:
    """Paired comparisons (A minus B) of clip-level weighted F1, each ordered pair once.

    Parameters
    ----------
    pairs : iterable of (str, str)
        Method names (A, B); repeats are compared once.
    fold_wf1 : dict
        Per-fold scores of each method.
    boot : dict
        Each method's (B,) scores on the shared bootstrap resamples.

    Returns
    -------
    dict
        ``{(a, b): stats.paired_comparison(...)}``.
    """
    out: dict[tuple[str, str], dict] = {}
    for a, b in pairs:
        if (a, b) not in out:
            out[a, b] = st.paired_comparison(fold_wf1[a], fold_wf1[b], boot[a], boot[b], config.confidence,
                                             config.seed)
    return out


def _method_entry(m: _Method, data: SegmentData, boot: np.ndarray, config: EvaluateConfig,
                  warns: list[str]) -> dict:
    """One method's scores (per fold, mean, pooled, CI), parameters, confusion matrices and
    predictions; a summary of its fitting warnings goes into ``warns``."""
    C = len(data.classes)
    y_clip, y_seg = data.y_clip, data.y_seg
    assert (m.clip_pred >= 0).all() and (m.seg_pred >= 0).all(), m.name
    entry = {"name": m.name, "kind": m.kind, "representation": m.representation, "loss": m.loss,
             "description": m.description}
    for level, y, pred in (("clip", y_clip, m.clip_pred), ("segment", y_seg, m.seg_pred)):
        pooled = st.scores(y, pred, C)
        entry[level] = {}
        for s in st.SCORES:
            entry[level][s] = dict(st.mean_std([f[level][s] for f in m.folds]), pooled=pooled[s])
    entry["clip"]["f1_weighted"]["ci"] = st.percentile_ci(boot, config.confidence)
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
    return entry


def _rank(entries: list[dict]) -> list[dict]:
    """Set each entry's ``rank`` (clip-level weighted F1: mean over folds, then pooled, then input
    order) and return them best first."""
    order = sorted(range(len(entries)), key=lambda i: (-entries[i]["clip"]["f1_weighted"]["mean"],
                                                       -entries[i]["clip"]["f1_weighted"]["pooled"], i))
    for rank, i in enumerate(order, 1):
        entries[i]["rank"] = rank
    return [entries[i] for i in order]


def _clips_json(data: SegmentData, folds, n_seg: np.ndarray) -> list[dict]:
    fold_of = np.zeros(len(data.clips), dtype=np.int64)
    for i, (_, te) in enumerate(folds):
        fold_of[np.unique(data.seg_clip[te])] = i + 1
    return [{"id": c.id, "name": c.name, "path": c.path, "label": c.label, "content_hash": c.content_hash,
             "fold": int(fold_of[ci]), "n_segments": int(n_seg[ci])} for ci, c in enumerate(data.clips)]


def _folds_json(data: SegmentData, folds) -> list[dict]:
    out = []
    for i, (tr, te) in enumerate(folds):
        tr_c, te_c = np.unique(data.seg_clip[tr]), np.unique(data.seg_clip[te])
        out.append({
            "fold": i + 1,
            "train_clips": [data.clips[j].id for j in tr_c], "test_clips": [data.clips[j].id for j in te_c],
            "n_train_segments": int(len(tr)), "n_test_segments": int(len(te)),
            "test_class_counts": {data.classes[k]: int(v) for k, v in
                                  enumerate(np.bincount(data.y_clip[te_c], minlength=len(data.classes)))},
        })
    return out


def _protocol(config: EvaluateConfig) -> dict:
    """The protocol in words, with this run's settings."""
    return {
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
    }


def _params_summary(m: _Method) -> str:
    keys = [k for k in ("k", "C", "class") if k in (m.folds[0]["params"] if m.folds else {})]
    if not keys:
        return ""
    k = keys[0]
    vals = [f["params"][k] for f in m.folds]
    fmt = (lambda v: f"{v:g}") if k == "C" else str
    return f"{k}=" + ",".join(fmt(v) for v in vals)

