"""Benchmark of the all-pairs engines against per-pair loops.

``perceptlab bench metrics --n 200`` calls :func:`run_metrics_bench`. It
times, on synthetic spectrogram-like images:

- the all-pairs matrix of each metric (:func:`distance_matrix`);
- the naive loop that calls the pair function once per pair; it is timed on a
  random sample of pairs and extrapolated to all N(N-1)/2 pairs;
- pytorch-msssim's ``ms_ssim`` per pair (7-tap window), when it is installed
  and the images are large enough for it (min side > 96), also extrapolated;
- one NLPD query against a 5,000-clip index built from perturbed copies of
  the N clips.

It also checks that the matrix entries of the sampled pairs equal the pair
function's values.
"""

from __future__ import annotations

import math
import platform
import time
from typing import Callable, Dict, Optional, Sequence

import torch

from perceptlab.metric_names import IMAGE_METRICS

from .pairwise import NLPDIndex, distance_matrix
from .pairwise_nlpd import _nlpd_coefficients
from .registry import get_metric


def make_specs(n: int, mels: int = 128, frames: int = 256, seed: int = 0) -> torch.Tensor:
    """Synthetic log-mel-like images (n, 1, mels, frames) float32 in [0, 1].

    Each clip has a spectral tilt, a harmonic stack whose fundamental changes
    every few dozen frames, note onsets with decays, and smoothed noise
    texture, with random parameters per clip.
    """
    g = torch.Generator().manual_seed(seed)
    f = torch.arange(mels, dtype=torch.float32).view(1, mels, 1)
    t = torch.arange(frames, dtype=torch.float32).view(1, 1, frames)
    seg = 32
    n_seg = math.ceil(frames / seg)
    f0 = 4 + 14 * torch.rand(n, 1, n_seg, generator=g)  # fundamental, in mel bins, per note
    f0 = f0.repeat_interleave(seg, dim=2)[..., :frames]  # (n, 1, T)
    harm = torch.zeros(n, mels, frames)
    for k in range(1, 7):
        # mel spacing compresses upper partials: place them at f0 * k^0.8
        harm += torch.exp(-((f - f0 * k**0.8) ** 2) / 3.0) / k
    phase = (t % seg) / seg
    decay = 2 + 6 * torch.rand(n, 1, 1, generator=g)
    envelope = torch.exp(-decay * phase)  # (n, 1, T) onsets every `seg` frames
    tilt = 0.55 - (0.2 + 0.2 * torch.rand(n, 1, 1, generator=g)) * f / mels
    noise = torch.rand(n, 1, mels, frames, generator=g)
    texture = torch.nn.functional.avg_pool2d(noise, 5, 1, 2)[:, 0]  # (n, F, T)
    img = tilt + 0.45 * harm * envelope + 0.35 * (texture - 0.5)
    return img.clamp(0.0, 1.0).unsqueeze(1).contiguous()  # (n, 1, F, T)


def _time(fn: Callable[[], object], repeats: int = 1) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sample_pairs(n: int, k: int, g: torch.Generator):
    i = torch.randint(0, n, (4 * k,), generator=g)
    j = torch.randint(0, n, (4 * k,), generator=g)
    keep = i < j
    return list(zip(i[keep][:k].tolist(), j[keep][:k].tolist()))


def run_metrics_bench(
    n: int = 200,
    frames: int = 256,
    mels: int = 128,
    seed: int = 0,
    out: Callable[[str], None] = print,
    *,
    metrics: Sequence[str] = IMAGE_METRICS,
    naive_pairs: int = 100,
    index_size: int = 5000,
    queries: int = 5,
    device: Optional[str] = None,
) -> Dict[str, object]:
    """Time all-pairs matrices against per-pair loops and an NLPD query.

    Parameters
    ----------
    n : int
        Number of clips in the all-pairs matrices.
    frames, mels : int
        Image size (mels x frames).
    seed : int
        Seed of the synthetic images and of the sampled pairs.
    out : callable
        Receives the report line by line.
    metrics : sequence of str
        Metrics to time (default: every built-in image metric,
        ``registry.image_metric_names``).
    naive_pairs : int
        Pairs timed in the per-pair loops (then extrapolated).
    index_size : int
        Clips in the NLPD query index (0 skips the query benchmark).
    queries : int
        Queries timed; the median time is reported.
    device : str, optional
        Compute device (default CPU).

    Returns
    -------
    dict
        All figures: per metric ``matrix_s``, ``naive_per_pair_ms``,
        ``naive_extrapolated_s``, ``speedup``, ``max_abs_diff`` and, for
        MS-SSIM, ``pytorch_msssim_*``; ``nlpd_query_ms`` and
        ``nlpd_index_build_s``; the environment.
    """
    if n < 2:
        raise ValueError("the benchmark needs n >= 2 clips")
    dev = torch.device(device) if device else torch.device("cpu")
    x = make_specs(n, mels, frames, seed).to(dev)
    total_pairs = n * (n - 1) // 2
    g = torch.Generator().manual_seed(seed + 1)
    pairs = _sample_pairs(n, naive_pairs, g)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    results: Dict[str, object] = {
        "n": n,
        "shape": (mels, frames),
        "pairs": total_pairs,
        "naive_pairs_timed": len(pairs),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "machine": platform.processor() or platform.machine(),
        "metrics": {},
    }
    out(
        f"perceptlab metrics benchmark: N={n} clips of {mels} x {frames} float32, {total_pairs} pairs, "
        f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    out(
        f"Naive loops are timed on {len(pairs)} random pairs and extrapolated to all "
        f"{total_pairs} pairs (pair functions called with validate=False)."
    )

    try:
        from pytorch_msssim import ms_ssim as _pm_ms_ssim
    except ImportError:  # an optional oracle, not a dependency
        _pm_ms_ssim = None

    metrics = tuple(metrics)
    for name in metrics:
        metric = get_metric(name)
        matrix_box = {}

        def run_matrix():
            matrix_box["d"] = distance_matrix(x, metric)
            sync()

        matrix_s = _time(run_matrix)
        d = matrix_box["d"]

        def naive():
            vals = []
            with torch.no_grad():
                for i, j in pairs:
                    vals.append(metric.fn(x[i : i + 1], x[j : j + 1], validate=False))
            sync()
            return vals

        with torch.no_grad():  # warm-up: first calls allocate
            metric.fn(x[0:1], x[1:2], validate=False)
        t0 = time.perf_counter()
        vals = naive()
        per_pair = (time.perf_counter() - t0) / len(pairs)
        max_diff = max(abs(float(v) - float(d[i, j])) for v, (i, j) in zip(vals, pairs))
        entry = {
            "matrix_s": matrix_s,
            "naive_per_pair_ms": per_pair * 1e3,
            "naive_extrapolated_s": per_pair * total_pairs,
            "speedup": per_pair * total_pairs / matrix_s,
            "max_abs_diff": max_diff,
        }
        if name == "msssim" and _pm_ms_ssim is not None and min(mels, frames) > 96:
            with torch.no_grad():
                _pm_ms_ssim(x[0:1], x[1:2], data_range=1.0, win_size=7)
                t0 = time.perf_counter()
                pm_vals = [
                    1.0 - float(_pm_ms_ssim(x[i : i + 1], x[j : j + 1], data_range=1.0, win_size=7))
                    for i, j in pairs
                ]
                pm_per_pair = (time.perf_counter() - t0) / len(pairs)
            entry.update(
                pytorch_msssim_per_pair_ms=pm_per_pair * 1e3,
                pytorch_msssim_extrapolated_s=pm_per_pair * total_pairs,
                pytorch_msssim_speedup=pm_per_pair * total_pairs / matrix_s,
                pytorch_msssim_max_abs_diff=max(abs(v - float(d[i, j])) for v, (i, j) in zip(pm_vals, pairs)),
            )
        results["metrics"][name] = entry

    header = (
        f"{'metric':<12}{'all-pairs s':>12}{'per pair ms':>13}{'naive s (extrap.)':>19}"
        f"{'speed-up':>10}{'max |diff|':>12}"
    )
    out("")
    out(header)
    out("-" * len(header))
    for name, e in results["metrics"].items():
        out(
            f"{name:<12}{e['matrix_s']:>12.2f}{e['naive_per_pair_ms']:>13.3f}"
            f"{e['naive_extrapolated_s']:>19.1f}{e['speedup']:>9.0f}x{e['max_abs_diff']:>12.1e}"
        )
        if "pytorch_msssim_per_pair_ms" in e:
            out(
                f"{'  vs pytorch-msssim':<24}{e['pytorch_msssim_per_pair_ms']:>13.3f}"
                f"{e['pytorch_msssim_extrapolated_s']:>19.1f}{e['pytorch_msssim_speedup']:>9.0f}x"
                f"{e['pytorch_msssim_max_abs_diff']:>12.1e}"
            )

    if index_size and "nlpd" in metrics:
        results.update(_bench_query(x, index_size, queries, seed, out, sync))
    return results


def _bench_query(x, index_size, queries, seed, out, sync) -> Dict[str, object]:
    """Build an NLPD index of ``index_size`` clips (perturbed copies of x) and time queries."""
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed + 2)
    chunk = 256
    parts = []
    t0 = time.perf_counter()
    for s in range(0, index_size, chunk):
        idx = torch.arange(s, min(s + chunk, index_size)) % n
        # Perturbed copies keep the set spectrogram-like without holding
        # index_size images in memory at once.
        noise = 0.02 * torch.randn((len(idx),) + tuple(x.shape[1:]), generator=g)
        specs = (x[idx] + noise.to(x.device)).clamp(0, 1)
        parts.append(_nlpd_coefficients(specs, 512 << 20))  # 6 x (chunk, n_k)
    levels = [torch.cat(level) for level in zip(*parts)]
    del parts
    sync()
    build_s = time.perf_counter() - t0
    index = NLPDIndex.from_coefficients(levels, tuple(x.shape[-2:]))
    qs = make_specs(queries, x.shape[-2], x.shape[-1], seed + 3).to(x.device)
    index.nearest(qs[0], 10)  # warm-up
    times = []
    for q in qs:
        t0 = time.perf_counter()
        index.nearest(q, 10)
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    q_ms = times[len(times) // 2] * 1e3
    mb = sum(lv.numel() * lv.element_size() for lv in levels) / 2**20
    out("")
    out(
        f"NLPD query against a {index_size}-clip index ({mb:.0f} MB of cached coefficients, "
        f"built in {build_s:.1f} s from perturbed copies of the {n} clips): "
        f"{q_ms:.0f} ms per query (median of {len(times)}, top-10)"
    )
    return {
        "nlpd_index_size": index_size,
        "nlpd_index_build_s": build_s,
        "nlpd_query_ms": q_ms,
        "nlpd_index_mb": mb,
    }
