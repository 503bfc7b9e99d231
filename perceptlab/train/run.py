"""``perceptlab train``: config + overrides -> :func:`train`, events -> stdout.

Exit status: 0 when the run completed or was interrupted cleanly (SIGINT,
SIGTERM); 2 for a user problem (bad config, no usable data, a checkpoint
that cannot be used); 1 for a failure during training (CUDA out of memory,
a loss that became NaN, an unexpected error). Every failure is reported as
one ``"error"`` event (and one ``perceptlab: error:`` line on stderr when
stdout carries JSON).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import TextIO

from perceptlab.models.checkpoint import CheckpointError

from .config import ConfigError, load_config
from .data import DataError
from .distributed import DistContext
from .loop import TrainError, train
from .progress import BarReporter, JsonLinesReporter, Reporter


def make_reporter(mode: str = "auto", stream: TextIO | None = None) -> Reporter:
    """``"json"``, ``"bar"``, or ``"auto"`` (a bar when the stream is a terminal)."""
    stream = stream or sys.stdout
    if mode == "auto":
        mode = "bar" if getattr(stream, "isatty", lambda: False)() else "json"
    return BarReporter(stream) if mode == "bar" else JsonLinesReporter(stream)


def run_train_command(
    config: str | None,
    overrides: list[str] = (),
    *,
    resume: bool | str = False,
    library: str | None = None,
    progress: str = "auto",
    stream: TextIO | None = None,
) -> int:
    """Run one training command; returns the exit status (see the module docstring)."""
    reporter = make_reporter(progress, stream)
    is_main = DistContext.from_env().is_main
    sets = list(overrides)
    if library:
        sets.insert(0, "data.library=" + json.dumps(str(library)))  # --set still wins
    try:
        cfg = load_config(config, sets)
        train(cfg, resume=resume, reporter=reporter)
        return 0
    except (ConfigError, DataError, CheckpointError) as exc:
        kind = {ConfigError: "config", DataError: "data"}.get(type(exc), "checkpoint")
        return _fail(reporter, is_main, str(exc), kind, 2)
    except TrainError as exc:
        return _fail(reporter, is_main, str(exc), exc.kind, 1)
    except KeyboardInterrupt:
        return _fail(reporter, is_main, "stopped at once by a repeated signal; the last checkpoint "
                                        "written is intact", "interrupted", 1)
    except Exception as exc:  # report it as an event; the traceback goes to stderr
        from perceptlab.library.store import LibraryError

        if isinstance(exc, LibraryError):
            return _fail(reporter, is_main, str(exc), "data", 2)
        traceback.print_exc(file=sys.stderr)
        return _fail(reporter, is_main, f"{type(exc).__name__}: {exc}", "internal", 1)


def _fail(reporter: Reporter, is_main: bool, message: str, kind: str, status: int) -> int:
    if is_main:
        reporter.emit("error", message=message, kind=kind)
    if not isinstance(reporter, BarReporter) or not is_main:
        print(f"perceptlab: error: {message}", file=sys.stderr)
    return status
