"""Input checks for the metric functions.

The metric functions themselves never synchronise with the device (no
``.item()``, no ``bool(tensor)``), so that they can run inside a CUDA training
step without stalling it. Everything that needs to read values back to the
host lives here, in :func:`check_inputs`, which the public functions call
unless they are given ``validate=False``.
"""

from __future__ import annotations

from typing import Optional

import torch

#: Values may leave [0, 1] by this much (float32 rounding in feature code).
RANGE_TOLERANCE = 1e-6


def _describe(x: torch.Tensor) -> str:
    return f"shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"


def check_image_batch(x: torch.Tensor, name: str = "x", *, check_values: bool = True) -> None:
    """Check one batch of spectrogram images.

    Parameters
    ----------
    x : torch.Tensor
        Expected shape (B, 1, F, T), floating dtype, values in [0, 1].
    name : str
        Name used in error messages.
    check_values : bool
        Also check finiteness and range (reads values back to the host).

    Raises
    ------
    ValueError
        With a message that names the problem.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have 4 dimensions (batch, 1, mel bins, frames); got {x.dim()} "
            f"({_describe(x)})"
        )
    if x.shape[1] != 1:
        raise ValueError(
            f"{name} must have exactly 1 channel at dim 1, shape (B, 1, F, T); got {_describe(x)}"
        )
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} is empty ({_describe(x)})")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got {_describe(x)}")
    if not check_values:
        return
    x = x.detach()  # reading values back must not warn about (or touch) autograd
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)")
    lo = float(x.min())
    hi = float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name} has values outside [0, 1] (min {lo:.6g}, max {hi:.6g}); metrics expect "
            "log-mel images scaled to [0, 1]"
        )


def check_inputs(
    x: torch.Tensor,
    y: Optional[torch.Tensor] = None,
    *,
    metric: str = "metric",
    min_side: int = 1,
) -> None:
    """Check the inputs of a pair metric and raise a clear ``ValueError``.

    This is the only place that reads tensor values back to the host; training
    loops skip it by passing ``validate=False`` to the metric.

    Parameters
    ----------
    x, y : torch.Tensor
        Batches of spectrogram images (B, 1, F, T) in [0, 1]; ``y`` may be
        omitted to check a single batch.
    metric : str
        Metric name used in error messages.
    min_side : int
        Smallest allowed value of min(F, T).

    Raises
    ------
    ValueError
        Wrong type, rank or channel count, non-floating dtype, NaN or inf,
        values outside [0, 1], mismatched shapes, dtypes or devices, or an
        image too small for the metric.
    """
    check_image_batch(x, "x")
    if y is not None:
        check_image_batch(y, "y")
        if x.shape != y.shape:
            raise ValueError(
                f"{metric}: x and y must have the same shape; got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        if x.dtype != y.dtype:
            raise ValueError(f"{metric}: x and y must have the same dtype; got {x.dtype} and {y.dtype}")
        if x.device != y.device:
            raise ValueError(
                f"{metric}: x and y must be on the same device; got {x.device} and {y.device}"
            )
    side = min(x.shape[-2], x.shape[-1])
    if side < min_side:
        raise ValueError(
            f"{metric}: images of {x.shape[-2]} x {x.shape[-1]} are too small; both sides must "
            f"be at least {min_side} pixels"
        )
