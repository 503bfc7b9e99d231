"""What a metric is: a distance between clips, with optional fast paths, and the table of them by name.

The engines (:mod:`perceptlab.metrics.pairwise`, :mod:`~perceptlab.metrics.embedding`,
:mod:`~perceptlab.metrics.baselines`) build :class:`Metric` objects and look
a name up with :meth:`Metric.named` without importing the registry;
:mod:`perceptlab.metrics.registry` fills the table (the built-ins, a
library's encoders and calibrated variants) and is what everything above
the engines calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

import torch

LOWER_IS_CLOSER = "lower_is_closer"
INPUT_KINDS = ("spectrogram", "vector")
#: Name prefixes of the metrics one library brings (its encoders, its
#: calibrated NLPD variants); every other registered metric is built in.
LIBRARY_METRIC_PREFIXES = ("embedding:", "nlpd:calibrated-")


@dataclass(frozen=True)
class Metric:
    """A distance between clips, with optional fast all-pairs and query paths.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"nlpd"`` or ``"embedding:ae-nlpd-v1"``.
    display_name : str
        Label for the GUI, e.g. ``"1 - MS-SSIM"``.
    fn : callable
        ``fn(x, y) -> (B,)`` distances for two batches of the same shape:
        (B, 1, F, T) spectrograms, or (B, D) vectors when ``input_kind`` is
        ``"vector"``. 0 means identical.
    direction : str
        Always ``"lower_is_closer"``: every metric here is a distance.
    params : dict
        The constants that define the metric, for display and provenance.
    description : str
        One or two sentences for tooltips and reports.
    pairwise : callable, optional
        ``pairwise(specs, *, memory_budget_mb, progress, cancel, device)``
        returning an (N, N) float64 CPU tensor.
    index : callable, optional
        ``index(specs, *, memory_budget_mb, progress, cancel, device)``
        returning a :class:`perceptlab.metrics.pairwise_index.DistanceIndex`.
    input_kind : str
        ``"spectrogram"`` or ``"vector"``.
    min_side : int
        Smallest min(F, T) the metric accepts (spectrograms only).
    trainable : bool
        ``fn`` is differentiable with finite gradients on (B, 1, F, T)
        images and cheap enough per batch to be a training loss (and a
        validation figure of every run); see :func:`loss_names`.
    perceptual : bool
        Models what listeners hear (an image-quality metric such as NLPD or
        MS-SSIM), as opposed to a pixel distance (MSE) or a baseline; the
        evaluation's claim compares encoders trained with a perceptual loss
        against the MSE-trained one.
    """

    name: str
    display_name: str
    fn: Callable[..., torch.Tensor]
    direction: str = LOWER_IS_CLOSER
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    pairwise: Optional[Callable[..., torch.Tensor]] = None
    index: Optional[Callable[..., Any]] = None
    input_kind: str = "spectrogram"
    min_side: int = 1
    trainable: bool = False
    perceptual: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a metric needs a non-empty string name")
        if self.direction != LOWER_IS_CLOSER:
            raise ValueError(
                f"metric {self.name!r}: direction must be {LOWER_IS_CLOSER!r} (got {self.direction!r}); "
                "wrap similarities as distances, e.g. 1 - s"
            )
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"metric {self.name!r}: input_kind must be one of {INPUT_KINDS}")
        if not callable(self.fn):
            raise ValueError(f"metric {self.name!r}: fn must be callable")
        if self.trainable and self.input_kind != "spectrogram":
            raise ValueError(f"metric {self.name!r}: only a spectrogram metric can be a training loss")

    @property
    def is_baseline(self) -> bool:
        """A trivial baseline (log-mel or MFCC statistics), shown beside the perceptual metrics."""
        return bool(self.params.get("baseline", False))

    @property
    def compares_images(self) -> bool:
        """Compares two clips' log-mel images (B, 1, F, T) itself, not vectors made from them."""
        return self.input_kind == "spectrogram"

    @property
    def of_library(self) -> bool:
        """One library's own metric (an encoder, a calibrated variant), not a built-in one."""
        return self.name.startswith(LIBRARY_METRIC_PREFIXES)

    @staticmethod
    def named(name: "str | Metric") -> "Metric":
        """The registered metric of this name (a :class:`Metric` is returned as is).

        Raises
        ------
        ValueError
            Unknown name; the message lists the known names.
        """
        if isinstance(name, Metric):
            return name
        with TABLE_LOCK:
            try:
                return TABLE[name]
            except KeyError:
                known = ", ".join(sorted(TABLE)) or "(none)"
                raise ValueError(f"unknown metric {name!r}; known metrics: {known}") from None


#: The registered metrics by name, in registration order (filled by :mod:`perceptlab.metrics.registry`).
TABLE: Dict[str, Metric] = {}
TABLE_LOCK = threading.Lock()  # embedding metrics may register from a worker thread
