"""Named metrics: what the GUI lists, what the CLI and the analysis code look up.

A :class:`Metric` bundles the pair function with optional fast paths:

- ``pairwise(specs, **engine_kwargs) -> (N, N)``: an all-pairs matrix that
  does better than calling ``fn`` N^2 times (cached transforms, GEMMs);
- ``index(specs, **engine_kwargs) -> DistanceIndex``: a cached structure for
  repeated queries against a fixed set.

``engine_kwargs`` are ``memory_budget_mb``, ``progress``, ``cancel`` and
``device`` (see :mod:`perceptlab.metrics.pairwise`). A metric without them
still works everywhere: the engine falls back to batched calls of ``fn``.

``input_kind`` says what the engine feeds the metric: ``"spectrogram"``
(tensors (N, 1, F, T) in [0, 1]) or ``"vector"`` (tensors (N, D), e.g.
stored encoder embeddings). An encoder metric registered at run time as
``"embedding:<name>"`` can take spectrograms and encode them itself (see
:func:`perceptlab.metrics.embedding.embedding_metric`), or take vectors.

Every list of metrics a user sees derives from the table, so a new metric
is one module and one registration in :func:`_register_builtins`:

- :func:`builtin_names`: every metric that is not one library's own, the
  image metrics first, then the baselines (what the GUI and the CLI list
  by default, what an evaluation runs k-NN on);
- :func:`image_metric_names`: the built-in non-baseline metrics that compare
  log-mel images (what a listening test's active mode and the benchmarks
  compare by default);
- :func:`baseline_names`: the built-in trivial baselines;
- :func:`loss_names`: the metrics an autoencoder can be trained with
  (``trainable``), and :func:`perceptual_loss_names`, those of them that
  are ``perceptual``.

They are asked when a list is needed, not at import, so a metric
registered later (a plugin module) is in them from then on;
:mod:`perceptlab.metric_names` gives them as module-level constants that a
module can hold without importing torch.
"""

from __future__ import annotations

from typing import List

from .metric import INPUT_KINDS, LIBRARY_METRIC_PREFIXES, LOWER_IS_CLOSER, TABLE as _REGISTRY, TABLE_LOCK as _LOCK, Metric

__all__ = ["INPUT_KINDS", "LIBRARY_METRIC_PREFIXES", "LOWER_IS_CLOSER", "Metric", "baseline_names",
           "builtin_names", "get_metric", "image_metric_names", "is_baseline", "list_metrics", "loss_names",
           "perceptual_loss_names", "register_metric", "unregister_metric"]


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add a metric to the registry.

    Parameters
    ----------
    metric : Metric
        The metric; ``metric.name`` becomes its key.
    replace : bool
        Allow replacing an existing entry (an encoder re-trained under the
        same name). Without it a duplicate name raises ValueError.

    Returns
    -------
    Metric
        The metric, for use as a decorator-style one-liner.
    """
    if not isinstance(metric, Metric):
        raise ValueError(f"register_metric expects a Metric, got {type(metric).__name__}")
    with _LOCK:
        if metric.name in _REGISTRY and not replace:
            raise ValueError(f"a metric named {metric.name!r} is already registered (pass replace=True)")
        _REGISTRY[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric (e.g. when its encoder checkpoint is deleted); missing names are ignored."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def get_metric(name: "str | Metric") -> Metric:
    """Look a metric up by name (a :class:`Metric` is returned as is).

    Raises
    ------
    ValueError
        Unknown name; the message lists the known names.
    """
    return Metric.named(name)


def list_metrics() -> List[Metric]:
    """All registered metrics, built-ins first, then in registration order."""
    with _LOCK:
        return list(_REGISTRY.values())


def is_baseline(metric: "str | Metric") -> bool:
    """True for a registered baseline (a :class:`Metric` or its name), False otherwise."""
    return get_metric(metric).is_baseline


def builtin_names() -> List[str]:
    """Every registered metric that is not one library's own (see :attr:`Metric.of_library`):
    the non-baselines in registration order, then the baselines.

    For the built-ins: ``mse, nlpd, msssim, logmel-stats, mfcc-stats``.
    """
    own = [m for m in list_metrics() if not m.of_library]
    return [m.name for m in own if not m.is_baseline] + [m.name for m in own if m.is_baseline]


def image_metric_names() -> List[str]:
    """The built-in metrics that compare log-mel images, baselines left out, in registration order.

    For the built-ins: ``mse, nlpd, msssim``.
    """
    return [m.name for m in list_metrics() if not m.of_library and m.compares_images and not m.is_baseline]


def baseline_names() -> List[str]:
    """The built-in trivial baselines (see :attr:`Metric.is_baseline`), in registration order."""
    return [m.name for m in list_metrics() if not m.of_library and m.is_baseline]


def loss_names() -> List[str]:
    """Names of the metrics an autoencoder can be trained with, in registry order."""
    return [m.name for m in list_metrics() if m.trainable]


def perceptual_loss_names() -> List[str]:
    """The losses (:func:`loss_names`) that are :attr:`Metric.perceptual`: ``nlpd, msssim`` for the built-ins."""
    return [m.name for m in list_metrics() if m.trainable and m.perceptual]


def _register_builtins() -> None:
    from functools import partial

    from . import ssim as _ms
    from . import pyramid as _nl
    from .pixel import mse
    from .pairwise import (
        MSEIndex,
        MSSSIMIndex,
        NLPDIndex,
        mse_matrix,
        msssim_matrix,
        nlpd_matrix,
    )

    register_metric(
        Metric(
            name="mse",
            display_name="MSE",
            fn=mse,
            params={},
            description="Mean squared difference of the log-mel images; the non-perceptual baseline.",
            pairwise=mse_matrix,
            index=MSEIndex,
            trainable=True,
        ),
        replace=True,
    )
    register_metric(
        Metric(
            name="nlpd",
            display_name="NLPD",
            fn=_nl.nlpd,
            params={
                "levels": _nl.N_LEVELS,
                "filter": "Burt-Adelson [.05 .25 .4 .25 .05]",
                "sigmas": _nl.SIGMAS,
                "pooling": "mean of per-level RMS",
            },
            description=(
                "Normalised Laplacian pyramid distance (Laparra et al. 2016, NLP_dist.m): "
                "6-level pyramid, divisive normalisation, mean of per-level RMS."
            ),
            pairwise=nlpd_matrix,
            index=NLPDIndex,
            trainable=True,
            perceptual=True,
        ),
        replace=True,
    )
    register_metric(
        Metric(
            name="msssim",
            display_name="1 - MS-SSIM",
            fn=_ms.msssim,
            params={
                "win_size": _ms.WIN_SIZE,
                "win_sigma": _ms.WIN_SIGMA,
                "K": (_ms.K1, _ms.K2),
                "weights": _ms.DEFAULT_WEIGHTS,
                "cs_floor": _ms.CS_FLOOR,
                "scales": "5 if min side > 96, else largest M with min side > 6*2^(M-1)",
            },
            description=(
                "One minus multi-scale SSIM (Wang et al. 2003) with a 7-pixel window and "
                "fewer scales for small images."
            ),
            pairwise=partial(msssim_matrix, cs_floor=_ms.CS_FLOOR),
            index=partial(MSSSIMIndex, cs_floor=_ms.CS_FLOOR),
            min_side=_ms.MIN_SIDE,
            trainable=True,
            perceptual=True,
        ),
        replace=True,
    )

    from .baselines import baseline_metrics

    # Trivial baselines (vector metrics on log-mel / MFCC statistics), after
    # the perceptual metrics so that those stay first in every list.
    for metric in baseline_metrics():
        register_metric(metric, replace=True)
