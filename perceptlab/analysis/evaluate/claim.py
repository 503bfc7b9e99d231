"""The words of the verdict: the headline (best method against the best perceptual encoder,
a baseline that beats them named first) and the verdict on the paper's claim, from comparisons
the assembly has already computed."""

from __future__ import annotations

import numpy as np

from .. import stats as st
from .config import CLAIM, PERCEPTUAL_LOSSES, EvaluateConfig

def is_baseline_method(m: dict) -> bool:
    """True for the baselines a perceptual encoder must beat to earn its cost: logistic regression on
    log-mel statistics, k-NN on a baseline metric (the registry's baselines: ``logmel-stats``,
    ``mfcc-stats`` for the built-ins), the majority class."""
    if m["kind"] in ("logreg-logmel", "majority"):
        return True
    if m["kind"] in ("knn", "knn-cv"):
        from perceptlab.metrics.registry import baseline_names, is_baseline

        try:
            return is_baseline(m["representation"])
        except (KeyError, ValueError):  # a metric no longer registered
            return m["representation"] in baseline_names()
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


def claim_pairs(ranked: list[dict]) -> list[tuple[str, str, str]]:
    """The parts of the claim this run can test, as (wording, A, B): (a) each perceptual encoder
    against k-NN (k by inner CV) on its own loss's distances, (b) against each MSE autoencoder."""
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
    return parts


def _claim(ranked: list[dict], compared: dict, config: EvaluateConfig, warns: list[str]) -> dict:
    """The verdict on the paper's claim.

    Parameters
    ----------
    ranked : list of dict
        The report's method entries.
    compared : dict
        ``{(a, b): paired comparison}`` as the assembly computed them
        (:func:`perceptlab.analysis.evaluate.assemble.compare_pairs`); it must
        hold every pair of :func:`claim_pairs`.
    warns : list of str
        The run's warnings so far (a checkpoint that saw the test folds makes a caveat).
    """
    aes = [m for m in ranked if m["kind"] == "logreg-ae"]
    out_parts = []
    for text, a, b in claim_pairs(ranked):
        if (a, b) not in compared:
            raise KeyError(f"claim part {text!r}: the comparison of {a} with {b} was not computed")
        comp = compared[a, b]
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

