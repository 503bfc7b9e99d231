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

Layout: this module builds the parser and dispatches; :mod:`.common` holds
what commands share (:class:`~.common.UserError`, :class:`~.common.ProgressBar`,
opening the library, checking output paths, JSON output, the comparison
options); each command group is one module with ``add_parsers(sub, ...)``
and its ``cmd_*`` functions: :mod:`.library` (gui, import, clips),
:mod:`.similarity` (metrics, distance, matrix, retrieval, neighbours,
index), :mod:`.training` (train, embed), :mod:`.bench`, :mod:`.evaluate`,
:mod:`.probe` and :mod:`.listening` (agreement, listen, stimuli,
calibrate). A new command goes into the group module it belongs to (or a
new one, added in :func:`build_parser`); it raises ``UserError`` for bad
input and imports anything heavy inside its ``cmd_*`` function, since the
parser is built on every start, GUI included. Nothing outside
``perceptlab/cli`` imports this package (tests/test_import_graph.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from perceptlab import __version__
from perceptlab.cli import bench, evaluate, library, listening, probe, similarity, training
from perceptlab.cli.common import UserError, frames_parent, library_parent, library_path

__all__ = ["UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = library_parent()
    parser = argparse.ArgumentParser(
        prog="perceptlab", parents=[common],
        description="Hear and measure perceptual similarity of audio. With no command, start the app.",
    )
    parser.add_argument("--version", action="version", version=f"perceptlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    frames = frames_parent()
    library.add_parsers(sub, common)  # gui, import, clips
    similarity.add_parsers(sub, common, frames)  # metrics, distance, matrix, retrieval, neighbours, index
    training.add_parsers(sub, common)  # train, embed
    bench.add_parsers(sub, common)  # bench
    evaluate.add_parsers(sub, common)  # evaluate: the classification protocol
    probe.add_parsers(sub, common)  # probe: metric sanity check on near/far copies
    listening.add_parsers(sub, common, frames)  # agreement, listen, stimuli, calibrate
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
        args.func = library.cmd_gui
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
            path = library_path(args).expanduser().resolve()
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                return _error(damage_message(path, str(exc), written=True))
            return _error(f"{path}: {exc}")
        if isinstance(exc, OSError) and exc.strerror:
            where = f"{exc.filename}: " if exc.filename else ""
            return _error(f"{where}{exc.strerror}")
        raise
