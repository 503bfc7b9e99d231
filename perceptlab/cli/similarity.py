"""``perceptlab metrics``, ``distance``, ``matrix``, ``retrieval``, ``neighbours`` and ``index``:
measuring and searching by similarity."""

from __future__ import annotations

import os

from perceptlab.cli.common import (ProgressBar, UserError, comparison_json, display, feature_config, library_path,
                                   open_library, optional_library, output_file, output_folder, print_json,
                                   register_metrics)
from perceptlab.jsonable import jsonable


def cmd_metrics(args) -> int:
    from perceptlab.metrics.registry import list_metrics

    lib = optional_library(args)
    if lib is not None:
        with lib:
            register_metrics(lib)
    ms = list_metrics()
    if args.json:
        print_json({"metrics": [{"name": m.name, "display_name": m.display_name, "direction": m.direction,
                                  "input": m.input_kind, "description": m.description,
                                  "params": jsonable(dict(m.params))} for m in ms]})
    else:
        for m in ms:
            print(f"{m.name:<24} {m.display_name:<18} {m.description}")
    return 0


def cmd_distance(args) -> int:
    from perceptlab.analysis.similarity import metric_names, pair_comparison, resolve

    lib = optional_library(args)
    try:
        if lib is not None:
            register_metrics(lib)
        metrics = metric_names(args.metric, with_baselines=lib is not None)
        a, b = resolve(lib, args.a), resolve(lib, args.b)
        cmp = pair_comparison(lib, a, b, metrics, feature_config(args), n_frames=args.frames,
                              excerpt=args.excerpt, align=not args.no_align)
    finally:
        if lib is not None:
            lib.close()
    if args.json:
        print_json({"a": a.to_json(), "b": b.to_json(), **comparison_json(args),
                     "comparison": cmp.to_json(), "distances": cmp.distances})
    else:
        print(f"A: {a.path}\nB: {b.path}")
        print(f"compared: {_describe_comparison(cmp)}")
        for name, value in cmp.distances.items():
            print(f"  {display(name):<24} {value:.6f}")
    return 0


def _describe_comparison(cmp) -> str:
    what = "whole clips" if cmp.excerpt == "whole" else "centre excerpts"
    (a0, a1), (b0, b1) = cmp.region_a, cmp.region_b
    text = f"{what}, A {a0:.2f}-{a1:.2f} s, B {b0:.2f}-{b1:.2f} s"
    if cmp.lag_s:
        text += f" (aligned: B lags A by {cmp.lag_s * 1000:+.1f} ms)"
    return text


def _matrix_by_rows(args) -> bool:
    """Whether ``matrix`` computes by blocks of rows: a k-NN graph, a device, shards or torchrun."""
    return (args.knn is not None or args.device not in (None, "cpu") or args.shard_dir is not None
            or args.shard_rows is not None or bool(os.environ.get("WORLD_SIZE")))


def _cmd_matrix_rows(args, metric: str, lib) -> int:
    import numpy as np

    from perceptlab.analysis.knn_graph import GRAPH_SUFFIXES
    from perceptlab.analysis.sharding import DistEnv, matrix_rows

    if args.knn is not None and args.knn < 1:
        raise UserError(f"--knn {args.knn}: must be at least 1")
    suffixes = GRAPH_SUFFIXES if args.knn is not None else (".npy",)
    out = output_file(args.out, "--out", suffixes) if args.out else None
    shard_dir = output_folder(args.shard_dir, "--shard-dir") if args.shard_dir else None
    env = DistEnv.from_env()
    what = f"{metric} k-NN graph" if args.knn is not None else f"{metric} matrix"
    label = what if not env.enabled else f"{what} [rank {env.rank}/{env.world}]"
    run = matrix_rows(lib, metric, knn=args.knn, out=out, config=feature_config(args), excerpt=args.excerpt,
                      n_frames=args.frames, device=args.device, backend=args.backend, shard_dir=shard_dir,
                      shard_rows=args.shard_rows, progress=ProgressBar(label, unit="rows") if env.is_main else None)
    if not run.is_main:
        return 0
    clips = run.clips
    if args.json:
        obj = {"library": str(lib.path), "metric": metric, **comparison_json(args), "n": len(clips),
               "device": run.device}
        if args.knn is not None:
            obj["k"] = args.knn
        if run.shards is not None:
            obj["backend"] = run.backend
            obj["shards"] = run.shards.to_json()
        if run.out is not None:
            obj["out"] = str(run.out.resolve())
        if args.knn is None or run.out is None:
            obj["clips"] = [{"id": c.id, "name": c.name, "label": c.label} for c in clips]
        if run.out is None:
            if args.knn is not None:
                obj["graph"] = list(run.graph.rows_json())
            else:
                obj["matrix"] = run.matrix.tolist()
        print_json(obj)
        return 0
    if run.shards is not None:
        sh = run.shards
        print(f"{sh.total} shards in {sh.folder}: {sh.reused} reused, {sh.computed} computed"
              + (f", {sh.received} received from other machines" if sh.received else "")
              + f" ({sh.world} process{'es' if sh.world > 1 else ''})")
    if args.knn is not None:
        g = run.graph
        print(f"{display(metric)} {g.k} nearest neighbours of each of {len(g)} clips"
              + (f", saved to {args.out}" if out is not None else ""))
        print(f"  nearest distance: min {g.distances[:, 0].min():.6f}  median {np.median(g.distances[:, 0]):.6f}"
              f"  max {g.distances[:, 0].max():.6f}")
        if out is None:
            for row in g.rows_json():
                near = ", ".join(f"{n['name']} {n['distance']:.4f}" for n in row["neighbours"])
                print(f"  {row['name']}: {near}")
        return 0
    d = run.matrix
    print(f"{display(metric)} distances between {len(clips)} clips" + (f", saved to {args.out}" if out else ""))
    off = d[~np.eye(len(d), dtype=bool)]
    print(f"  min {off.min():.6f}  median {np.median(off):.6f}  max {off.max():.6f}")
    return 0


def _one_metric(args, lib) -> str:
    """The one metric ``matrix`` computes, with the library's own metrics registered."""
    from perceptlab.analysis.similarity import metric_names

    register_metrics(lib)
    if "," in args.metric:
        raise UserError("matrix takes one --metric at a time")
    (metric,) = metric_names(args.metric)
    return metric


def cmd_matrix(args) -> int:
    import numpy as np

    from perceptlab.analysis.matrices import library_matrix

    if _matrix_by_rows(args):
        lib = open_library(args, read_only=True)
        with lib:
            return _cmd_matrix_rows(args, _one_metric(args, lib), lib)
    out = output_file(args.out, "--out", (".npy",)) if args.out else None
    lib = open_library(args, read_only=True)
    with lib:
        metric = _one_metric(args, lib)
        clips, d = library_matrix(lib, metric, config=feature_config(args), n_frames=args.frames,
                                  excerpt=args.excerpt, progress=ProgressBar(f"{metric} matrix"))
    if out is not None:
        try:
            np.save(out, d)
        except OSError as exc:
            raise UserError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    if args.json:
        obj = {"library": str(lib.path), "metric": metric, **comparison_json(args), "n": len(clips),
               "clips": [{"id": c.id, "name": c.name, "label": c.label} for c in clips]}
        if out is not None:
            obj["out"] = str(out.resolve())
        else:
            obj["matrix"] = d.tolist()
        print_json(obj)
    else:
        print(f"{display(metric)} distances between {len(clips)} clips"
              + (f", saved to {args.out}" if args.out else ""))
        off = d[~np.eye(len(d), dtype=bool)]
        print(f"  min {off.min():.6f}  median {np.median(off):.6f}  max {off.max():.6f}")
    return 0


def cmd_retrieval(args) -> int:
    from perceptlab.analysis.retrieval import run_retrieval
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.analysis.similarity import metric_names

    lib = open_library(args, read_only=True)
    with lib:
        own = [m for m in register_library_metrics(lib) if m.startswith("embedding:")]
        metrics = metric_names(args.metric) if args.metric else metric_names(None) + own
        try:
            report = run_retrieval(lib, metrics, config=feature_config(args), excerpt=args.excerpt,
                                   n_frames=args.frames, n_boot=args.bootstrap,
                                   source_pattern=args.source_pattern,
                                   progress=ProgressBar("distance matrices"))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print_json({**report.to_json(), **comparison_json(args)})
    else:
        print(report.text(display))
    return 0


def cmd_neighbours(args) -> int:
    from perceptlab.analysis.neighbours import neighbours
    from perceptlab.analysis.similarity import metric_names, resolve

    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    lib = open_library(args, read_only=True)
    with lib:
        register_metrics(lib)
        metrics = metric_names(args.metric)
        query = resolve(lib, args.clip)
        if args.budget is not None and args.budget < 1:
            raise UserError(f"--budget must be at least 1, got {args.budget}")
        results = {m: neighbours(lib, query, m, args.k, feature_config(args), n_frames=args.frames,
                                 excerpt=args.excerpt, search=args.search, budget=args.budget) for m in metrics}
        taus = None
        if args.rank_agreement:
            from perceptlab.analysis.rankings import kendall_taus
            from perceptlab.analysis.neighbours import ranking

            taus = kendall_taus({m: ranking(lib, query, m, feature_config(args), n_frames=args.frames,
                                            excerpt=args.excerpt) for m in metrics})
    if args.json:
        out = {"library": str(lib.path), "query": query.to_json(), "k": args.k, **comparison_json(args),
               "neighbours": {m: [n.to_json() for n in ns] for m, ns in results.items()}}
        if taus is not None:
            out["kendall_tau"] = [{"a": a, "b": b, "tau": t} for (a, b), t in taus.items()]
        print_json(out)
    else:
        print(f"query: {query.path}")
        for m, ns in results.items():
            print(f"{display(m)}:")
            for n in ns:
                print(f"  {n.rank:>2}. {n.distance:10.6f}  [{n.clip.id}] {n.clip.name}  ({n.clip.label or '-'})")
        if taus:
            print("Kendall's tau between the metrics' rankings of the whole library:")
            for (a, b), t in taus.items():
                print(f"  {display(a)} vs {display(b)}: {t:+.3f}")
    return 0


def cmd_index(args) -> int:
    from perceptlab.analysis import indexing

    path = library_path(args)
    if not path.exists():
        raise UserError(f"{path}: no library here yet; create one with `perceptlab import DIR --library {path}`")
    if args.action == "build":
        bar = ProgressBar("indexing", unit="%")
        try:
            # Each kind of index reports thousandths of its own work: shown as a percentage.
            result = indexing.update_library_indexes(path, feature_config(args),
                                                     progress=lambda d, t: bar(100 * d // t if t else 0, 100))
        except OSError as exc:
            raise UserError(f"{indexing.index_root(path)}: cannot write the indexes ({exc})") from None
    elif args.action == "status":
        result = indexing.index_status(path, feature_config(args))
    else:
        result = {"dropped": indexing.drop_library_indexes(path)}
    if args.json:
        print_json({"library": str(path), "action": args.action, **result})
    elif args.action == "drop":
        print("\n".join(f"dropped {d}" for d in result["dropped"]) or "no indexes")
    else:
        for kind, st in result.items():
            if st is None:
                print(f"{kind:13s} not built")
            elif "damaged" in st:
                print(f"{kind:13s} damaged: {st['damaged']}")
            else:
                print(f"{kind:13s} {st['alive']} clips ({st['dead']} removed, {st['blocks']} blocks), "
                      f"{st['bytes'] / 1e6:.1f} MB  {st['directory']}")
    return 0


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def add_parsers(sub, common, frames) -> None:
    """Add metrics, distance, matrix, retrieval, neighbours and index to the subparsers."""
    p = sub.add_parser("metrics", parents=[common], help="list the available metrics")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("distance", parents=[common, frames], help="distances between two audio files or clips")
    p.add_argument("a", metavar="A", help="audio file or clip id")
    p.add_argument("b", metavar="B", help="audio file or clip id")
    p.add_argument("--no-align", action="store_true",
                   help="compare as recorded, without first aligning B to A in time (within 100 ms)")
    p.add_argument("--metric", default=None,
                   help="comma-separated metrics, see `perceptlab metrics` (default: every built-in metric, not "
                        "a library's own; the baselines only with a library, whose clips they are z-scored over)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_distance)

    p = sub.add_parser("matrix", parents=[common, frames],
                       help="all-pairs distance matrix, or the k-nearest-neighbour graph, of the library "
                            "(shards its rows under torchrun)")
    p.add_argument("--metric", default="nlpd", help="one metric (default: nlpd)")
    p.add_argument("--out", metavar="FILE",
                   help="save the (N, N) matrix as .npy; with --knn the graph as .npz, .csv or .jsonl")
    p.add_argument("--knn", type=int, default=None, metavar="K",
                   help="the k-NN graph instead: each clip's K nearest other clips, computed in blocks of "
                        "rows (never the N x N matrix in memory)")
    p.add_argument("--device", default=None, metavar="cpu|cuda|cuda:N",
                   help="where the metric runs (default cpu; under torchrun cuda is each process's own GPU)")
    p.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                   help="torchrun process group: auto (NCCL on CUDA, gloo on the CPU), gloo or nccl")
    p.add_argument("--shard-dir", metavar="DIR", default=None,
                   help="write the rows in resumable shards here (default under torchrun: <out>.shards); "
                        "a rerun skips the shards already written and valid")
    p.add_argument("--shard-rows", type=int, default=None, metavar="N",
                   help="rows per shard (default: N/16 rounded up, at most 256)")
    p.add_argument("--json", action="store_true", help="print JSON (the matrix or graph too, unless --out)")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("retrieval", parents=[common, frames],
                       help="leave-one-out nearest-neighbour retrieval by label, per metric")
    p.add_argument("--metric", default=None,
                   help="comma-separated metrics (default: the built-in ones and the library's encoders)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the interval (default 2000)")
    p.add_argument("--source-pattern", default=None, metavar="REGEX",
                   help="other sources only: a clip's source is the first match of REGEX in its file name "
                        "(e.g. '^[0-9]+' for 032-acoustic-bass-1.flac), and neighbours from its own source "
                        "are skipped")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_retrieval)

    p = sub.add_parser("neighbours", aliases=["neighbors"], parents=[common, frames],
                       help="nearest library clips to a clip or file")
    p.add_argument("clip", metavar="CLIP", help="clip id, or a path (inside the library or not)")
    p.add_argument("--metric", default=None,
                   help="comma-separated metrics, see `perceptlab metrics` (default: every built-in metric, not "
                        "the library's own)")
    p.add_argument("-k", type=int, default=5, help="how many neighbours (default 5)")
    p.add_argument("--search", choices=["auto", "exact", "two-stage"], default="auto",
                   help="auto (default): two stages (sketch candidates, then the real metric) when the library "
                        "has more clips than the candidate budget; exact: every clip by the real metric")
    p.add_argument("--budget", type=int, default=None,
                   help="candidates the real metric re-ranks in two-stage search (default per metric)")
    p.add_argument("--rank-agreement", action="store_true",
                   help="also rank the whole library under each metric and report Kendall's tau between "
                        "every two metrics (what the Neighbours panel shows; costs a full ranking each)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_neighbours)

    p = sub.add_parser("index", parents=[common],
                       help="the library's search indexes (next to it, in <library>.indexes): build, status, drop")
    p.add_argument("action", choices=["build", "status", "drop"], help="build (or update), show, or delete them")
    p.add_argument("--loudness", default="-23", metavar="LUFS|off",
                   help="feature config: loudness target (default -23 LUFS; off for none)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_index)
