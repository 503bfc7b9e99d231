"""``perceptlab gui``, ``import`` and ``clips``: the app and the library's contents."""

from __future__ import annotations

import os

from perceptlab.cli.common import ProgressBar, UserError, library_path, open_library, print_json
from perceptlab.library.demo import ensure_demo_library


def cmd_gui(args) -> int:
    try:
        from perceptlab.qt.app import display_problem, run_app
    except ImportError as exc:
        raise UserError(f"the desktop app needs PySide6 and pyqtgraph ({exc})") from None
    problem = display_problem()
    if problem:
        raise UserError(f"cannot open the window: {problem}")
    path = library_path(args)
    if args.library is None and not os.environ.get("PERCEPTLAB_LIBRARY"):
        ensure_demo_library(path, progress=ProgressBar("importing demo")).close()
    else:
        open_library(args, must_exist=False).close()  # an unusable one is one line here, not a window
    return run_app(library_path=path)


def cmd_import(args) -> int:
    from perceptlab.library.importer import import_files, read_labels_csv

    labels = None
    if args.labels:
        try:
            labels = read_labels_csv(args.labels)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    lib = open_library(args, must_exist=False)
    try:
        bar = ProgressBar("importing", unit="files", piped_every=5.0)  # piped: a count line every 5 s
        summary = import_files(lib, args.paths, labels=labels, progress=bar)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    finally:
        lib.close()
    if args.json:
        print_json({"library": str(library_path(args)), **summary.to_json()})
    else:
        print(summary.text())
        print(f"library: {library_path(args)}")
    return 0


def cmd_clips(args) -> int:
    lib = open_library(args, read_only=True)
    with lib:
        clips = lib.clips(include_failed=args.all)
        if args.json:
            print_json({"library": str(lib.path), "clips": [c.to_json() for c in clips]})
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


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def add_parsers(sub, common) -> None:
    """Add gui, import and clips to the ``perceptlab`` subparsers."""
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
