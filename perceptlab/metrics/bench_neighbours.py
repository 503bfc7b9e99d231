"""``perceptlab bench neighbours``: nearest-neighbour search at sample-library scale.

Importing 100,000 files would measure the decoder; this benchmark builds the
search indexes directly from synthetic whole-clip log-mel images, as a
library's index would hold them (:mod:`perceptlab.library.indexes`), and
searches them as :func:`perceptlab.analysis.neighbours.neighbours` does.

The synthetic clips (:func:`synthetic_images`) are made from the demo
clips' real log-mels so that neighbours mean something: ``n / 20`` sound
families, each a random excerpt (0.5-3 s: one-shots and short loops) of a
demo clip, half of them mixed with another (power sum), shifted by up to 2
mel bands and up to +-6 dB; each family's 20 members are its sound again
with a few frames' shift, +-1.5 dB, a +-10% length change and a little
noise. So a query's true top 10 are mostly its siblings, which differ by
fine detail: the candidate stage has to keep the right ones of them.

Per metric it reports: ``build_s`` (synthesis included, for the image
metrics the one shared images index), ``index_mb`` on disk, ``peak_rss_mb``
(VmHWM of the process that built and searched, each metric in a fresh
process; for the image metrics the larger of the build's and the search's,
read before the exact reference for the recall is computed), ``query_ms_median`` / ``query_ms_p95`` over 50 top-10 queries,
``recall_at_10`` against exact search on a subset of (at most) 5,000 clips,
searched the same two-stage way with the same budget, and ``open_ms``, the
first search after opening the index (the sketch norms are computed then).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from perceptlab.audio.features import FeatureConfig
from perceptlab.metric_names import BUILTIN_METRICS

#: Metrics measured: every built-in one, asked of the registry when read
#: (encoder metrics are vectors searched like the baselines, exactly).
BENCH_METRICS = BUILTIN_METRICS
FAMILY_SIZE = 20
MIN_FRAMES, MAX_FRAMES = 22, 130


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        return kib / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def demo_images(config: FeatureConfig = FeatureConfig()) -> list[np.ndarray]:
    """The whole log-mel images of the shipped demo clips."""
    from perceptlab.audio.decode import load
    from perceptlab.audio.features import log_mel

    root = Path(__file__).resolve().parents[2] / "assets" / "demo"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".flac", ".wav", ".ogg"))
    if not files:
        raise ValueError(f"no demo clips under {root}: the benchmark derives its clips from them")
    return [log_mel(load(str(p), config.sample_rate), config) for p in files]


def _mix(a: np.ndarray, b: np.ndarray, gain_db: float, span: float) -> np.ndarray:
    # Power sum in the dB domain (both images share the fixed dB mapping).
    s = span / 10.0
    pa, pb = np.power(10.0, a * s), np.power(10.0, (b + gain_db / span) * s)
    return (np.log10(pa + pb) / s).astype(np.float32)


def synthetic_images(n: int, base: Sequence[np.ndarray], seed: int = 0,
                     config: FeatureConfig = FeatureConfig()) -> Iterator[np.ndarray]:
    """``n`` synthetic whole (F, T) images in families (see the module notes), one at a time."""
    rng = np.random.default_rng(seed)
    span = config.db_ceiling - config.db_floor
    made = 0
    while made < n:
        a = base[rng.integers(len(base))]
        t = int(np.exp(rng.uniform(np.log(MIN_FRAMES), np.log(MAX_FRAMES))))
        t = min(t, a.shape[1])
        s0 = rng.integers(0, a.shape[1] - t + 1)
        proto = a[:, s0 : s0 + t].astype(np.float32)
        if rng.random() < 0.5:
            b = base[rng.integers(len(base))]
            tb = min(t, b.shape[1])
            sb = rng.integers(0, b.shape[1] - tb + 1)
            other = np.zeros_like(proto)
            other[:, :tb] = b[:, sb : sb + tb]
            proto = _mix(proto, other, rng.uniform(-12, 0), span)
        shift = int(rng.integers(-2, 3))
        if shift:
            proto = np.roll(proto, shift, axis=0)
            if shift > 0:
                proto[:shift] = 0
            else:
                proto[shift:] = 0
        proto = proto + rng.uniform(-6, 6) / span
        for _ in range(min(FAMILY_SIZE, n - made)):
            m = proto
            lag = int(rng.integers(0, 4))
            if lag:
                m = np.concatenate([np.zeros((m.shape[0], lag), np.float32), m[:, :-lag]], axis=1)
            tl = max(MIN_FRAMES, min(int(round(m.shape[1] * rng.uniform(0.9, 1.1))), m.shape[1]))
            m = m[:, :tl] + rng.uniform(-1.5, 1.5) / span
            m = m + rng.normal(0.0, 0.01, m.shape).astype(np.float32)
            yield np.clip(m, 0.0, 1.0).astype(np.float32)
            made += 1


def build_images_index(directory: Path, n: int, seed: int = 0, config: FeatureConfig = FeatureConfig(),
                       progress: Callable[[int, int], None] | None = None):
    """Write an ``images`` index of ``n`` synthetic clips (a family's members are adjacent rows)."""
    from perceptlab.analysis.indexing import IMAGES, _create
    from perceptlab.metrics.search import sketches

    base = demo_images(config)
    index = _create(directory, IMAGES, config)
    hashes = [f"synthetic-{i:07d}" for i in range(n)]

    def items():
        gen = synthetic_images(n, base, seed, config)
        while True:
            chunk = [im for _, im in zip(range(512), gen)]
            if not chunk:
                return
            sk = sketches(chunk)
            for im, v in zip(chunk, sk):
                yield im, v

    entry = index.write_block(hashes, items())
    index.commit([entry])
    return index


def build_vector_index(directory: Path, kind: str, images_index, config: FeatureConfig = FeatureConfig()):
    """A baseline's raw-statistics index of the clips in an images index."""
    from perceptlab.analysis.indexing import _create, vector_of

    index = _create(directory, kind, config)

    def items():
        for r in range(images_index.n_rows):
            im = images_index.image(r)
            yield im, vector_of(kind, im, config)

    entry = index.write_block(images_index.hashes, items())
    index.commit([entry])
    return index


def _query_rows(n: int, n_queries: int, subset: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7)
    return np.sort(rng.choice(min(subset, n), size=min(n_queries, min(subset, n)), replace=False))


def _image_metric_run(metric: str, directory: Path, n: int, subset: int, n_queries: int, seed: int,
                      budget: int | None) -> dict:
    from perceptlab.library.indexes import ClipIndex
    from perceptlab.metrics.search import SketchSearch, default_budget, two_stage

    budget = default_budget(metric) if budget is None else budget
    index = ClipIndex.open(directory)
    rows = _query_rows(n, n_queries, subset, seed)
    t0 = time.perf_counter()
    search = SketchSearch(index.vectors(), index.lengths, int(index.manifest["n_mels"]))
    times, open_ms = [], None
    for r in rows:
        q = index.image(int(r))
        allowed = np.ones(index.n_rows, bool)
        allowed[r] = False
        t = time.perf_counter()
        two_stage(q, search, index.image, metric, budget, allowed, gather=index.gather)
        times.append(time.perf_counter() - t)
        if open_ms is None:
            open_ms = (time.perf_counter() - t0) * 1000
    return {"query_ms_median": float(np.median(times) * 1000),
            "query_ms_p95": float(np.percentile(times, 95) * 1000), "open_ms": open_ms, "budget": budget}


def _image_metric_recall(metric: str, directory: Path, n: int, subset: int, n_queries: int, seed: int,
                         budget: int | None) -> dict:
    """Recall@10 of the two-stage search within the first ``subset`` rows against exact search there.

    The exact reference keeps one index per compared width of the subset's
    own clips, and one of the clips shorter than the query padded to the
    query's width (queries taken in order of their width, so it is rebuilt
    once per width): every distance is the real metric's at the pair width.
    """
    import torch

    from perceptlab.audio.features import compared_width, pad_frames
    from perceptlab.library.indexes import ClipIndex
    from perceptlab.metrics.pairwise import build_index
    from perceptlab.metrics.search import SketchSearch, default_budget, two_stage

    budget = default_budget(metric) if budget is None else budget
    index = ClipIndex.open(directory)
    m = min(subset, n)
    rows = _query_rows(n, n_queries, subset, seed)
    search = SketchSearch(index.vectors(), index.lengths, int(index.manifest["n_mels"]))
    rungs = np.array([compared_width(int(t)) for t in index.lengths[:m]])
    f = int(index.manifest["n_mels"])

    def stack(cols, w):
        x = np.zeros((len(cols), 1, f, int(w)), np.float32)
        for j, c in enumerate(cols):
            im = index.image(int(c))
            x[j, 0, :, : im.shape[1]] = im
        return x

    own = {int(w): (np.flatnonzero(rungs == w), None) for w in np.unique(rungs)}
    below_key, below = None, None
    recalls = []
    for r in sorted(rows, key=lambda r: compared_width(int(index.lengths[r]))):
        q = index.image(int(r))
        rq = compared_width(q.shape[1])
        d = np.empty(m)
        for w, (cols, ix) in own.items():
            if w >= rq:
                if ix is None:
                    ix = build_index(stack(cols, w), metric)
                    own[w] = (cols, ix)
                d[cols] = ix.distances(torch.from_numpy(pad_frames(q, w)[None, None])).reshape(-1).numpy()
        cols = np.flatnonzero(rungs < rq)
        if len(cols):
            if below_key != rq:
                below_key, below = rq, None
                below = build_index(stack(cols, rq), metric)
            d[cols] = below.distances(torch.from_numpy(pad_frames(q, rq)[None, None])).reshape(-1).numpy()
        d[r] = np.inf
        exact = set(np.argsort(d, kind="stable")[:10].tolist())
        allowed = np.zeros(index.n_rows, bool)
        allowed[:m] = True
        allowed[r] = False
        pos, _ = two_stage(q, search, index.image, metric, budget, allowed, gather=index.gather)
        recalls.append(len(exact & set(pos[:10].tolist())) / 10)
    return {"recall_at_10": float(np.mean(recalls))}


def _vector_metric_run(metric: str, directory: Path, n: int, subset: int, n_queries: int, seed: int,
                       recall: bool = True) -> dict:
    """Cosine top-10 over the z-scored vectors (:class:`~perceptlab.metrics.search.VectorSearch`);
    with ``recall``, recall against float64 brute force on the subset."""
    from perceptlab.library.indexes import ClipIndex
    from perceptlab.metrics.baselines import standardise
    from perceptlab.metrics.search import VectorSearch

    index = ClipIndex.open(directory)
    rows = _query_rows(n, n_queries, subset, seed)
    t0 = time.perf_counter()
    z, _stats = standardise(np.asarray(index.vectors(), dtype=np.float32))
    search = VectorSearch(z, metric)
    times, open_ms, recalls = [], None, []
    m = min(subset, n)
    z64 = z[:m].astype(np.float64)
    norms = np.linalg.norm(z64, axis=1)
    for r in rows:
        allowed = np.ones(len(z), bool)
        allowed[r] = False
        t = time.perf_counter()
        search.search(z[r], 10, allowed)
        times.append(time.perf_counter() - t)
        if open_ms is None:
            open_ms = (time.perf_counter() - t0) * 1000
        if not recall:
            continue
        ref = 1.0 - (z64 @ z64[r]) / np.maximum(norms * norms[r], 1e-300)
        ref[r] = np.inf
        exact = set(np.argsort(ref, kind="stable")[:10].tolist())
        sub = np.zeros(len(z), bool)
        sub[:m] = True
        sub[r] = False
        found, _ = search.search(z[r], 10, sub)
        recalls.append(len(exact & set(found.tolist())) / 10)
    out = {"query_ms_median": float(np.median(times) * 1000), "query_ms_p95": float(np.percentile(times, 95) * 1000),
           "open_ms": open_ms, "budget": None}
    if recall:
        out["recall_at_10"] = float(np.mean(recalls))
    return out


def _worker(args: dict) -> dict:
    """One metric in this (fresh) process: build what it needs, search, measure."""
    import torch

    torch.set_num_threads(int(args.get("threads") or torch.get_num_threads()))
    metric, root, n = args["metric"], Path(args["root"]), int(args["n"])
    config = FeatureConfig()
    images_dir = root / f"images-{config.hash}"
    out: dict = {}
    t = time.perf_counter()
    if args["role"] == "build-images":
        build_images_index(images_dir, n, args["seed"], config)
        out["build_s"] = time.perf_counter() - t
        out["index_mb"] = _dir_mb(images_dir)
    elif _on_images(metric):
        out.update(_image_metric_run(metric, images_dir, n, args["subset"], args["queries"], args["seed"],
                                     args.get("budget")))
        # The search's own peak, before the exact reference (not part of searching) is computed.
        out["peak_rss_mb"] = _peak_rss_mb()
        if not args.get("recall", True):
            return out
        out.update(_image_metric_recall(metric, images_dir, n, args["subset"], args["queries"], args["seed"],
                                        args.get("budget")))
        return out
    else:
        from perceptlab.library.indexes import ClipIndex

        vdir = root / f"{metric}-{config.hash}"
        build_vector_index(vdir, metric, ClipIndex.open(images_dir), config)
        out["build_s"] = time.perf_counter() - t
        out["index_mb"] = _dir_mb(vdir)
        out.update(_vector_metric_run(metric, vdir, n, args["subset"], args["queries"], args["seed"],
                                      args.get("recall", True)))
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _on_images(metric: str) -> bool:
    """Whether ``metric`` is searched in the shared images index (else in a vector index of its own)."""
    from perceptlab.metrics.registry import get_metric

    return get_metric(metric).compares_images


def _dir_mb(d: Path) -> float:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file()) / (1 << 20)


def _run_worker(args: dict) -> dict:
    code = ("import json, sys; from perceptlab.metrics.bench_neighbours import _worker; "
            "print('RESULT ' + json.dumps(_worker(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench neighbours: the {args['metric']} run failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


_KEPT = "bench-images.json"


def _kept_images(root: Path, n: int, seed: int) -> dict | None:
    """The build figures of an images index kept in ``root`` for the same ``n`` and ``seed``, if any."""
    from perceptlab.library.indexes import ClipIndex, IndexDamaged

    try:
        kept = json.loads((root / _KEPT).read_text())
        index = ClipIndex.open(Path(kept["directory"]))
    except (OSError, ValueError, KeyError, TypeError, IndexDamaged):
        return None
    from perceptlab.analysis.indexing import _info

    if (kept.get("n"), kept.get("seed")) != (n, seed) or index.n_rows != n \
            or index.manifest.get("info") != _info("images"):
        return None
    return kept["built"]


def run_neighbours_bench(n: int = 100_000, metrics: Sequence[str] = BENCH_METRICS, subset: int = 5000,
                         queries: int = 50, seed: int = 0, budget: int | None = None,
                         workdir: str | os.PathLike | None = None, threads: int | None = None,
                         out: Callable[[str], None] = print, keep: str | os.PathLike | None = None,
                         recall: bool = True) -> dict:
    """Build synthetic indexes of ``n`` clips and time two-stage (or exact) top-10 search per metric.

    ``metrics`` chooses the metrics measured. With ``keep`` (a folder) the
    synthetic indexes are kept there and the images index is reused by the
    next run of the same ``n`` and seed (its build figures are the first
    run's); without it they live in a temporary folder under ``workdir``,
    removed afterwards. ``recall=False`` skips the exact reference (only the
    timings and memory).

    Returns ``{"n": n, "metrics": {name: {build_s, index_mb, peak_rss_mb,
    query_ms_median, query_ms_p95, recall_at_10, open_ms, budget}}}``.
    """
    if n < 30:
        raise ValueError(f"--n must be at least 30 clips, got {n}")
    unknown = [m for m in metrics if m not in BENCH_METRICS]
    if unknown:
        raise ValueError(f"bench neighbours: unknown metric(s) {', '.join(unknown)}; "
                         f"use some of {', '.join(BENCH_METRICS)}")
    if not metrics:
        raise ValueError("bench neighbours: no metric to measure")
    queries = max(1, min(queries, n))
    if keep is not None:
        root = Path(keep).expanduser()
        if root.exists() and not root.is_dir():
            raise ValueError(f"bench neighbours: --keep {root} is a file, not a folder")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="perceptlab-bench-nb-", dir=workdir))
    result: dict = {"n": n, "subset": min(subset, n), "queries": queries, "metrics": {}}
    try:
        base = {"root": str(root), "n": n, "seed": seed, "subset": subset, "queries": queries,
                "budget": budget, "threads": threads, "recall": recall}
        out(f"perceptlab bench neighbours: {n} synthetic clips, {queries} top-10 queries, "
            + (f"recall against exact search on {min(subset, n)} clips" if recall else "no recall"))
        built = _kept_images(root, n, seed) if keep is not None else None
        if built is not None:
            out(f"  images index (shared by the image metrics): reused from {root} (built in "
                f"{built['build_s']:.1f} s, {built['index_mb']:.0f} MB, peak RSS {built['peak_rss_mb']:.0f} MB)")
        else:
            built = _run_worker({**base, "metric": "images", "role": "build-images"})
            out(f"  images index (shared by the image metrics): built in {built['build_s']:.1f} s, "
                f"{built['index_mb']:.0f} MB, peak RSS {built['peak_rss_mb']:.0f} MB")
            if keep is not None:
                images_dir = root / f"images-{FeatureConfig().hash}"
                (root / _KEPT).write_text(json.dumps({"n": n, "seed": seed, "directory": str(images_dir),
                                                      "built": built}))
        for m in metrics:
            r = _run_worker({**base, "metric": m, "role": "query"})
            if _on_images(m):
                r["build_s"] = built["build_s"]
                r["index_mb"] = built["index_mb"]
                r["peak_rss_mb"] = max(r["peak_rss_mb"], built["peak_rss_mb"])
            result["metrics"][m] = r
            rec = f"{r['recall_at_10']:.3f}" if "recall_at_10" in r else "-"
            out(f"  {m:13s} build {r['build_s']:7.1f} s  index {r['index_mb']:7.0f} MB  peak RSS "
                f"{r['peak_rss_mb']:6.0f} MB  query median {r['query_ms_median']:6.1f} ms  p95 "
                f"{r['query_ms_p95']:6.1f} ms  recall@10 {rec}"
                + (f"  (budget {r['budget']})" if r.get("budget") else "  (exact)"))
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return result
