"""What the ``perceptlab`` commands share: errors, progress, the library, outputs, comparison options.

Every command module (``perceptlab/cli/<group>.py``) takes these from here;
nothing outside ``perceptlab/cli`` imports this package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


class UserError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def library_path(args) -> Path:
    from perceptlab.library.store import default_library_path

    return Path(args.library).expanduser() if getattr(args, "library", None) else default_library_path()


def open_library(args, must_exist: bool = True, read_only: bool = False):
    """The library of ``args``; read-only for commands that only read."""
    from perceptlab.library.store import Library, LibraryError

    path = library_path(args)
    if (must_exist or read_only) and not path.exists():
        raise UserError(f"{path}: no library here yet; create one with `perceptlab import DIR --library {path}`")
    try:
        return Library(path, read_only=read_only)
    except LibraryError as exc:
        raise UserError(str(exc)) from None


def optional_library(args):
    """The library read-only if there is one, else None (commands that also work on plain files)."""
    return open_library(args, read_only=True) if library_path(args).exists() else None


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
        from perceptlab.progress_text import ProgressClock, bar_text, duration_text

        self._duration_text, self._bar_text = duration_text, bar_text
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
        bar = self._bar_text(frac, width)
        left = self.clock.left_s()
        tail = f" · {self._duration_text(left)} left" if left is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        self.stream.write(f"\r{self.label} {bar} {done:,}/{total:,}{unit} {now - self.start:5.1f}s{tail}  ")
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


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def register_metrics(lib) -> None:
    from perceptlab.analysis.library_metrics import register_library_metrics

    register_library_metrics(lib)


def display(name: str) -> str:
    from perceptlab.metrics.registry import get_metric

    return get_metric(name).display_name


def feature_config(args):
    """The feature config a comparison command asked for (``--loudness``)."""
    from perceptlab.audio.features import FeatureConfig

    target = getattr(args, "loudness", "-23")
    if str(target).lower() == "off":
        return FeatureConfig(loudness_target=None)
    try:
        return FeatureConfig(loudness_target=float(target))
    except ValueError as exc:
        raise UserError(f"--loudness {target}: {exc}") from None


def comparison_json(args) -> dict:
    cfg = feature_config(args)
    return {"excerpt": args.excerpt, "excerpt_frames": args.frames if args.excerpt == "centre" else None,
            "loudness_target": cfg.loudness_target, "feature_config": cfg.hash}


def library_parent() -> argparse.ArgumentParser:
    """The ``--library`` option every command has (an argparse parent)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library", metavar="PATH", default=None,
        help="library file (default: $PERCEPTLAB_LIBRARY or the user data folder)",
    )
    return common


def frames_parent() -> argparse.ArgumentParser:
    """The comparison options (``--excerpt``, ``--frames``, ``--loudness``) of the comparing commands."""
    frames = argparse.ArgumentParser(add_help=False)
    frames.add_argument("--excerpt", choices=["whole", "centre"], default="whole",
                        help="compare whole clips (default) or their centre excerpts (faster; see README, "
                             "the comparison rule)")
    frames.add_argument("--frames", type=int, default=128, metavar="N",
                        help="centre excerpt length in frames (default 128 = 2.97 s)")
    frames.add_argument("--loudness", default="-23", metavar="LUFS|off",
                        help="bring each clip to this integrated loudness before comparing (default -23; "
                             "off: levels as recorded)")
    return frames
