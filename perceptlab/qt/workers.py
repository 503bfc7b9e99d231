"""Running long work off the GUI thread.

:class:`QtTask` wraps any function that follows the contract of
:mod:`perceptlab.tasks` (``progress`` and ``cancel`` keyword arguments) and
runs it on a QThreadPool thread. Results, errors and progress come back as
signals, which Qt delivers on the GUI thread. The GUI thread never waits.
"""

from __future__ import annotations

import os
import threading
import traceback
import warnings
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from perceptlab.tasks import Cancelled


def _leave_a_core_for_the_gui() -> None:
    """Cap torch's intra-op threads at cores - 1 (through the one owner of the count).

    With every core busy in a matrix computation the GUI thread waits for the
    scheduler and the event loop stutters; one free core keeps it smooth.
    """
    from perceptlab.threads import set_default_threads

    set_default_threads(max(1, (os.cpu_count() or 2) - 1))


class _Signals(QObject):
    progress = Signal(int, int)
    finished = Signal(object)  # the result
    failed = Signal(str, str)  # message, traceback
    cancelled = Signal()


class QtTask(QRunnable):
    """One background job.

    Parameters
    ----------
    fn : callable
        Called as ``fn(*args, progress=..., cancel=..., **kwargs)`` when
        ``with_progress`` is true, else ``fn(*args, **kwargs)``.
    """

    def __init__(self, fn: Callable[..., Any], *args, with_progress: bool = True, **kwargs):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.with_progress = with_progress
        self.signals = _Signals()
        self._cancel = threading.Event()
        self.setAutoDelete(False)  # we hold a reference until it reports back

    def cancel(self) -> None:
        self._cancel.set()

    def _emit(self, name: str, *args) -> bool:
        """Emit ``signals.<name>`` unless its object is gone; false (and cancelled) when it is.

        At quit PySide deletes parentless QObjects, this task's signals among
        them, while the worker thread may still be running; an emit then
        raises "Signal source has been deleted". With no one left to report
        to, the work stops at its next cancel check instead.
        """
        s = self.signals
        if shiboken6.isValid(s):
            try:
                getattr(s, name).emit(*args)
                return True
            except RuntimeError:  # deleted between the check and the emit
                if shiboken6.isValid(s):
                    raise
        self._cancel.set()
        return False

    def _report_progress(self, done: int, total: int) -> None:
        self._emit("progress", done, total)

    def disconnect_all(self) -> None:
        """Detach every receiver; the task still runs to its end, reporting to no one."""
        s = self.signals
        if not shiboken6.isValid(s):
            return
        for sig in (s.progress, s.finished, s.failed, s.cancelled):
            with warnings.catch_warnings():  # PySide warns when a signal had no receiver
                warnings.simplefilter("ignore")
                try:
                    sig.disconnect()
                except (RuntimeError, SystemError, TypeError):
                    pass

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:  # worker thread
        _leave_a_core_for_the_gui()
        kwargs = dict(self.kwargs)
        if self.with_progress:
            kwargs.update(progress=self._report_progress, cancel=self._cancel.is_set)
        try:
            result = self.fn(*self.args, **kwargs)
        except Cancelled:
            self._emit("cancelled")
        except Exception as exc:  # reported to the GUI, never raised into Qt
            self._emit("failed", str(exc) or type(exc).__name__, traceback.format_exc())
        else:
            if self._cancel.is_set():
                self._emit("cancelled")
            else:
                self._emit("finished", result)
        finally:
            self.fn, self.args, self.kwargs = None, (), {}  # its inputs need not outlive it


class QtTaskRunner(QObject):
    """Starts tasks and keeps them alive until they report back."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._live: set[QtTask] = set()
        self._shut = False

    def start(self, task: QtTask) -> QtTask:
        """Queue ``task``; after :meth:`shutdown` it is cancelled instead of run."""
        if self._shut:
            task.cancel()
            return task
        self._live.add(task)
        for sig in (task.signals.finished, task.signals.failed, task.signals.cancelled):
            sig.connect(lambda *_, t=task: self._live.discard(t))
        self.pool.start(task)
        return task

    def cancel_all(self) -> None:
        for t in list(self._live):
            t.cancel()

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)

    def shutdown(self, msecs: int = 5000) -> bool:
        """Cancel every task, refuse new ones, and wait up to ``msecs`` for the running ones.

        Called when the window closes, so no work starts on a closing window and
        none is left running when its thread pool is destroyed.
        """
        self._shut = True
        for task in list(self._live):
            task.cancel()
            task.disconnect_all()  # its results would reach a window that is going away
        return self.wait(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._live)
