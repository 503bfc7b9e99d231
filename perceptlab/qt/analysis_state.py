"""Library-wide distance matrices, computed once in the background and shared.

The compare panel needs each metric's distribution over the library (for
percentiles), the matrix view shows the matrices, and both must not block the
GUI: this object computes a matrix per metric on request in a worker thread
and announces it with :attr:`QtLibraryAnalysis.matrix_ready`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from perceptlab.analysis.matrices import library_matrix
from perceptlab.library.store import Clip, Library
from perceptlab.qt.workers import QtTask, QtTaskRunner


def _compute_matrix(library_path: str, metric: str, clip_ids: list[int] | None, progress=None, cancel=None,
                    inputs_cache: dict | None = None):
    """(clips, matrix) for one metric, in a worker thread with its own connection.

    Whole clips, each pair at its own compared width (the numbers of
    ``perceptlab matrix``). ``inputs_cache`` holds one dict for the images
    the spectrogram metrics share and one per vector metric (a baseline's or
    an encoder's vectors), so computing a baseline's matrix does not throw
    away the loaded images.
    """
    with Library(library_path) as lib:
        from perceptlab.analysis.library_metrics import register_library_metrics
        from perceptlab.metrics.registry import get_metric

        register_library_metrics(lib)
        clips = None if clip_ids is None else [lib.clip(i) for i in clip_ids]
        cache = None
        if inputs_cache is not None:
            kind = metric if get_metric(metric).input_kind == "vector" else "images"
            cache = inputs_cache.setdefault(kind, {})
        return library_matrix(lib, metric, clips, progress=progress, cancel=cancel, inputs_cache=cache)


class QtLibraryAnalysis(QObject):
    """Per-metric (clips, matrix) for the whole library, cached until the library changes."""

    matrix_ready = Signal(str)  # metric name
    matrix_failed = Signal(str, str)  # metric name, message
    progress = Signal(str, int, int)  # metric, done, total

    def __init__(self, runner: QtTaskRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.library_path: str | None = None
        self._matrices: dict[str, tuple[list[Clip], np.ndarray]] = {}
        self._tasks: dict[str, QtTask] = {}
        self._generation = 0
        self._inputs: dict = {}  # used by the single matrix thread only

    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.invalidate()

    def invalidate(self) -> None:
        """Forget every matrix (clips were added or removed)."""
        self._generation += 1
        for t in self._tasks.values():
            t.cancel()
        self._tasks.clear()
        self._matrices.clear()
        self._inputs = {}

    def matrix(self, metric: str) -> tuple[list[Clip], np.ndarray] | None:
        return self._matrices.get(metric)

    def busy(self, metric: str | None = None) -> bool:
        return bool(self._tasks) if metric is None else metric in self._tasks

    def request(self, metric: str) -> bool:
        """Start computing ``metric``'s library matrix unless cached or running; True if cached."""
        if metric in self._matrices:
            return True
        if metric in self._tasks or self.library_path is None:
            return False
        task = QtTask(_compute_matrix, self.library_path, metric, None, inputs_cache=self._inputs)
        gen = self._generation
        task.signals.progress.connect(lambda d, t, m=metric: self.progress.emit(m, d, t))
        task.signals.finished.connect(lambda res, m=metric, g=gen: self._on_done(m, g, res))
        task.signals.failed.connect(lambda msg, _tb, m=metric, g=gen: self._on_failed(m, g, msg))
        task.signals.cancelled.connect(lambda m=metric, g=gen: self._on_cancelled(m, g))
        self._tasks[metric] = task
        self.runner.start(task)
        return False

    def cancel(self) -> None:
        for t in self._tasks.values():
            t.cancel()

    def percentile(self, metric: str, value: float) -> float | None:
        """Share (0-100) of the library's clip pairs closer than ``value`` under ``metric``."""
        got = self._matrices.get(metric)
        if got is None:
            return None
        d = got[1]
        off = d[np.triu_indices(len(d), 1)]
        if off.size == 0:
            return None
        return float(100.0 * np.mean(off < value))

    def _on_done(self, metric: str, gen: int, result) -> None:
        if gen != self._generation:
            return
        self._tasks.pop(metric, None)
        self._matrices[metric] = result
        self.matrix_ready.emit(metric)

    def _on_failed(self, metric: str, gen: int, message: str) -> None:
        if gen != self._generation:
            return
        self._tasks.pop(metric, None)
        self.matrix_failed.emit(metric, message)

    def _on_cancelled(self, metric: str, gen: int) -> None:
        if gen == self._generation:
            self._tasks.pop(metric, None)
