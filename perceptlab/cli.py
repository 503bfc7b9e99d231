"""The ``perceptlab`` command.

With no subcommand it starts the desktop app. Every GUI action has a
subcommand here; both call the same library functions. Subcommands print a
readable summary, or stable JSON with ``--json``. Errors print one line
``perceptlab: error: <what and why>`` and exit with status 2 (bad input) or 1
(anything else), never a traceback for a user mistake. Output piped into a
command that stops reading early (``| head``) ends quietly with status 141,
as a command killed by SIGPIPE does.

Commands that only read (clips, metrics, distance, matrix, neighbours,
agreement, listen list/show/export) open the library read-only: they never
create, upgrade or write it, and features missing from its cache are
computed without being stored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from perceptlab import __version__
from perceptlab.jsonable import jsonable


class UserError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _library_path(args) -> Path:
    from perceptlab.library.store import default_library_path

    return Path(args.library).expanduser() if getattr(args, "library", None) else default_library_path()


def _open_library(args, must_exist: bool = True, read_only: bool = False):
    """The library of ``args``; read-only for commands that only read."""
    from perceptlab.library.store import Library, LibraryError

    path = _library_path(args)
    if (must_exist or read_only) and not path.exists():
        raise UserError(f"{path}: no library here yet; create one with `perceptlab import DIR --library {path}`")
    try:
        return Library(path, read_only=read_only)
    except LibraryError as exc:
        raise UserError(str(exc)) from None


def _optional_library(args):
    """The library read-only if there is one, else None (commands that also work on plain files)."""
    return _open_library(args, read_only=True) if _library_path(args).exists() else None


def output_folder(path: str | os.PathLike, what: str) -> Path:
    """Check that ``path`` can be (or is) a folder we can write; returns it.

    Checked before the work starts, so a typo costs no computation.
    """
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: folder {existing} is read-only")
    return path


def output_file(path: str | os.PathLike, what: str, suffixes: tuple[str, ...] = (),
                creates_folder: bool = False) -> Path:
    """Check that the file ``path`` can be written; returns it.

    Its folder must exist and be writable, or, where the command creates it
    (``creates_folder``), be creatable.
    """
    path = Path(path).expanduser()
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{what} {path}: must name a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise UserError(f"{what} {path}: is a folder; give a file name")
    folder = path.parent
    if creates_folder:
        output_folder(folder, what)
        return path
    if not folder.exists():
        raise UserError(f"{what} {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: folder {folder} is read-only")
    return path


class ProgressBar:
    """Progress on stderr: a one-line bar on a terminal; piped, a count line every few seconds.

    Piped output (a log, ``| tee``) gets lines only where ``piped_every`` is
    given: one at the start, one every ``piped_every`` seconds
    (``$PERCEPTLAB_PROGRESS_EVERY`` overrides it) and one at the end; else
    nothing when stderr is not a terminal.
    """

    PIPED_EVERY_ENV = "PERCEPTLAB_PROGRESS_EVERY"

    def __init__(self, label: str, stream=None, unit: str = "", piped_every: float | None = None):
        from perceptlab.progress_text import ProgressClock, duration_text

        self._duration_text = duration_text
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.piped_every = None
        if not self.enabled and piped_every is not None:
            every = os.environ.get(self.PIPED_EVERY_ENV)
            try:
                self.piped_every = max(0.0, float(every)) if every else float(piped_every)
            except ValueError:
                raise UserError(f"${self.PIPED_EVERY_ENV}={every!r}: must be a number of seconds") from None
        self.clock = ProgressClock(label, unit or "steps")
        self.start = time.perf_counter()
        self._last = 0.0
        self._last_line: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.piped_every is not None:
            self._piped(done, total)
            return
        if not self.enabled:
            return
        self.clock.update(done, total)
        now = time.perf_counter()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        frac = done / total if total else 0.0
        bar = "#" * int(frac * width)
        left = self.clock.left_s()
        tail = f" · {self._duration_text(left)} left" if left is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {done:,}/{total:,}{unit} {now - self.start:5.1f}s{tail}  ")
        if total and done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def _piped(self, done: int, total: int) -> None:
        text = self.clock.update(done, total)
        now = time.perf_counter()
        last = total and done >= total
        if self._last_line is None or last or now - self._last_line >= self.piped_every:
            self._last_line = now
            self.stream.write(text + "\n")
            self.stream.flush()


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def demo_dir() -> Path:
    """The bundled demo clips (``$PERCEPTLAB_DEMO_DIR`` overrides)."""
    env = os.environ.get("PERCEPTLAB_DEMO_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "assets" / "demo"


def shipped_general_encoders() -> list[Path]:
    """The general encoders in ``assets/models`` (trained on other recordings than the demo clips)."""
    return sorted((Path(__file__).resolve().parents[1] / "assets" / "models").glob("general-*.pt"))


def ensure_demo_library(path: Path, out=sys.stderr):
    """Open ``path``; if it holds no clips, import the demo clips and embed them
    with the shipped general encoders (so ``embedding:general-*`` are there
    from the first screen, on clips those encoders never heard)."""
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.models.embedding_metric import embed_library

    lib = Library(path)
    if lib.count(include_failed=True) == 0 and demo_dir().is_dir():
        print(f"perceptlab: first run: importing the demo clips into {path}", file=out)
        summary = import_files(lib, [demo_dir()], progress=ProgressBar("importing demo"))
        print(summary.text(), file=out)
        for ckpt in shipped_general_encoders():
            try:
                print(embed_library(lib, ckpt, name=ckpt.stem, device="cpu").text(), file=out)
            except Exception as exc:  # a shipped encoder that cannot be used must not stop the first start
                print(f"perceptlab: {ckpt}: not embedded ({type(exc).__name__}: {exc})", file=out)
    return lib


# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------


def cmd_gui(args) -> int:
    try:
        from perceptlab.qt.app import display_problem, run_app
    except ImportError as exc:
        raise UserError(f"the desktop app needs PySide6 and pyqtgraph ({exc})") from None
    problem = display_problem()
    if problem:
        raise UserError(f"cannot open the window: {problem}")
    path = _library_path(args)
    if args.library is None and not os.environ.get("PERCEPTLAB_LIBRARY"):
        ensure_demo_library(path).close()
    else:
        _open_library(args, must_exist=False).close()  # an unusable one is one line here, not a window
    return run_app(library_path=path)


def cmd_import(args) -> int:
    from perceptlab.library.importer import import_files, read_labels_csv

    labels = None
    if args.labels:
        try:
            labels = read_labels_csv(args.labels)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    lib = _open_library(args, must_exist=False)
    try:
        bar = ProgressBar("importing", unit="files", piped_every=5.0)  # piped: a count line every 5 s
        summary = import_files(lib, args.paths, labels=labels, progress=bar)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    finally:
        lib.close()
    if args.json:
        _print_json({"library": str(_library_path(args)), **summary.to_json()})
    else:
        print(summary.text())
        print(f"library: {_library_path(args)}")
    return 0


def cmd_clips(args) -> int:
    lib = _open_library(args, read_only=True)
    with lib:
        clips = lib.clips(include_failed=args.all)
        if args.json:
            _print_json({"library": str(lib.path), "clips": [c.to_json() for c in clips]})
            return 0
        if not clips:
            print(f"{lib.path}: no clips")
            return 0
        print(f"{'id':>5}  {'label':<12} {'dur s':>6} {'rate':>6} {'ch':>2} {'LUFS':>6}  name")
        for c in clips:
            dur = f"{c.duration:6.2f}" if c.duration is not None else "     -"
            rate = c.sample_rate or "-"
            lufs = "-" if c.loudness is None else ("silent" if c.loudness == float("-inf") else f"{c.loudness:.1f}")
            line = (f"{c.id:>5}  {(c.label or '-'):<12} {dur} {rate:>6} {c.channels or '-':>2} {lufs:>6}  "
                    f"{c.name}")
            if c.error:
                line += f"  [failed: {c.error}]"
            print(line)
        print(f"{len(clips)} clips in {lib.path}")
    return 0


def _register(lib) -> None:
    from perceptlab.analysis.similarity import register_library_metrics

    register_library_metrics(lib)


def cmd_distance(args) -> int:
    from perceptlab.analysis.similarity import metric_names, pair_comparison, resolve

    lib = _optional_library(args)
    try:
        if lib is not None:
            _register(lib)
        metrics = metric_names(args.metric, with_baselines=lib is not None)
        a, b = resolve(lib, args.a), resolve(lib, args.b)
        cmp = pair_comparison(lib, a, b, metrics, _feature_config(args), n_frames=args.frames,
                              excerpt=args.excerpt, align=not args.no_align)
    finally:
        if lib is not None:
            lib.close()
    if args.json:
        _print_json({"a": a.to_json(), "b": b.to_json(), **_comparison_json(args),
                     "comparison": cmp.to_json(), "distances": cmp.distances})
    else:
        print(f"A: {a.path}\nB: {b.path}")
        print(f"compared: {_describe_comparison(cmp)}")
        for name, value in cmp.distances.items():
            print(f"  {_display(name):<24} {value:.6f}")
    return 0


def _describe_comparison(cmp) -> str:
    what = "whole clips" if cmp.excerpt == "whole" else "centre excerpts"
    (a0, a1), (b0, b1) = cmp.region_a, cmp.region_b
    text = f"{what}, A {a0:.2f}-{a1:.2f} s, B {b0:.2f}-{b1:.2f} s"
    if cmp.lag_s:
        text += f" (aligned: B lags A by {cmp.lag_s * 1000:+.1f} ms)"
    return text


class _RowsProgress:
    """``nlpd k-NN graph: rows 312 / 1,185  4.1 s`` on stderr (silent when stderr is not a terminal)."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        self.stream.write(f"\r{self.label}: rows {done:,} / {total:,}  {now - self.start:5.1f} s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


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
    run = matrix_rows(lib, metric, knn=args.knn, out=out, config=_feature_config(args), excerpt=args.excerpt,
                      n_frames=args.frames, device=args.device, backend=args.backend, shard_dir=shard_dir,
                      shard_rows=args.shard_rows, progress=_RowsProgress(label) if env.is_main else None)
    if not run.is_main:
        return 0
    clips = run.clips
    if args.json:
        obj = {"library": str(lib.path), "metric": metric, **_comparison_json(args), "n": len(clips),
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
        _print_json(obj)
        return 0
    if run.shards is not None:
        sh = run.shards
        print(f"{sh.total} shards in {sh.folder}: {sh.reused} reused, {sh.computed} computed"
              + (f", {sh.received} received from other machines" if sh.received else "")
              + f" ({sh.world} process{'es' if sh.world > 1 else ''})")
    if args.knn is not None:
        g = run.graph
        print(f"{_display(metric)} {g.k} nearest neighbours of each of {len(g)} clips"
              + (f", saved to {args.out}" if out is not None else ""))
        print(f"  nearest distance: min {g.distances[:, 0].min():.6f}  median {np.median(g.distances[:, 0]):.6f}"
              f"  max {g.distances[:, 0].max():.6f}")
        if out is None:
            for row in g.rows_json():
                near = ", ".join(f"{n['name']} {n['distance']:.4f}" for n in row["neighbours"])
                print(f"  {row['name']}: {near}")
        return 0
    d = run.matrix
    print(f"{_display(metric)} distances between {len(clips)} clips" + (f", saved to {args.out}" if out else ""))
    off = d[~np.eye(len(d), dtype=bool)]
    print(f"  min {off.min():.6f}  median {np.median(off):.6f}  max {off.max():.6f}")
    return 0


def cmd_matrix(args) -> int:
    import numpy as np

    from perceptlab.analysis.similarity import library_matrix, metric_names

    if _matrix_by_rows(args):
        lib = _open_library(args, read_only=True)
        with lib:
            _register(lib)
            (metric,) = metric_names(args.metric) if "," not in args.metric else (None,)
            if metric is None:
                raise UserError("matrix takes one --metric at a time")
            return _cmd_matrix_rows(args, metric, lib)
    out = output_file(args.out, "--out", (".npy",)) if args.out else None
    lib = _open_library(args, read_only=True)
    with lib:
        _register(lib)
        (metric,) = metric_names(args.metric) if "," not in args.metric else (None,)
        if metric is None:
            raise UserError("matrix takes one --metric at a time")
        clips, d = library_matrix(lib, metric, config=_feature_config(args), n_frames=args.frames,
                                  excerpt=args.excerpt, progress=ProgressBar(f"{metric} matrix"))
    if out is not None:
        try:
            np.save(out, d)
        except OSError as exc:
            raise UserError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    if args.json:
        obj = {"library": str(lib.path), "metric": metric, **_comparison_json(args), "n": len(clips),
               "clips": [{"id": c.id, "name": c.name, "label": c.label} for c in clips]}
        if out is not None:
            obj["out"] = str(out.resolve())
        else:
            obj["matrix"] = d.tolist()
        _print_json(obj)
    else:
        print(f"{_display(metric)} distances between {len(clips)} clips"
              + (f", saved to {args.out}" if args.out else ""))
        off = d[~np.eye(len(d), dtype=bool)]
        print(f"  min {off.min():.6f}  median {np.median(off):.6f}  max {off.max():.6f}")
    return 0


def cmd_retrieval(args) -> int:
    from perceptlab.analysis.retrieval import run_retrieval
    from perceptlab.analysis.similarity import metric_names, register_library_metrics

    lib = _open_library(args, read_only=True)
    with lib:
        own = [m for m in register_library_metrics(lib) if m.startswith("embedding:")]
        metrics = metric_names(args.metric) if args.metric else metric_names(None) + own
        try:
            report = run_retrieval(lib, metrics, config=_feature_config(args), excerpt=args.excerpt,
                                   n_frames=args.frames, n_boot=args.bootstrap,
                                   progress=ProgressBar("distance matrices"))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        _print_json({**report.to_json(), **_comparison_json(args)})
    else:
        print(report.text(_display))
    return 0


def cmd_neighbours(args) -> int:
    from perceptlab.analysis.similarity import metric_names, neighbours, resolve

    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    lib = _open_library(args, read_only=True)
    with lib:
        _register(lib)
        metrics = metric_names(args.metric)
        query = resolve(lib, args.clip)
        if args.budget is not None and args.budget < 1:
            raise UserError(f"--budget must be at least 1, got {args.budget}")
        results = {m: neighbours(lib, query, m, args.k, _feature_config(args), n_frames=args.frames,
                                 excerpt=args.excerpt, search=args.search, budget=args.budget) for m in metrics}
        taus = None
        if args.rank_agreement:
            from perceptlab.analysis.rankings import kendall_taus
            from perceptlab.analysis.similarity import ranking

            taus = kendall_taus({m: ranking(lib, query, m, _feature_config(args), n_frames=args.frames,
                                            excerpt=args.excerpt) for m in metrics})
    if args.json:
        out = {"library": str(lib.path), "query": query.to_json(), "k": args.k, **_comparison_json(args),
               "neighbours": {m: [n.to_json() for n in ns] for m, ns in results.items()}}
        if taus is not None:
            out["kendall_tau"] = [{"a": a, "b": b, "tau": t} for (a, b), t in taus.items()]
        _print_json(out)
    else:
        print(f"query: {query.path}")
        for m, ns in results.items():
            print(f"{_display(m)}:")
            for n in ns:
                print(f"  {n.rank:>2}. {n.distance:10.6f}  [{n.clip.id}] {n.clip.name}  ({n.clip.label or '-'})")
        if taus:
            print("Kendall's tau between the metrics' rankings of the whole library:")
            for (a, b), t in taus.items():
                print(f"  {_display(a)} vs {_display(b)}: {t:+.3f}")
    return 0


def cmd_index(args) -> int:
    from perceptlab.analysis import indexing

    path = _library_path(args)
    if not path.exists():
        raise UserError(f"{path}: no library here yet; create one with `perceptlab import DIR --library {path}`")
    if args.action == "build":
        last = [0.0]

        def progress(done, total):
            now = time.monotonic()
            if sys.stderr.isatty() and total and now - last[0] > 0.5:
                last[0] = now
                print(f"\rindexing {100 * done // total:3d}%", end="", file=sys.stderr, flush=True)

        try:
            result = indexing.update_library_indexes(path, _feature_config(args), progress=progress)
        except OSError as exc:
            raise UserError(f"{indexing.index_root(path)}: cannot write the indexes ({exc})") from None
        if sys.stderr.isatty():
            print("", file=sys.stderr)
    elif args.action == "status":
        result = indexing.index_status(path, _feature_config(args))
    else:
        result = {"dropped": indexing.drop_library_indexes(path)}
    if args.json:
        _print_json({"library": str(path), "action": args.action, **result})
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


def cmd_metrics(args) -> int:
    from perceptlab.metrics.registry import list_metrics

    lib = _optional_library(args)
    if lib is not None:
        with lib:
            _register(lib)
    ms = list_metrics()
    if args.json:
        _print_json({"metrics": [{"name": m.name, "display_name": m.display_name, "direction": m.direction,
                                  "input": m.input_kind, "description": m.description,
                                  "params": jsonable(dict(m.params))} for m in ms]})
    else:
        for m in ms:
            print(f"{m.name:<24} {m.display_name:<18} {m.description}")
    return 0


def _display(name: str) -> str:
    from perceptlab.metrics.registry import get_metric

    return get_metric(name).display_name


def _feature_config(args):
    """The feature config a comparison command asked for (``--loudness``)."""
    from perceptlab.audio.features import FeatureConfig

    target = getattr(args, "loudness", "-23")
    if str(target).lower() == "off":
        return FeatureConfig(loudness_target=None)
    try:
        return FeatureConfig(loudness_target=float(target))
    except ValueError as exc:
        raise UserError(f"--loudness {target}: {exc}") from None


def _comparison_json(args) -> dict:
    cfg = _feature_config(args)
    return {"excerpt": args.excerpt, "excerpt_frames": args.frames if args.excerpt == "centre" else None,
            "loudness_target": cfg.loudness_target, "feature_config": cfg.hash}


def _feature_hash() -> str:
    from perceptlab.audio.features import FeatureConfig

    return FeatureConfig().hash


def cmd_train(args) -> int:
    from perceptlab.train.run import run_train_command

    progress = "json" if args.json else args.progress
    return run_train_command(args.config, args.set or [], resume=args.resume, library=args.library,
                             progress=progress)


def cmd_embed(args) -> int:
    from perceptlab.models.checkpoint import CheckpointError
    from perceptlab.models.embedding_metric import embed_library

    lib = _open_library(args)
    with lib:
        try:
            summary = embed_library(lib, args.checkpoint, name=args.name, pool=args.pool, hop=args.hop,
                                    distance=args.distance, force=args.force, device=args.device,
                                    progress=ProgressBar("embedding"))
        except CheckpointError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        _print_json({"library": str(lib.path), **summary.to_json()})
    else:
        print(summary.text())
    return 0


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
        try:
            results = run_neighbours_bench(n=args.n or 100_000, queries=args.queries, out=emit)
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
        run_gui_bench(out=print)
        return 0
    raise UserError(f"unknown benchmark {args.what!r}")


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library", metavar="PATH", default=None,
        help="library file (default: $PERCEPTLAB_LIBRARY or the user data folder)",
    )
    parser = argparse.ArgumentParser(
        prog="perceptlab", parents=[common],
        description="Hear and measure perceptual similarity of audio. With no command, start the app.",
    )
    parser.add_argument("--version", action="version", version=f"perceptlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", parents=[common], help="start the desktop app")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("import", parents=[common], help="import audio files and folders into the library")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (scanned recursively)")
    p.add_argument("--labels", metavar="CSV", help="CSV of path,label (default: parent folder name)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("clips", parents=[common], help="list the clips in the library")
    p.add_argument("--all", action="store_true", help="include files that failed to import")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_clips)

    frames = argparse.ArgumentParser(add_help=False)
    frames.add_argument("--excerpt", choices=["whole", "centre"], default="whole",
                        help="compare whole clips (default) or their centre excerpts (faster; see README, "
                             "the comparison rule)")
    frames.add_argument("--frames", type=int, default=128, metavar="N",
                        help="centre excerpt length in frames (default 128 = 2.97 s)")
    frames.add_argument("--loudness", default="-23", metavar="LUFS|off",
                        help="bring each clip to this integrated loudness before comparing (default -23; "
                             "off: levels as recorded)")

    p = sub.add_parser("metrics", parents=[common], help="list the available metrics")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("distance", parents=[common, frames], help="distances between two audio files or clips")
    p.add_argument("a", metavar="A", help="audio file or clip id")
    p.add_argument("b", metavar="B", help="audio file or clip id")
    p.add_argument("--no-align", action="store_true",
                   help="compare as recorded, without first aligning B to A in time (within 100 ms)")
    p.add_argument("--metric", default=None, help="comma-separated metrics (default: mse,nlpd,msssim)")
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
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_retrieval)

    p = sub.add_parser("neighbours", aliases=["neighbors"], parents=[common, frames],
                       help="nearest library clips to a clip or file")
    p.add_argument("clip", metavar="CLIP", help="clip id, or a path (inside the library or not)")
    p.add_argument("--metric", default=None, help="comma-separated metrics (default: mse,nlpd,msssim)")
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

    p = sub.add_parser("train", parents=[common], help="train an autoencoder (JSON lines on stdout when piped)")
    p.add_argument("--config", metavar="FILE.toml", default=None, help="training config (see training/README.md)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=1e-3 --set data.library=PATH (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from <out_dir>/last.pt (or the given checkpoint)")
    p.add_argument("--progress", choices=["auto", "json", "bar"], default="auto",
                   help="progress output (auto: a bar on a terminal, JSON lines otherwise)")
    p.add_argument("--json", action="store_true", help="same as --progress json")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", parents=[common], help="store clip embeddings of an encoder checkpoint")
    p.add_argument("--checkpoint", required=True, metavar="FILE.pt", help="a trained checkpoint (best.pt)")
    p.add_argument("--name", default=None, help="model name; the metric is embedding:<name> (default: run name)")
    p.add_argument("--distance", choices=["cosine", "euclidean"], default="cosine",
                   help="distance of the embedding metric (default cosine)")
    p.add_argument("--pool", choices=["mean", "meanstd"], default="mean",
                   help="clip embedding: mean of patch latents, or mean and std (default mean)")
    p.add_argument("--hop", type=int, default=None, help="patch hop in frames (default: half a patch)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    p.add_argument("--force", action="store_true", help="recompute embeddings already stored")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_embed)

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
    p.add_argument("--json", action="store_true",
                   help="train, neighbours: print the results as JSON (the lines go to stderr)")
    p.set_defaults(func=cmd_bench)

    from perceptlab.analysis.evaluate_cli import add_evaluate_parser

    add_evaluate_parser(sub, common)  # perceptlab evaluate: the classification protocol

    from perceptlab.analysis.probe_cli import add_probe_parser

    add_probe_parser(sub, common)  # perceptlab probe: metric sanity check on near/far copies

    from perceptlab.listening.commands import add_parsers as add_listening_parsers

    add_listening_parsers(sub, common, frames)  # agreement, listen, stimuli, calibrate
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``| head``): stop without a word.

    Python's recipe: point stdout at devnull so the flush at exit does not
    fail again, and exit as SIGPIPE would have.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


def _error(message: str, status: int = 2) -> int:
    try:
        print(f"perceptlab: error: {message}", file=sys.stderr)
    except (BrokenPipeError, OSError, ValueError):
        pass
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_gui
    status = _run(args)
    try:
        sys.stdout.flush()  # a closed pipe shows here, not in the flush at exit
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (OSError, ValueError):
        pass
    return status


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except UserError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        try:
            print("perceptlab: interrupted", file=sys.stderr)
        except (BrokenPipeError, OSError, ValueError):
            pass
        return 130
    except Exception as exc:  # the last line of defence: one readable line
        import sqlite3

        from perceptlab.audio.decode import AudioError
        from perceptlab.library.store import LibraryError, damage_message
        from perceptlab.tasks import Cancelled

        if isinstance(exc, (AudioError, LibraryError, ValueError, Cancelled)):
            return _error(str(exc))
        if isinstance(exc, sqlite3.DatabaseError):
            path = _library_path(args).expanduser().resolve()
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                return _error(damage_message(path, str(exc), written=True))
            return _error(f"{path}: {exc}")
        if isinstance(exc, OSError) and exc.strerror:
            where = f"{exc.filename}: " if exc.filename else ""
            return _error(f"{where}{exc.strerror}")
        raise


if __name__ == "__main__":
    sys.exit(main())
