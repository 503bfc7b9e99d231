"""``report.md`` and the terminal summary of an evaluation, from the report's JSON dict alone
(so a report loaded from ``report.json`` renders the same)."""

from __future__ import annotations

from .chart import KIND_COLORS

_KIND_TEXT = {
    "knn": "k-NN, fixed k",
    "knn-cv": "k-NN, k by inner CV",
    "logreg-ae": "logistic regression on autoencoder embeddings",
    "logreg-logmel": "logistic regression on log-mel statistics (baseline)",
    "majority": "majority class (baseline)",
}


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _pm(d: dict) -> str:
    return f"{_f(d['mean'])} ± {_f(d['std'])}"


def _p(v) -> str:
    if v is None:
        return "n/a"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _ci(ci) -> str:
    return "n/a" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _ci_plain(ci) -> str:
    return "n/a" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _methods(data: dict) -> list[dict]:
    return sorted(data["methods"], key=lambda m: m["rank"])


def _body_markdown(data: dict, chart_note: str | None = None) -> str:
    cfg, lib, seg = data["config"], data["library"], data["segments"]
    claim = data["claim"]
    level = f"{cfg['confidence']:.0%}"
    out = ["# Genre-classification evaluation", ""]
    out += [f"**Verdict on the paper's claim: {claim['verdict'].upper()}.** {claim['summary']}", ""]
    out += [
        f"* Library: `{lib['path']}` (fingerprint `{lib['fingerprint']}`): {lib['n_evaluated']} clips "
        f"evaluated of {lib['n_clips_total']} in the library, {len(lib['classes'])} classes "
        f"({', '.join(f'{c} {n}' for c, n in lib['class_counts'].items())}).",
        f"* Mode: {data['mode_description']}.",
        f"* Segments: {seg['frames']} frames ({seg['seconds']} s) every {seg['hop']} frames; {seg['n']} "
        f"segments, {seg['per_clip_min']}-{seg['per_clip_max']} per clip"
        + (f" (at most {seg['max_per_clip']} kept)" if seg.get("max_per_clip") else "") + ".",
        f"* {cfg['folds']} folds, seed {cfg['seed']}; k = {cfg['k']} for `knn:`; created {data.get('created')}; "
        f"wall time {_f((data.get('timings') or {}).get('total_s'), 1)} s.",
    ]
    if data.get("command"):
        out.append(f"* Command: `{' '.join(data['command'])}`")
    out.append("")
    if data["warnings"]:
        out += ["## Warnings", ""] + [f"* **{w}**" for w in data["warnings"]] + [""]

    out += ["## Results", "",
            f"Clip level, sorted by weighted F1 (mean ± sample std over the {cfg['folds']} folds; the CI is the "
            f"{level} bootstrap interval over clips around the pooled score, i.e. all out-of-fold predictions "
            f"scored at once). Segment-level weighted F1 "
            f"in the last score column; `chosen` is k or C per fold.", "",
            f"| # | method | weighted F1 | pooled [{level} CI] | accuracy | macro F1 | segment wF1 | chosen |",
            "|---|---|---|---|---|---|---|---|"]
    for m in _methods(data):
        c, s = m["clip"], m["segment"]
        out.append(f"| {m['rank']} | `{m['name']}` | {_pm(c['f1_weighted'])} | {_f(c['f1_weighted']['pooled'])} "
                   f"{_ci_plain(c['f1_weighted'].get('ci'))} "
                   f"| {_pm(c['accuracy'])} | {_pm(c['f1_macro'])} | {_pm(s['f1_weighted'])} | {m['params_summary']} |")
    if chart_note:
        out += ["", f"*{chart_note[:1].upper()}{chart_note[1:]}.*", ""]
    else:
        out += ["", "![weighted F1 per method](chart.png)", "",
                "Chart (also `chart.svg`): bars are the mean clip-level weighted F1, whiskers ± one std over "
                "folds; colours: " + "; ".join(f"{_KIND_TEXT[k]} = rgb{KIND_COLORS[k]}" for k in KIND_COLORS) + ".",
                ""]
    out += ["Methods:", ""] + [f"* `{m['name']}`: {m['description']}." for m in _methods(data)] + [""]

    out += ["## The paper's claim", "", f"> {claim['statement']}", "",
            f"**{claim['verdict'].upper()}.** {claim['summary']}", "",
            f"Criterion: {claim['criterion']}. Paired t-test and sign-flip p-values over folds are shown too.", ""]
    if claim.get("caveat"):
        out += [f"Caveat: {claim['caveat']}.", ""]
    if claim["parts"]:
        out += [f"| part | A − B (mean ± std over folds) | {level} CI (clips) | t-test p | sign-flip p | "
                f"folds A > B | status |", "|---|---|---|---|---|---|---|"]
        for p in claim["parts"]:
            out.append(f"| {p['claim']} | {p['mean_diff']:+.3f} ± {p['std_diff']:.3f} | {_ci(p['ci'])} | "
                       f"{_p(p['t_p'])} | {_p(p['perm_p'])} | {p['wins']}/{len(p['fold_diffs'])} | {p['status']} |")
        out.append("")

    out += ["## All paired comparisons", "",
            "A is the better-ranked method; differences in clip-level weighted F1.", "",
            f"| A | B | A − B (mean ± std) | {level} CI (clips) | t-test p | sign-flip p | folds A > B |",
            "|---|---|---|---|---|---|---|"]
    for c in data["comparisons"]:
        out.append(f"| `{c['a']}` | `{c['b']}` | {c['mean_diff']:+.3f} ± {c['std_diff']:.3f} | {_ci(c['ci'])} | "
                   f"{_p(c['t_p'])} | {_p(c['perm_p'])} | {c['wins']}/{len(c['fold_diffs'])} |")
    out.append("")

    pr = data["protocol"]
    out += ["## Protocol", "", f"* Folds: {pr['folds']}.", f"* Model selection: {pr['selection']}.",
            f"* k-NN: {pr['aggregation']['knn']}.", f"* Logistic regression: {pr['aggregation']['logreg']}.",
            f"* Scores: {pr['scores']}.", f"* Uncertainty: {pr['uncertainty']}.", ""]

    enc = data["encoders"]
    out += ["## Encoders", ""]
    if enc.get("checkpoints"):
        out += ["| checkpoint | loss | model hash | trained on this library | evaluated clips in its training / validation split |",
                "|---|---|---|---|---|"]
        for e in enc["checkpoints"]:
            ov = e.get("overlap")
            ovs = "not recorded" if ov is None else f"{ov['train']} / {ov['val']} of {ov['evaluated']}"
            loss = ", ".join(f"{k} {v:g}" for k, v in e["loss"].items()) if isinstance(e["loss"], dict) else e["loss"]
            out.append(f"| `{e['path']}` | {loss} | `{e['model_hash']}` | "
                       f"{'yes' if e['trained_on_this_library'] else 'no'} | {ovs} |")
    elif enc.get("runs"):
        out += [f"Config `{enc['train_config']}`"
                + (f" with overrides {', '.join(f'`{o}`' for o in enc['overrides'])}" if enc["overrides"] else "")
                + f". {enc['subset'][0].upper() + enc['subset'][1:]}.", "",
                "| fold | loss | fold's training clips | trained / validated on | epochs | best val loss | test clips seen | s |",
                "|---|---|---|---|---|---|---|---|"]
        for r in enc["runs"]:
            out.append(f"| {r['fold']} | {r['loss']} | {r['fold_training_clips']} | {r['n_train_clips']} / "
                       f"{r['n_val_clips']} | {r['epochs']} | {_f(r['best_val_loss'], 4)} | {r['test_clips_seen']} | "
                       f"{r['wall_s']} |")
    else:
        out.append("None (k-NN and baselines only).")
    out.append("")

    out += ["## Files", "", "* `report.json`: every number, per fold, the folds, predictions, config, versions.",
            *([] if chart_note else ["* `chart.png`, `chart.svg`: the chart above."]),
            "* `confusion/<method>.csv` (clips) and `confusion/<method>.segments.csv`: rows true, columns "
            "predicted, pooled over folds.", ""]
    if lib["failed"] or lib["skipped"]:
        out += ["## Clips not evaluated", ""]
        for kind, rows in (("failed to import", lib["failed"]), ("skipped", lib["skipped"])):
            for r in rows[:50]:
                out.append(f"* {kind}: `{r['path']}`: {r['reason']}")
            if len(rows) > 50:
                out.append(f"* ... and {len(rows) - 50} more {kind} (see report.json)")
        out.append("")
    v = data["versions"]
    out += ["## Versions", "", ", ".join(f"{k} {v[k]}" for k in sorted(v) if v[k] is not None), ""]
    return "\n".join(out)


def _table_text(data: dict) -> str:
    """The results table, the verdict and the warnings as plain text."""
    cfg = data["config"]
    lines = [f"{'#':>2}  {'method':<24} {'weighted F1':>15}  {'accuracy':>15}  {'macro F1':>15}  "
             f"{'segment wF1':>15}  chosen"]
    for m in _methods(data):
        c, s = m["clip"], m["segment"]
        lines.append(f"{m['rank']:>2}  {m['name']:<24} {_pm(c['f1_weighted']):>15}  {_pm(c['accuracy']):>15}  "
                     f"{_pm(c['f1_macro']):>15}  {_pm(s['f1_weighted']):>15}  {m['params_summary']}")
    lib = data["library"]
    lines.insert(0, f"{lib['n_evaluated']} clips, {len(lib['classes'])} classes, {data['segments']['n']} segments, "
                    f"{cfg['folds']} folds ({data['mode']}); clip-level scores, mean ± std over folds")
    claim = data["claim"]
    lines += ["", f"claim: {claim['verdict'].upper()}: {claim['summary']}"]
    for p in claim["parts"]:
        lines.append(f"  {p['claim']}: {p['mean_diff']:+.3f} (CI {_ci(p['ci'])}, t-test p {_p(p['t_p'])}) "
                     f"-> {p['status']}")
    for w in data["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def render_text(data: dict) -> str:
    """The terminal summary of a report dict: the headline line, then the renderer's table and verdict."""
    head = (data.get("headline") or {}).get("text")
    body = _table_text(data)
    return f"headline: {head}\n{body}" if head else body


def render_markdown(data: dict, chart_note: str | None = None) -> str:
    """``report.md`` of a report dict: the headline under the title and the kept encoders' files.

    ``chart_note`` (why there is no chart) replaces the chart's image link.
    """
    text = _body_markdown(data, chart_note)
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
