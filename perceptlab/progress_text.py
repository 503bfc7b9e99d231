"""Progress as words a person reads: what, how many of how many units, how long is left.

Shared by the GUI's status bar and the command line, so both say the same
thing: ``computing NLPD matrix: 312 / 1,185 rows · 0:42 left``.
"""

from __future__ import annotations

import time
from typing import Callable

#: Steps to see before an estimate of the time left is given: the first
#: steps (loading, warming up) say little about the pace.
ETA_AFTER_STEPS = 3
#: ... and seconds: an estimate from a blink of work jumps about.
ETA_AFTER_SECONDS = 1.0


def duration_text(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def bar_text(frac: float, width: int) -> str:
    """``[#######        ]``: ``frac`` (clipped to 0-1) of ``width`` cells filled."""
    filled = int(min(1.0, max(0.0, frac)) * width)
    return f"[{'#' * filled:<{width}}]"


def progress_text(what: str, done: int, total: int, unit: str, left_s: float | None = None) -> str:
    """One line: ``what: done / total unit`` (thousands separated), and the time left if known.

    ``total`` 0 means unknown: only the count is said.
    """
    if total and total > 0:
        text = f"{what}: {done:,} / {total:,} {unit}"
    else:
        text = f"{what}: {done:,} {unit}"
    if left_s is not None:
        text += f" · {duration_text(left_s)} left"
    return text


class ProgressClock:
    """Turns ``(done, total)`` reports into :func:`progress_text` lines with a time-left estimate.

    Parameters
    ----------
    what, unit : str
        "computing NLPD matrix", "rows".
    clock : callable
        Seconds, monotonic (a test passes its own).
    """

    def __init__(self, what: str, unit: str, clock: Callable[[], float] = time.monotonic):
        self.what, self.unit = what, unit
        self.clock = clock
        self.start = clock()
        self._first: tuple[int, float] | None = None  # (done, time) of the first report
        self.done = 0
        self.total = 0

    def left_s(self) -> float | None:
        """Seconds left at the pace since the first report, once a few steps have passed."""
        if self._first is None or not self.total:
            return None
        done0, t0 = self._first
        steps = self.done - done0
        elapsed = self.clock() - t0
        if steps < ETA_AFTER_STEPS or elapsed < ETA_AFTER_SECONDS or self.done >= self.total:
            return None
        return (self.total - self.done) * elapsed / steps

    def update(self, done: int, total: int) -> str:
        """Record a report; returns the line to show."""
        if self._first is None or done < self._first[0]:
            self._first = (done, self.clock())
        self.done, self.total = int(done), int(total)
        return self.text()

    def elapsed_s(self) -> float:
        return self.clock() - self.start

    def text(self) -> str:
        return progress_text(self.what, self.done, self.total, self.unit, self.left_s())
