"""Progress of a run: weighted stages on one 0..1000 scale, stage timings, cancel checks
between stages, and fitting warnings recorded for the report instead of printed."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager

from perceptlab.tasks import CancelFn, ProgressFn, check_cancel

from .config import LogFn

class _Progress:
    """Stages with weights mapped onto one ``progress(done, 1000)`` scale."""

    SCALE = 1000

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None, log: LogFn | None,
                 stages: list[tuple[str, float]]):
        self.progress, self.cancel, self.log = progress, cancel, log
        total = sum(w for _, w in stages) or 1.0
        self.span: dict[str, tuple[float, float]] = {}
        acc = 0.0
        for name, w in stages:
            self.span[name] = (acc / total, (acc + w) / total)
            acc += w
        self.timings: dict[str, float] = {}
        self._t: dict[str, float] = {}
        self._last = -1

    def _emit(self, frac: float) -> None:
        units = int(round(min(1.0, max(0.0, frac)) * self.SCALE))
        if self.progress is not None and units > self._last:  # never backwards
            self._last = units
            self.progress(units, self.SCALE)

    def start(self, name: str, message: str | None = None) -> ProgressFn:
        check_cancel(self.cancel)
        self._t[name] = time.perf_counter()
        if message and self.log is not None:
            self.log(message)
        a, b = self.span.get(name, (0.0, 0.0))
        self._emit(a)

        def sub(done: int, total: int) -> None:
            self._emit(a + (b - a) * (done / total if total else 0.0))

        return sub

    def end(self, name: str) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - self._t.pop(name), 3)
        self._emit(self.span.get(name, (0.0, 0.0))[1])
        check_cancel(self.cancel)


@contextmanager
def _captured_warnings(sink: list[str], where: str):
    """Record (not raise, not print) warnings of model fitting; the report lists them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        sink.append(f"{where}: {w.category.__name__}: {str(w.message).splitlines()[0]}")

