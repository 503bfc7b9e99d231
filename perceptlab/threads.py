"""The one owner of torch's intra-op thread count, which is process-wide.

Two kinds of code want to change it: the GUI keeps a core free for its event
loop (:func:`set_default_threads`, once), and a job that runs faster on
fewer threads asks for them while it runs (:func:`limited_threads`, e.g. the
NLPD calibration fit). Every change goes through here, under one lock: the
count is the smallest that any running job asked for, or the default when
none is running, so two jobs that start and end in any order never leave it
at a value neither chose.

With torch's OpenMP backend a change applies to the calling thread and to
threads started after it (each OpenMP thread keeps its own count), which is
why every job sets it as it starts rather than once for the process.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_default: int | None = None  # None: torch's own choice, untouched
_requests: list[int] = []  # the thread counts of the running limited_threads() blocks


def _apply() -> None:
    import torch

    want = min(_requests) if _requests else _default
    if want is not None and torch.get_num_threads() != want:
        torch.set_num_threads(want)


def set_default_threads(n: int) -> None:
    """The count to use when no job asks for fewer (at least 1)."""
    global _default
    n = max(1, int(n))
    with _lock:
        if _default == n:
            return  # already set: changing torch's count while other threads compute is what to avoid
        _default = n
        _apply()


@contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Run the block with at most ``n`` intra-op threads (None: leave the count alone)."""
    if n is None:
        yield
        return
    n = max(1, int(n))
    with _lock:
        if _default is None:
            _remember_torch_default()
        _requests.append(n)
        _apply()
    try:
        yield
    finally:
        with _lock:
            _requests.remove(n)
            _apply()


def _remember_torch_default() -> None:
    # The count before anyone changed it, restored when the last job ends.
    global _default
    import torch

    _default = torch.get_num_threads()
