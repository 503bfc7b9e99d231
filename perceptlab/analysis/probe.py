"""A perceptual sanity check of every metric on the user's own clips.

"Which metric should I trust on my data?" needs no listening test for its
first answer: some changes to a sound are near-inaudible (a level change of
3 dB, which loudness alignment removes; a 10 ms delay; noise 45 dB below the
signal; MP3 at 128 kbps; a tempo 1% faster) and some are obvious to anyone
(noise at 10 dB SNR, everything above 2 kHz removed, hard clipping, a 300 ms
echo, the clip played backwards). Each side holds one change that trips a
known kind of metric: a whole-clip image comparison does not forgive the
tempo change, whole-clip statistics cannot hear the reversal. A listener asked "which of
these two copies is closer to the original?" picks the near-inaudible one
every time. :func:`run_probe` renders both kinds of copies of a seeded
sample of the library's clips with the stimulus recipes of
:mod:`perceptlab.audio.distort`, and counts, for every metric, the share of
triplets (clip, near copy, far copy) it orders as that listener would:
``d(clip, near) < d(clip, far)`` (a tie counts half).

Distances are :func:`perceptlab.analysis.similarity.pair_distances`: whole
clips, time-aligned, the numbers of ``perceptlab distance`` (vector metrics
-- the baselines, encoders -- compare whole-clip statistics or embeddings,
which the alignment does not change, so theirs are computed without it).
Each (clip, copy) distance is computed once per metric and shared by every
triplet it is part of. Intervals are 95% percentile bootstraps over clips (the clips
are the sampling unit: a metric's triplets on one clip are not independent).

The report is a plain JSON-able dict (``perceptlab probe --json``)::

    {"version": 1, "library", "feature_config", "n_clips", "seed",
     "clips": [ids], "clip_names": [names], "out_dir",
     "variants": {"near": [{"name", "recipe"}], "far": [...]},
     "metrics": [names], "baselines": [names],
     "skipped": [{"name", "reason"}],        # copies this machine cannot render
     "failures": [{"clip", "variant", "reason"}],  # copies one clip cannot take
     "rows": [{"metric", "near", "far", "share", "ci": [lo, hi], "n"}],
     "summary": {metric: {"overall": {"share", "ci", "n"},
                          "by_near": {variant: {"share", "ci", "n"}},
                          "by_far": {variant: {"share", "ci", "n"}},
                          "separation": {"share", "ci"},
                          "median_distance": {variant: float}}},
     "distances": {metric: {variant: [one per clip, None where not rendered]}},
     "ranking": [metric names, best first], "headline": str}

A share of 1 means every triplet was ordered as a listener would; 0.5 is
what a coin would do. ``separation`` asks more of a metric: the share of
(near copy of one clip, far copy of any clip) pairs in order, i.e. whether
one threshold on the metric tells inaudible from audible changes whatever
the clip; it breaks ties between metrics that order every triplet.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.atomic import atomic_path
from perceptlab.audio.distort import Recipe
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

VERSION = 1

#: Clips the probe samples by default: enough for a usable interval, and a
#: run well under a minute on two CPU cores with the five built-in metrics
#: (120 copies of 4-5 s clips).
DEFAULT_CLIPS = 12

#: Bootstrap resamples of the clips.
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Variant:
    """A copy of a clip: a name for people and the recipe that renders it."""

    name: str
    recipe: Recipe

    def to_json(self) -> dict:
        return {"name": self.name, "recipe": self.recipe.to_json(), "label": self.recipe.label}


#: Changes a listener barely hears, if at all: a level change (loudness
#: alignment removes it), a short delay (the pair alignment removes it),
#: faint noise, a transparent codec, and a tempo change well under the
#: tempo discrimination threshold (a few per cent), which a frame-by-frame
#: comparison of whole clips does not forgive.
NEAR_VARIANTS = (
    Variant("gain -3 dB", Recipe("gain", {"db": -3.0})),
    Variant("delay 10 ms", Recipe("time_shift", {"seconds": 0.01})),
    Variant("noise 45 dB SNR", Recipe("white_noise", {"snr_db": 45.0})),
    Variant("mp3 128 kbps", Recipe("mp3", {"bitrate_kbps": 128})),
    Variant("tempo +1%", Recipe("time_stretch", {"rate": 1.01})),
)

#: Changes anyone hears, the last of them one that whole-clip statistics
#: cannot see (a clip played backwards has the same band levels).
FAR_VARIANTS = (
    Variant("noise 10 dB SNR", Recipe("white_noise", {"snr_db": 10.0})),
    Variant("low-pass 2 kHz", Recipe("lowpass", {"cutoff_hz": 2000.0, "transition_hz": 100.0})),
    Variant("hard clip at -20 dB", Recipe("clip", {"threshold": 0.1})),  # 10% of the peak
    Variant("echo 300 ms", Recipe("echo", {"delay_s": 0.3, "level_db": -6.0})),
    Variant("reversed", Recipe("reverse")),
)


def sample_clips(library: Library, n_clips: int, seed: int = 0) -> list[Clip]:
    """A seeded sample of ``n_clips`` good clips, spread evenly over the labels.

    Each label's clips are shuffled by the seed, then taken round-robin over
    the labels (sorted by name), so 12 clips of a 6-label library are 2 per
    label (when they do not divide evenly, the first labels get one more).
    Clips without a label form one group of their own.
    """
    clips = library.clips()
    if n_clips < 1:
        raise ValueError(f"the probe needs at least 1 clip, got {n_clips}")
    if not clips:
        raise ValueError(f"{library.path}: no clips to probe; import some first")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Clip]] = {}
    for c in sorted(clips, key=lambda c: c.id):
        groups.setdefault(c.label or "", []).append(c)
    queues = []
    for label in sorted(groups):
        members = groups[label]
        queues.append([members[i] for i in rng.permutation(len(members))])
    out: list[Clip] = []
    while len(out) < n_clips and any(queues):
        for q in queues:
            if q and len(out) < n_clips:
                out.append(q.pop(0))
    return out


def _render(clip: Clip, variant: Variant, seed: int, out_dir: Path) -> Path:
    """Write ``variant`` of ``clip`` as a float WAV (nothing clipped) at the clip's own rate."""
    import soundfile as sf

    from perceptlab.audio.decode import load
    from perceptlab.audio.distort import apply

    recipe = Recipe(variant.recipe.kind, dict(variant.recipe.params), seed)
    rate = sf.info(clip.path).samplerate
    y = apply(recipe, load(clip.path, sample_rate=None), rate)
    out = out_dir / f"{clip.id:05d}-{Path(clip.path).stem}__{recipe.slug}.wav"
    with atomic_path(out) as tmp:
        sf.write(str(tmp), y, rate, format="WAV", subtype="FLOAT")
    return out


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` of the finite entries; NaN where there are none (no warning)."""
    ok = np.isfinite(x)
    n = ok.sum(axis=axis)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _shares(outcomes: np.ndarray, idx: np.ndarray) -> tuple[float, list[float]]:
    """Mean share over clips and its bootstrap 95% interval.

    ``outcomes`` is (C, K): per clip, the outcome (0, 0.5, 1; NaN where a
    copy could not be rendered) of each of its K triplets; ``idx`` (B, C)
    the bootstrap resamples of the clips. Each clip weighs the same.
    """
    per_clip = _nanmean(outcomes, 1)  # (C,)
    share = float(_nanmean(per_clip, 0))
    boot = _nanmean(per_clip[idx], 1)  # (B,)
    boot = boot[np.isfinite(boot)]
    lo, hi = np.percentile(boot, [2.5, 97.5]) if boot.size else (share, share)
    return share, [float(lo), float(hi)]


def _outcome(d_near: np.ndarray, d_far: np.ndarray) -> np.ndarray:
    """1 where the near copy is nearer, 0 where it is farther, 0.5 for a tie (to rounding)."""
    tol = 1e-9 * np.maximum(np.abs(d_near), np.abs(d_far))
    out = np.where(d_near < d_far, 1.0, 0.0)
    out = np.where(np.abs(d_near - d_far) <= tol, 0.5, out)
    return np.where(np.isnan(d_near) | np.isnan(d_far), np.nan, out)


def _unavailable(variant: Variant) -> str | None:
    """Why this machine cannot render ``variant`` at all, or None."""
    if variant.recipe.kind == "mp3":
        import soundfile as sf

        if "MP3" not in sf.available_formats():
            return f"libsndfile {sf.__libsndfile_version__} here cannot encode MP3 (1.1.0 or later can)"
    return None


def _is_vector(name: str) -> bool:
    from perceptlab.metrics.registry import get_metric

    return get_metric(name).input_kind == "vector"


def run_probe(library: Library, *, metrics: Sequence[str] | None = None, n_clips: int = DEFAULT_CLIPS,
              seed: int = 0, out_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None, config: FeatureConfig = FeatureConfig(),
              near: Sequence[Variant] = NEAR_VARIANTS, far: Sequence[Variant] = FAR_VARIANTS,
              bootstrap: int = BOOTSTRAP) -> dict:
    """Probe each metric with near-inaudible and clearly audible copies of library clips.

    Parameters
    ----------
    library : Library
    metrics : sequence of str, optional
        Default: every metric the library offers
        (:func:`~perceptlab.analysis.library_metrics.register_library_metrics`).
    n_clips : int
        Clips sampled (spread over labels, see :func:`sample_clips`); fewer
        when the library has fewer.
    seed : int
        Seed of the sample, of the noise of the rendered copies and of the
        bootstrap.
    out_dir : path, optional
        Where the copies are written as WAV files (default: a new temporary
        folder, left in place so they can be heard).
    progress, cancel
        See :mod:`perceptlab.tasks`; one step is one copy rendered and
        measured (spectrogram metrics together), then one step per copy for
        each vector metric: ``n_clips * (len(near) + len(far)) * (1 +
        number of vector metrics)`` steps in all.

    Returns
    -------
    dict
        The report (see the module notes).
    """
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.analysis.similarity import Query, metric_names, pair_distances

    offered = register_library_metrics(library)
    names = list(offered) if metrics is None else metric_names(list(metrics))
    if not names:
        raise ValueError("no metric to probe")
    if not near or not far:
        raise ValueError("the probe needs at least one near and one far variant")
    seen = [v.name for v in list(near) + list(far)]
    if len(set(seen)) != len(seen):
        raise ValueError(f"variant names must differ, got {seen}")
    skipped = [{"name": v.name, "reason": why} for v in list(near) + list(far) if (why := _unavailable(v))]
    near = [v for v in near if not _unavailable(v)]
    far = [v for v in far if not _unavailable(v)]
    if not near or not far:
        raise ValueError("the probe needs at least one near and one far variant it can render here")
    clips = sample_clips(library, n_clips, seed)
    if len(clips) < 2:
        raise ValueError(f"{library.path}: the probe needs at least 2 clips, found {len(clips)}")
    out = Path(tempfile.mkdtemp(prefix="perceptlab-probe-")) if out_dir is None else Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    variants = list(near) + list(far)
    # Noise seeds differ per clip and variant, and follow from the probe's seed.
    noise_seeds = np.random.default_rng([seed, 1]).integers(0, 2**31 - 1, size=(len(clips), len(variants)))
    image_metrics = [m for m in names if not _is_vector(m)]
    vector_metrics = [m for m in names if _is_vector(m)]
    dist = {m: np.full((len(clips), len(variants)), np.nan) for m in names}  # (C, V) per metric
    n_pairs = len(clips) * len(variants)
    total = n_pairs * (1 + len(vector_metrics))
    queries: dict = {}
    failures = []
    report(progress, 0, total)
    # Pass 1: render every copy; the spectrogram metrics share one aligned
    # comparison per (clip, copy).
    for ci, clip in enumerate(clips):
        for vi, v in enumerate(variants):
            check_cancel(cancel)
            try:
                path = _render(clip, v, int(noise_seeds[ci, vi]), out)
            except ValueError as exc:  # e.g. a codec bitrate this clip's rate does not allow
                failures.append({"clip": clip.id, "variant": v.name, "reason": str(exc)})
            else:
                queries[ci, vi] = (Query(clip.path, clip.name, clip), Query(str(path.resolve()), path.name))
                if image_metrics:
                    d = pair_distances(library, *queries[ci, vi], image_metrics, config)
                    for m in image_metrics:
                        dist[m][ci, vi] = d[m]
            report(progress, ci * len(variants) + vi + 1, total)
    # Then each vector metric (baselines, encoders) on its own over every
    # pair, so its library statistics are computed once, not once per pair.
    # They compare whole-clip statistics or embeddings, which the time
    # alignment does not change, so it is skipped.
    for k, m in enumerate(vector_metrics):
        for ci in range(len(clips)):
            for vi in range(len(variants)):
                check_cancel(cancel)
                if (ci, vi) in queries:
                    dist[m][ci, vi] = pair_distances(library, *queries[ci, vi], [m], config, align=False)[m]
                report(progress, n_pairs * (k + 1) + ci * len(variants) + vi + 1, total)
    # A copy no clip could take is left out altogether.
    rendered = [vi for vi in range(len(variants)) if any((ci, vi) in queries for ci in range(len(clips)))]
    for vi, v in enumerate(variants):
        if vi not in rendered:
            reasons = sorted({f["reason"] for f in failures if f["variant"] == v.name})
            skipped.append({"name": v.name, "reason": "; ".join(reasons)})
    n_near = len(near)
    near = [variants[vi] for vi in rendered if vi < n_near]
    far = [variants[vi] for vi in rendered if vi >= n_near]
    if not near or not far:
        raise ValueError("no clip could take a near or a far copy: "
                         + "; ".join(f"{x['name']}: {x['reason']}" for x in skipped))
    variants = near + far
    dist = {m: d[:, rendered] for m, d in dist.items()}

    nn = len(near)
    boot_idx = np.random.default_rng([seed, 2]).integers(0, len(clips), size=(bootstrap, len(clips)))
    rows, summary = [], {}
    for m in names:
        d = dist[m]
        # (C, near, far) outcomes of every triplet.
        oc = _outcome(d[:, :nn, None], d[:, None, nn:])
        for i, nv in enumerate(near):
            for j, fv in enumerate(far):
                share, ci = _shares(oc[:, i, j][:, None], boot_idx)
                rows.append({"metric": m, "near": nv.name, "far": fv.name, "share": share, "ci": ci,
                             "n": int(np.isfinite(oc[:, i, j]).sum())})

        def cell(block: np.ndarray) -> dict:
            share, ci = _shares(block.reshape(len(clips), -1), boot_idx)
            return {"share": share, "ci": ci, "n": int(np.isfinite(block).sum())}

        summary[m] = {
            "overall": cell(oc),
            "by_near": {nv.name: cell(oc[:, i, :]) for i, nv in enumerate(near)},
            "by_far": {fv.name: cell(oc[:, :, j]) for j, fv in enumerate(far)},
            "separation": _separation(d[:, :nn], d[:, nn:], boot_idx),
            "median_distance": {v.name: float(np.nanmedian(d[:, k])) for k, v in enumerate(variants)},
        }
    from perceptlab.metrics.registry import is_baseline

    baselines = [m for m in names if is_baseline(m)]
    rep = {
        "version": VERSION,
        "library": str(library.path),
        "feature_config": {**config.to_dict(), "hash": config.hash},
        "n_clips": len(clips),
        "seed": seed,
        "clips": [c.id for c in clips],
        "clip_names": [c.name for c in clips],
        "out_dir": str(out.resolve()),
        "variants": {"near": [v.to_json() for v in near], "far": [v.to_json() for v in far]},
        "metrics": names,
        "baselines": baselines,
        "skipped": skipped,
        "failures": failures,
        "rows": rows,
        "summary": summary,
        "distances": {m: {v.name: [None if np.isnan(x) else float(x) for x in dist[m][:, k]]
                          for k, v in enumerate(variants)} for m in names},
        "ranking": rank(summary),
    }
    rep["headline"] = headline(rep)
    return rep


def _separation(near: np.ndarray, far: np.ndarray, idx: np.ndarray) -> dict:
    """Share of (near copy of one clip, far copy of any clip) pairs with the near one nearer.

    The triplets compare copies of the same clip; this asks more: whether
    ONE threshold on the metric would tell near-inaudible from clearly
    audible copies across the whole sample (1: it would, whatever the clip).
    Bootstrapped over clips like the shares.
    """

    def share(rows: np.ndarray) -> float:
        n, f = near[rows].ravel(), far[rows].ravel()
        n, f = n[np.isfinite(n)], f[np.isfinite(f)]
        return float(_outcome(n[:, None], f[None, :]).mean())

    boot = np.array([share(r) for r in idx])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"share": share(np.arange(near.shape[0])), "ci": [float(lo), float(hi)]}


def rank(summary: dict) -> list[str]:
    """Metric names, best first.

    By the overall share of triplets; equal shares by the cross-clip
    separation (one threshold for every clip), then by the worst share over
    the far copies (a metric fooled by one kind of damage is less
    trustworthy), then by name.
    """
    def key(m):
        s = summary[m]
        return (-round(s["overall"]["share"], 9), -round(s["separation"]["share"], 9),
                -min(c["share"] for c in s["by_far"].values()), m)

    return sorted(summary, key=key)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _names(ms: Sequence[str]) -> str:
    ms = list(ms)
    return ms[0] if len(ms) == 1 else ", ".join(ms[:-1]) + " and " + ms[-1]


def headline(rep: dict) -> str:
    """Which metric orders most triplets as a listener would, said honestly.

    Says when several tie (and what then separates them), when the
    intervals overlap, and when a baseline does as well as or better than
    the perceptual metrics.
    """
    ranking, summary, baselines = rep["ranking"], rep["summary"], set(rep.get("baselines", ()))
    best = ranking[0]
    s = summary[best]["overall"]
    top = [m for m in ranking if abs(summary[m]["overall"]["share"] - s["share"]) < 1e-9]
    perceptual = [m for m in ranking if m not in baselines]
    where = f"of {s['n']} triplets ({rep['n_clips']} clips)"
    if len(top) > 1:
        every = "all " if len(top) == len(ranking) else ""
        text = (f"{_names(top)} {every}order {_pct(s['share'])} {where} as a listener would: "
                "the triplets do not separate them.")
        sep = summary[best]["separation"]
        text += (f" One threshold across clips works best for {best} "
                 f"({_pct(sep['share'])} of near/far pairs of different clips in order).")
        if baselines & set(top) and set(perceptual) & set(top):
            text += " The baselines do as well as the perceptual metrics on these checks."
    else:
        text = (f"{best} orders most triplets as a listener would: {_pct(s['share'])} {where}, "
                f"95% CI {_pct(s['ci'][0])}-{_pct(s['ci'][1])}.")
        overlapping = [m for m in ranking[1:] if summary[m]["overall"]["ci"][1] >= s["ci"][0]]
        if overlapping:
            text += (f" The intervals of {_names(overlapping)} overlap it: these clips do not separate "
                     "them; probe more clips to tell.")
    if best in baselines:
        if perceptual:
            p = perceptual[0]
            if abs(summary[p]["overall"]["share"] - s["share"]) >= 1e-9:
                text += (f" A baseline wins here: the best perceptual metric, {p}, orders "
                         f"{_pct(summary[p]['overall']['share'])}, so on this library it does not earn its "
                         "cost on these checks.")
            elif len(top) > 1:
                text += f" A baseline separates the copies across clips best; the best perceptual metric is {p}."
        else:
            text += " Only baselines were probed."
    elif baselines and len(top) == 1:
        b = next(m for m in ranking if m in baselines)
        text += f" The best baseline, {b}, orders {_pct(summary[b]['overall']['share'])}."
    weak = {v: c["share"] for v, c in summary[best]["by_far"].items() if c["share"] < 0.75}
    if weak:
        worst = min(weak, key=weak.get)
        text += f" Even {best} misjudges '{worst}' ({_pct(weak[worst])} right)."
    return text


def report_text(rep: dict) -> str:
    """The probe as a readable table: metric x variant shares, overall, ranking."""
    near = [v["name"] for v in rep["variants"]["near"]]
    far = [v["name"] for v in rep["variants"]["far"]]
    metrics = rep["ranking"]
    summary = rep["summary"]
    w = max(8, *(len(m) for m in metrics))
    lines = [f"perceptlab probe: {rep['n_clips']} clips of {rep['library']} (seed {rep['seed']})",
             f"copies written to {rep['out_dir']}",
             "",
             "Share of triplets (clip, near copy, far copy) where d(clip, near) < d(clip, far); "
             "1 = as a listener, 0.5 = chance.",
             ""]

    def table(title: str, cols: list[str], key: str) -> None:
        widths = [max(6, len(c)) for c in cols]
        lines.append(title)
        lines.append(f"  {'metric':<{w}}  " + "  ".join(f"{c:>{cw}}" for c, cw in zip(cols, widths))
                     + "  overall (95% CI)")
        for m in metrics:
            cells = [f"{summary[m][key][c]['share']:>{cw}.2f}" for c, cw in zip(cols, widths)]
            o = summary[m]["overall"]
            mark = " *" if m in rep.get("baselines", ()) else ""
            lines.append(f"  {m:<{w}}  " + "  ".join(cells)
                         + f"  {o['share']:.2f} ({o['ci'][0]:.2f}-{o['ci'][1]:.2f}){mark}")
        lines.append("")

    table("Near copy (pooled over the far copies):", near, "by_near")
    table("Far copy (pooled over the near copies):", far, "by_far")
    lines.append("Across clips (near copy of one clip vs far copy of any clip: does one threshold work?):")
    for m in metrics:
        sep = summary[m]["separation"]
        lines.append(f"  {m:<{w}}  {sep['share']:.2f} ({sep['ci'][0]:.2f}-{sep['ci'][1]:.2f})")
    lines.append("")
    lines.append("Median distance to the clip:")
    cols = near + far
    widths = [max(9, len(c)) for c in cols]
    lines.append(f"  {'metric':<{w}}  " + "  ".join(f"{c:>{cw}}" for c, cw in zip(cols, widths)))
    for m in metrics:
        md = summary[m]["median_distance"]
        lines.append(f"  {m:<{w}}  " + "  ".join(f"{_num(md[c]):>{cw}}" for c, cw in zip(cols, widths)))
    lines.append("")
    for x in rep.get("skipped", ()):
        lines.append(f"left out: {x['name']}: {x['reason']}")
    fails = rep.get("failures", ())
    if fails:
        lines.append(f"{len(fails)} copies could not be rendered (their triplets are left out), e.g. "
                     f"clip {fails[0]['clip']}, {fails[0]['variant']}: {fails[0]['reason']}")
    if rep.get("baselines"):
        lines.append("* baseline (log-mel / MFCC statistics): a perceptual metric should beat it")
    lines.append("Ranking: " + ", ".join(f"{i + 1}. {m}" for i, m in enumerate(metrics)))
    lines.append(rep["headline"])
    return "\n".join(lines)


def _num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def write_chart(rep: dict, path: str | os.PathLike) -> Path | None:
    """Draw the overall and per-near-copy shares as bars with intervals (PNG or SVG by suffix).

    Returns the path, or None when matplotlib is not installed (the chart is
    optional; the table says everything the chart does).
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metrics = rep["ranking"]
    groups = ["overall"] + [v["name"] for v in rep["variants"]["near"]]
    fig, ax = plt.subplots(figsize=(min(13.0, 4.0 + 0.25 * len(metrics) * len(groups)), 4.2), dpi=120)
    width = 0.8 / len(metrics)
    for k, m in enumerate(metrics):
        s = rep["summary"][m]
        cells = [s["overall"]] + [s["by_near"][g] for g in groups[1:]]
        y = np.array([c["share"] for c in cells])
        lo = y - np.array([c["ci"][0] for c in cells])
        hi = np.array([c["ci"][1] for c in cells]) - y
        x = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
        ax.bar(x, y, width, label=m + (" (baseline)" if m in rep.get("baselines", ()) else ""),
               yerr=[lo, hi], capsize=2)
    ax.axhline(0.5, color="grey", lw=1, ls="--")
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share ordered as a listener would")
    ax.set_title(f"perceptlab probe: {rep['n_clips']} clips, near copy vs every far copy (95% CI)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
