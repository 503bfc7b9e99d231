"""Mean squared error between spectrogram images (the non-perceptual baseline)."""

from __future__ import annotations

import torch

from .validation import check_inputs


def mse(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """Mean squared difference per image.

    Parameters
    ----------
    x, y : torch.Tensor
        (B, 1, F, T) log-mel images in [0, 1], same shape, dtype and device.
    validate : bool
        Check the inputs first (reads values back to the host); pass False in
        training loops.

    Returns
    -------
    torch.Tensor
        (B,) mean over all F x T pixels of (x - y)^2; 0 for identical images.
    """
    if validate:
        check_inputs(x, y, metric="mse")
    return (x - y).square().mean(dim=(1, 2, 3))  # (B,)
