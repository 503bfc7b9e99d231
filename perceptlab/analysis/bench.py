"""Whole-clip figures for ``perceptlab bench metrics``.

Two measurements on synthetic 30 s clips (1,292 frames, compared at the
1,328-frame rung of the width ladder):

* the all-pairs matrix of N clips for each metric, through the same
  function ``perceptlab matrix`` uses, against the per-pair loop (the pair
  function called once per pair on the padded images, timed on a sample of
  pairs and extrapolated) in the same process, with the largest difference
  between the two;
* the neighbours of one clip in a real library file of N clips (the
  clips' images written straight into its feature cache, no audio files),
  through the function ``perceptlab neighbours`` and the GUI use: the first
  query (cold: reads the images and builds the index) and the next ones
  (warm: the kept index).

Cost model (whole clips of T frames, all on one rung): a matrix costs N
per-clip transforms of O(F T) each plus N^2 / 2 pair terms. For MSE and NLPD
the pair term is one row of a GEMM over the clip's F T coefficients (so
O(N^2 F T) multiply-adds at GEMM speed); for MS-SSIM it is a filtered
product image per pair and scale, O(N^2 F T) at memory speed, which is why
MS-SSIM dominates. Everything grows linearly with clip length. Clips of
different lengths add one query block per rung (see
:func:`perceptlab.analysis.matrices._whole_matrix`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from perceptlab.metric_names import IMAGE_METRICS


def _synthetic_library(path: Path, images: np.ndarray, config) -> None:
    from perceptlab.library.store import Library

    with Library(path) as lib, lib.transaction():
        for i, im in enumerate(images):
            content = f"bench{i:06d}"
            lib.upsert_clip(path=f"/bench/clip_{i:05d}.wav", name=f"clip_{i:05d}.wav", content_hash=content,
                            size=0, mtime=0.0, duration=im.shape[1] * config.seconds_per_frame(),
                            sample_rate=config.sample_rate, channels=1, format="WAV",
                            label=f"label{i % 10}", loudness=config.loudness_target)
            lib.put_features(content, config.hash, im)


def run_whole_clip_bench(n: int = 500, frames: int = 1292, metrics: Sequence[str] = IMAGE_METRICS,
                         naive_pairs: int = 40, queries: int = 5, seed: int = 0,
                         out: Callable[[str], None] = print) -> dict:
    """Time whole-clip matrices and neighbour queries; return the figures.

    ``metrics`` defaults to every built-in image metric (``registry.image_metric_names``).
    """
    import torch

    from perceptlab.analysis.matrices import _whole_matrix
    from perceptlab.analysis.neighbours import ranking
    from perceptlab.analysis.similarity import Query
    from perceptlab.audio.features import FeatureConfig, compared_width, pad_frames
    from perceptlab.library.store import Library
    from perceptlab.metrics.bench import make_specs
    from perceptlab.metrics.registry import get_metric

    config = FeatureConfig()
    images = make_specs(n, config.n_mels, frames, seed)[:, 0].numpy()  # (N, F, T)
    width = compared_width(frames)
    out(f"whole clips: N={n} clips of {config.n_mels} x {frames} frames (30 s), compared at {width} frames, "
        f"{n * (n - 1) // 2} pairs, torch threads {torch.get_num_threads()}")
    rng = np.random.default_rng(seed + 1)
    pairs = [tuple(sorted(rng.choice(n, 2, replace=False))) for _ in range(naive_pairs)]
    results: dict = {"n": n, "frames": frames, "width": width, "metrics": {}}
    metrics = tuple(metrics)
    header = f"{'metric':<12}{'matrix s':>10}{'per pair ms':>13}{'loop s (extrap.)':>18}{'speed-up':>10}{'max |diff|':>12}"
    out(header)
    out("-" * len(header))
    for name in metrics:
        metric = get_metric(name)
        t0 = time.perf_counter()
        d = _whole_matrix(list(images), name, 512, None, None)
        matrix_s = time.perf_counter() - t0
        padded = [torch.from_numpy(pad_frames(images[i], width))[None, None] for i in range(n)]
        with torch.no_grad():
            metric.fn(padded[0], padded[1], validate=False)  # warm-up
            t0 = time.perf_counter()
            vals = [float(metric.fn(padded[i], padded[j], validate=False)[0]) for i, j in pairs]
            per_pair = (time.perf_counter() - t0) / len(pairs)
        loop_s = per_pair * n * (n - 1) / 2
        diff = max(abs(v - d[i, j]) for v, (i, j) in zip(vals, pairs))
        results["metrics"][name] = {"matrix_s": matrix_s, "naive_per_pair_ms": per_pair * 1e3,
                                    "naive_extrapolated_s": loop_s, "speedup": loop_s / matrix_s,
                                    "max_abs_diff": diff}
        out(f"{name:<12}{matrix_s:>10.1f}{per_pair * 1e3:>13.2f}{loop_s:>18.0f}{loop_s / matrix_s:>9.0f}x"
            f"{diff:>12.1e}")
    with tempfile.TemporaryDirectory(prefix="perceptlab-bench-") as tmp:
        path = Path(tmp, "bench.sqlite")
        _synthetic_library(path, images, config)
        out("")
        out(f"neighbours of one clip in a {n}-clip library of 30 s clips (perceptlab neighbours, the GUI):")
        with Library(path, read_only=True) as lib:
            clips = lib.clips()
            for name in metrics:
                times = []
                for q in range(queries + 1):
                    c = clips[(q * 97) % n]
                    t0 = time.perf_counter()
                    ranking(lib, Query(c.path, c.name, c), name, config)
                    times.append(time.perf_counter() - t0)
                warm = sorted(times[1:])[len(times[1:]) // 2]
                results["metrics"][name].update(neighbours_cold_s=times[0], neighbours_warm_s=warm)
                out(f"  {name:<10} first query {times[0]:6.2f} s, then {warm * 1e3:6.0f} ms (median of {queries})")
    return results
