"""Stop requests of a training run: SIGINT / SIGTERM or ``cancel()`` as one polled flag.

:class:`StopFlag` is what :func:`perceptlab.train.loop.train` polls after each
step: the step in progress finishes, then ``last.pt`` is written. Under
torchrun a Ctrl-C reaches a worker twice, so only a third signal stops at
once.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable


class StopFlag:
    """Turns SIGINT/SIGTERM (and an optional ``cancel()``) into a polled flag."""

    def __init__(self, cancel: Callable[[], bool] | None = None):
        self.cancel = cancel
        self.signal: str | None = None
        self.count = 0
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        self.count += 1
        if self.signal is None:
            self.signal = signal.Signals(signum).name
        # Under torchrun a Ctrl-C reaches a worker twice (terminal + agent),
        # so only a third signal means "stop now".
        if self.count >= 3:
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        if self.signal is None and self.cancel is not None and self.cancel():
            self.signal = "cancel"
        return self.signal is not None
