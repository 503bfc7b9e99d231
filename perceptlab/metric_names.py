"""The registry's lists of metric names as module-level constants that do not import torch.

A module that only names metrics (a config's defaults, a dialog's fallback
list) should not load torch when it is imported: the GUI's first window
would wait for it. The constants here are live, read-only sequences: each
read (``in``, iteration, ``len``, indexing, ``tuple(...)``) asks
:mod:`perceptlab.metrics.registry` then, so a metric registered after the
import (a plugin module) is in them, and the first read is what loads torch.
A view equals (and hashes as) the tuple of its names at the time.

A dataclass whose instances are built at import (a function's default
argument) can take a view as a field's default and write ``list(view)``
where it serialises; otherwise ``field(default_factory=VIEW.names)`` gives
each instance the names as a plain tuple.

>>> from perceptlab.metric_names import IMAGE_METRICS
>>> tuple(IMAGE_METRICS)
('mse', 'nlpd', 'msssim')
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BASELINES", "BUILTIN_METRICS", "IMAGE_METRICS", "LOSSES", "MetricNames", "PERCEPTUAL_LOSSES"]


class MetricNames(Sequence):
    """The names one query of :mod:`perceptlab.metrics.registry` returns, asked at every read.

    Parameters
    ----------
    query : str
        The name of a function of the registry that takes no argument and
        returns a list of metric names, e.g. ``"builtin_names"``.
    """

    __slots__ = ("query",)

    def __init__(self, query: str):
        self.query = query

    def names(self) -> tuple[str, ...]:
        """The names now, as a tuple (usable as a ``dataclasses.field`` default factory)."""
        from perceptlab.metrics import registry

        return tuple(getattr(registry, self.query)())

    def __getitem__(self, i):
        return self.names()[i]

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name) -> bool:
        return name in self.names()

    def __eq__(self, other) -> bool:
        if isinstance(other, MetricNames):
            return self.query == other.query
        if isinstance(other, (tuple, list)):
            return self.names() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:  # as the tuple it equals now (a dataclass default must be hashable)
        return hash(self.names())

    def __repr__(self) -> str:
        return f"MetricNames({self.query!r})"


#: Every built-in metric: the image metrics, then the baselines (``registry.builtin_names``).
BUILTIN_METRICS = MetricNames("builtin_names")
#: The built-in non-baseline metrics that compare log-mel images (``registry.image_metric_names``).
IMAGE_METRICS = MetricNames("image_metric_names")
#: The built-in trivial baselines (``registry.baseline_names``).
BASELINES = MetricNames("baseline_names")
#: The metrics an autoencoder can be trained with (``registry.loss_names``).
LOSSES = MetricNames("loss_names")
#: The trainable metrics that are perceptual (``registry.perceptual_loss_names``).
PERCEPTUAL_LOSSES = MetricNames("perceptual_loss_names")
