"""``perceptlab bench``: benchmarks (ratios against a baseline in the same process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from perceptlab.cli.common import UserError
from perceptlab.jsonable import jsonable


def cmd_bench(args) -> int:
    if args.what == "import":
        from perceptlab.audio.bench import run_import_bench

        run_import_bench(n_clips=args.n or 12, out=print)
        return 0
    if args.what == "memory":
        from perceptlab.audio.bench import run_memory_bench

        run_memory_bench(minutes=args.n or 60, out=print)
        return 0
    if args.what == "train":
        # With --json the readable lines go to stderr and stdout holds only the JSON.
        emit = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
        if args.device == "cuda":
            from perceptlab.train.gpu_check import no_cuda_message, run_gpu_check

            why = no_cuda_message()
            if why:
                if args.json:
                    print(json.dumps({"command": "perceptlab bench train --device cuda", "ok": False,
                                      "error": why}, indent=2))
                raise UserError(why)
            report = run_gpu_check(steps=args.n, out=emit)
            if args.json:
                print(json.dumps(jsonable(report), indent=2))
            return 0 if report["ok"] else 1
        from perceptlab.train.bench import run_train_bench

        results = run_train_bench(steps=args.n or 4, out=emit, device=args.device)
        if args.json:
            print(json.dumps(jsonable(results), indent=2))
        return 0
    if args.what == "metrics":
        from perceptlab.metrics.bench import run_metrics_bench

        run_metrics_bench(n=args.n or 200, out=print)
        if args.whole:
            from perceptlab.analysis.bench import run_whole_clip_bench

            print("")
            run_whole_clip_bench(n=args.whole, out=print)
        return 0
    if args.what == "neighbours":
        from perceptlab.metrics.bench_neighbours import run_neighbours_bench

        emit = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
        if args.queries < 1:
            raise UserError(f"--queries must be at least 1, got {args.queries}")
        extra = {}
        if args.metrics is not None:
            chosen = [m.strip() for m in args.metrics.split(",") if m.strip()]
            if not chosen:
                raise UserError(f"--metrics: no metric named in {args.metrics!r}; give a comma-separated list "
                                f"such as mse,nlpd")
            extra["metrics"] = chosen
        if args.keep is not None:
            extra["keep"] = Path(args.keep).expanduser()
        try:
            results = run_neighbours_bench(n=args.n or 100_000, queries=args.queries, out=emit,
                                           recall=not args.no_recall, **extra)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if args.json:
            print(json.dumps(jsonable(results), indent=2))
        return 0
    if args.what == "gui":
        try:
            from perceptlab.qt.bench import run_gui_bench
        except ImportError as exc:
            raise UserError(f"the GUI benchmark needs PySide6 ({exc})") from None
        if args.large is not None:
            from perceptlab.qt.bench_large import run_large_neighbours_bench

            if args.work is None:
                raise UserError("--large needs --work DIR: the library it builds (minutes) is kept there for reruns")
            try:
                run_large_neighbours_bench(args.large, Path(args.work).expanduser(), out=print)
            except (ValueError, RuntimeError) as exc:
                raise UserError(str(exc)) from None
            return 0
        run_gui_bench(out=print)
        return 0
    raise UserError(f"unknown benchmark {args.what!r}")


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def add_parsers(sub, common) -> None:
    """Add bench to the ``perceptlab`` subparsers."""
    p = sub.add_parser("bench", parents=[common], help="benchmarks (ratios against a baseline in the same process)")
    p.add_argument("what", choices=["import", "memory", "metrics", "gui", "train", "neighbours"],
                   help="what to measure")
    p.add_argument("--n", type=int, default=None,
                   help="problem size (clips; minutes for memory; timed steps for train)")
    p.add_argument("--whole", type=int, default=500, metavar="N",
                   help="metrics: clips in the whole-clip (30 s) figures (default 500; 0 skips them)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="train: auto (the CPU, and CUDA when present), cpu, or cuda: the GPU check "
                        "(bf16 AMP and torch.compile throughput, torchrun, NCCL, out of memory; exit 1 "
                        "if a check fails, 2 without a GPU)")
    p.add_argument("--queries", type=int, default=50, metavar="Q",
                   help="neighbours: top-10 queries timed and checked for recall (default 50)")
    p.add_argument("--metrics", default=None, metavar="A,B",
                   help="neighbours: the metrics to measure, comma-separated (default: every built-in "
                        "metric)")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="neighbours: keep the synthetic indexes in DIR; the next run of the same --n reuses "
                        "its images index instead of building it again")
    p.add_argument("--no-recall", action="store_true",
                   help="neighbours: skip the exact reference search (timings and memory only, much faster)")
    p.add_argument("--large", type=int, default=None, metavar="N",
                   help="gui: instead, neighbours after a selection in a freshly started app on an N-clip "
                        "library (built once in --work, with its search indexes)")
    p.add_argument("--work", default=None, metavar="DIR", help="gui --large: where the large library is kept")
    p.add_argument("--json", action="store_true",
                   help="train, neighbours: print the results as JSON (the lines go to stderr)")
    p.set_defaults(func=cmd_bench)
