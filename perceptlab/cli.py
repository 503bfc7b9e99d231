"""The ``perceptlab`` command.

With no subcommand it starts the desktop app. Every GUI action has a
subcommand here; both call the same library functions. Subcommands print a
readable summary, or stable JSON with ``--json``. Errors print one line
``perceptlab: error: <what and why>`` and exit with status 2 (bad input) or 1
(anything else), never a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from perceptlab import __version__


class UserError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _library_path(args) -> Path:
    from perceptlab.library.store import default_library_path

    return Path(args.library).expanduser() if getattr(args, "library", None) else default_library_path()


def _open_library(args, must_exist: bool = True):
    from perceptlab.library.store import Library, LibraryError

    path = _library_path(args)
    if must_exist and not path.exists():
        raise UserError(f"{path}: no library here yet; create one with `perceptlab import DIR --library {path}`")
    try:
        return Library(path)
    except LibraryError as exc:
        raise UserError(str(exc)) from None


class ProgressBar:
    """A one-line text progress bar on stderr (silent when stderr is not a terminal)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        frac = done / total if total else 0.0
        bar = "#" * int(frac * width)
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {done}/{total} {now - self.start:5.1f}s")
        if total and done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def demo_dir() -> Path:
    """The bundled demo clips (``$PERCEPTLAB_DEMO_DIR`` overrides)."""
    env = os.environ.get("PERCEPTLAB_DEMO_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "assets" / "demo"


def ensure_demo_library(path: Path, out=sys.stderr):
    """Open ``path``, importing the demo clips first if it holds no clips."""
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    lib = Library(path)
    if lib.count(include_failed=True) == 0 and demo_dir().is_dir():
        print(f"perceptlab: first run: importing the demo clips into {path}", file=out)
        summary = import_files(lib, [demo_dir()], progress=ProgressBar("importing demo"))
        print(summary.text(), file=out)
    return lib


# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------


def cmd_gui(args) -> int:
    try:
        from perceptlab.qt.app import run_app
    except ImportError as exc:
        raise UserError(f"the desktop app needs PySide6 and pyqtgraph ({exc})") from None
    path = _library_path(args)
    if args.library is None and not os.environ.get("PERCEPTLAB_LIBRARY"):
        ensure_demo_library(path).close()
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
        summary = import_files(lib, args.paths, labels=labels, progress=ProgressBar("importing"))
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
    lib = _open_library(args)
    with lib:
        clips = lib.clips(include_failed=args.all)
        if args.json:
            _print_json({"library": str(lib.path), "clips": [c.to_json() for c in clips]})
            return 0
        if not clips:
            print(f"{lib.path}: no clips")
            return 0
        print(f"{'id':>5}  {'label':<12} {'dur s':>6} {'rate':>6} {'ch':>2}  name")
        for c in clips:
            dur = f"{c.duration:6.2f}" if c.duration is not None else "     -"
            rate = c.sample_rate or "-"
            line = f"{c.id:>5}  {(c.label or '-'):<12} {dur} {rate:>6} {c.channels or '-':>2}  {c.name}"
            if c.error:
                line += f"  [failed: {c.error}]"
            print(line)
        print(f"{len(clips)} clips in {lib.path}")
    return 0


def cmd_bench(args) -> int:
    if args.what == "import":
        from perceptlab.audio.bench import run_import_bench

        run_import_bench(n_clips=args.n or 12, out=print)
        return 0
    if args.what == "metrics":
        from perceptlab.metrics.bench import run_metrics_bench

        run_metrics_bench(n=args.n or 200, out=print)
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

    p = sub.add_parser("bench", parents=[common], help="benchmarks (ratios against a baseline in the same process)")
    p.add_argument("what", choices=["import", "metrics", "gui"], help="what to measure")
    p.add_argument("--n", type=int, default=None, help="problem size (clips)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_gui
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"perceptlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perceptlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one readable line
        from perceptlab.audio.decode import AudioError
        from perceptlab.library.store import LibraryError
        from perceptlab.tasks import Cancelled

        if isinstance(exc, (AudioError, LibraryError, ValueError, Cancelled)):
            print(f"perceptlab: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
