"""``python -m perceptlab.analysis.matrix_gpu_check``: every matrix engine on CUDA against the CPU.

Run on a GPU machine (``training/gpu_check.sh`` runs it after the training
check). On a library of generated clips of several lengths (so whole clips
of different compared widths meet) it computes, on the CPU and on the GPU:

``engine``
    For every built-in metric: the dense all-pairs engine
    (:func:`perceptlab.metrics.pairwise.distance_matrix`) on the centre
    excerpts (or the vectors), CPU against ``device="cuda"``.
``rows``
    For every built-in metric and each comparison (whole clips, centre
    excerpts; the vector metrics once): the rows of the matrix
    (:class:`perceptlab.analysis.knn_graph.RowEngine`) and the k-NN graph;
    the distances must agree within ``tolerance`` and the neighbour lists
    where the CPU distances are not near-tied.
``sharded``
    ``torchrun --standalone --nproc-per-node P -m perceptlab.cli matrix
    --knn 3 --device cuda`` (NCCL, one process per GPU, at most 2) against
    the CPU graph.

Prints one line per comparison and writes a JSON report (``--json FILE``).
Exit status 0 when everything agrees, 1 when something does not, 2 without
a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Largest |CPU - CUDA| distance accepted (float32 engines, different summation order).
TOLERANCE = 1e-4
SECONDS = (0.6, 1.1, 1.7, 2.6, 4.0, 0.9)


def make_library(root: Path, n: int = 18) -> Path:
    """A library of ``n`` generated clips of several lengths (3 labels)."""
    import soundfile as sf

    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    rate, rng = 22050, np.random.default_rng(3)
    clips = root / "clips"
    for i in range(n):
        t = np.arange(int(SECONDS[i % len(SECONDS)] * rate)) / rate
        f0 = 110.0 * 2 ** rng.uniform(0, 4)
        y = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
        y = y * (0.4 + 0.6 * np.sin(np.pi * rng.uniform(0.5, 4) * t) ** 2) + 0.01 * rng.standard_normal(t.size)
        label = ("low", "mid", "high")[i % 3]
        (clips / label).mkdir(parents=True, exist_ok=True)
        sf.write(str(clips / label / f"{label}_{i:02d}.wav"), y.astype(np.float32), rate)
    path = root / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [clips])
    return path


def _agree(name: str, cpu: np.ndarray, gpu: np.ndarray, tolerance: float, seconds: dict) -> dict:
    diff = float(np.max(np.abs(cpu - gpu))) if cpu.size else 0.0
    ok = bool(np.all(np.isfinite(gpu))) and diff <= tolerance
    return {"name": name, "ok": ok, "max_abs_diff": diff, **seconds}


def _graphs_agree(cpu_idx, cpu_dist, gpu_idx, gpu_dist, tolerance: float) -> tuple[bool, int]:
    """Neighbour lists equal, except where the CPU's distances are within ``tolerance`` (a near-tie)."""
    bad = 0
    for i in range(len(cpu_idx)):
        if np.array_equal(cpu_idx[i], gpu_idx[i]):
            continue
        d = cpu_dist[i]
        tied = np.any(np.abs(np.diff(d)) <= 2 * tolerance)
        if not tied or not np.allclose(d, gpu_dist[i], atol=tolerance):
            bad += 1
    return bad == 0, bad


def run_checks(library: Path, device: str = "cuda", tolerance: float = TOLERANCE, k: int = 3,
               sharded: bool = True, out=print) -> dict:
    """Compare every engine on ``device`` with the CPU; returns the report."""
    import torch

    from perceptlab.analysis.knn_graph import RowEngine, top_k
    from perceptlab.analysis.clip_inputs import metric_inputs
    from perceptlab.library.store import Library
    from perceptlab.metrics.pairwise import distance_matrix
    from perceptlab.metrics.registry import list_metrics

    checks = []
    with Library(library, read_only=True) as lib:
        clips = lib.clips()
        metrics = [m for m in list_metrics() if not m.of_library]
        for m in metrics:
            excerpt = "whole" if m.input_kind == "vector" else "centre"
            x = metric_inputs(lib, m.name, clips, excerpt=excerpt)
            t0 = time.perf_counter()
            cpu = distance_matrix(x, m.name).numpy()
            t1 = time.perf_counter()
            gpu = distance_matrix(x, m.name, device=device).numpy()
            t2 = time.perf_counter()
            checks.append(_agree(f"engine {m.name}", cpu, gpu, tolerance, {"cpu_s": t1 - t0, "device_s": t2 - t1}))
            for excerpt in (("whole",) if m.input_kind == "vector" else ("whole", "centre")):
                t0 = time.perf_counter()
                cpu = RowEngine(lib, m.name, clips, excerpt=excerpt).rows(0, len(clips))
                t1 = time.perf_counter()
                gpu = RowEngine(lib, m.name, clips, excerpt=excerpt, device=device).rows(0, len(clips))
                t2 = time.perf_counter()
                c = _agree(f"rows {m.name} {excerpt}", cpu, gpu, tolerance, {"cpu_s": t1 - t0, "device_s": t2 - t1})
                ci, cd = top_k(cpu, k, 0)
                gi, gd = top_k(gpu, k, 0)
                same, bad = _graphs_agree(ci, cd, gi, gd, tolerance)
                c["knn_rows_differing"] = bad
                c["ok"] = c["ok"] and same
                checks.append(c)
        for c in checks:
            out(f"{'ok    ' if c['ok'] else 'FAILED'} {c['name']:<36} max |cpu - {device}| {c['max_abs_diff']:.2e}")
        if sharded:
            checks.append(_sharded_check(library, lib, device, tolerance, k, out))
    report = {"device": device, "tolerance": tolerance, "clips": len(clips),
              "torch": torch.__version__, "checks": checks, "ok": all(c["ok"] for c in checks)}
    if device.startswith("cuda") and torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return report


def _sharded_check(library: Path, lib, device: str, tolerance: float, k: int, out) -> dict:
    import torch

    from perceptlab.analysis.knn_graph import KnnGraph, knn_graph

    nproc = max(1, min(2, torch.cuda.device_count())) if device.startswith("cuda") else 2
    with tempfile.TemporaryDirectory(prefix="perceptlab-matrix-check-") as tmp:
        graph = Path(tmp) / "graph.npz"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "perceptlab.cli", "matrix", "--library", str(library), "--metric", "msssim",
               "--knn", str(k), "--device", "cuda" if device.startswith("cuda") else "cpu",
               "--out", str(graph), "--json"]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        seconds = time.perf_counter() - t0
        c = {"name": f"sharded msssim knn, {nproc} process(es)", "command": " ".join(cmd[1:]),
             "seconds": seconds, "exit_status": run.returncode}
        if run.returncode != 0:
            c.update(ok=False, max_abs_diff=float("nan"), error=run.stderr.strip().splitlines()[-1:] or [""])
        else:
            backend = json.loads(run.stdout).get("backend")
            g = KnnGraph.load(graph)
            cpu = knn_graph(lib, "msssim", k)
            same, bad = _graphs_agree(cpu.indices, cpu.distances, g.indices, g.distances, tolerance)
            diff = float(np.max(np.abs(np.sort(cpu.distances, 1) - np.sort(g.distances, 1))))
            c.update(ok=same and diff <= tolerance, max_abs_diff=diff, backend=backend, knn_rows_differing=bad)
    out(f"{'ok    ' if c['ok'] else 'FAILED'} {c['name']:<36} max |cpu - sharded| {c['max_abs_diff']:.2e}"
        + (f" ({c.get('backend')})" if c.get("backend") else f": {c.get('error')}"))
    return c


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(prog="python -m perceptlab.analysis.matrix_gpu_check",
                                description="every matrix engine on CUDA against the CPU")
    p.add_argument("--json", metavar="FILE", default=None, help="write the report here")
    p.add_argument("--device", default="cuda", help="the device to check (default cuda)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help=f"largest accepted difference ({TOLERANCE})")
    p.add_argument("--no-sharded", action="store_true", help="leave out the torchrun run")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("matrix_gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to compare",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="perceptlab-matrix-check-") as tmp:
        report = run_checks(make_library(Path(tmp)), args.device, args.tolerance, sharded=not args.no_sharded,
                            out=lambda s: print(s, file=sys.stderr))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"matrix_gpu_check: {'every engine agrees' if report['ok'] else 'a check FAILED'}"
          + (f"; report in {args.json}" if args.json else ""), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
