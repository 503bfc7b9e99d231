"""The contract for long-running work, shared by the CLI and the GUI.

Long work is a plain function that takes two optional callables:

* ``progress(done, total)`` -- called between steps; ``total`` may be 0 when
  unknown. It must be cheap and must not raise.
* ``cancel()`` -- returns True when the caller wants the work to stop. It is
  polled between steps; the work then raises :class:`Cancelled`, leaving any
  stored state consistent (every step commits on its own).

The Qt layer runs such functions in a worker thread and wires ``progress`` to
a signal and ``cancel`` to a flag; the CLI wires ``progress`` to a text bar.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """The caller asked long-running work to stop."""


def check_cancel(cancel: Optional[CancelFn]) -> None:
    """Raise :class:`Cancelled` if ``cancel`` says so."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled")


def report(progress: Optional[ProgressFn], done: int, total: int) -> None:
    """Call ``progress`` if there is one."""
    if progress is not None:
        progress(done, total)
