"""Normalised Laplacian pyramid distance (Laparra et al. 2016).

Follows the reference Matlab ``NLP_dist.m`` exactly (see the module
``perceptlab.metrics`` docstring for every convention):

1. Laplacian pyramid with 6 levels (5 band-pass + low-pass residual); the
   low-pass filter is the Burt-Adelson kernel f' f, f = [.05 .25 .4 .25 .05];
   downsampling pads half-sample symmetric and keeps every 2nd sample,
   upsampling replicate-pads, inserts zeros and filters with 4 f' f.
2. Divisive normalisation of each band,
   ``y_k = L_k / (sigma_k + conv2(|L_k|, P_k, 'same'))`` (true convolution,
   zero padding), with the published sigma_k and P_k (P_1 keeps its 0.0072
   tap two pixels to the right).
3. Per level the RMS of ``y_k(x) - y_k(y)`` over all pixels; NLPD is the plain
   mean of the 6 level values.

The input is one channel in [0, 1] (the constants are absolute). Rows are mel
bins with low frequencies first, columns are time frames; the P filters are
anisotropic, so this orientation is part of the metric's definition.
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from ._filters import divisive_denominator, pyr_down, pyr_up
from .validation import check_inputs

N_LEVELS = 6

#: sigma_k of the divisive normalisation, levels 1..6.
SIGMAS: Tuple[float, ...] = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)

#: P_k as in the Matlab 5 x 5 matrices: {(row, col): weight}, centre (2, 2).
P_MATLAB: Tuple[dict, ...] = (
    {(1, 2): 0.1011, (2, 1): 0.1493, (2, 3): 0.1460, (3, 2): 0.1015, (2, 4): 0.0072},
    {(1, 2): 0.0757, (2, 1): 0.1986, (2, 3): 0.1846, (3, 2): 0.0837},
    {(1, 2): 0.0477, (2, 1): 0.2138, (2, 3): 0.2243, (3, 2): 0.0467},
    {(2, 1): 0.2503, (2, 3): 0.2616},
    {(2, 1): 0.2598, (2, 3): 0.2552},
    {(2, 1): 0.2215, (2, 3): 0.0717},
)


def _gather_taps(p: dict) -> Tuple[Tuple[int, int, float], ...]:
    # conv2 'same' with a 5 x 5 kernel centred at (2, 2):
    #   out(i, j) = sum_{a,b} P[a, b] * in(i - (a - 2), j - (b - 2)),
    # so matrix slot (a, b) reads the input at offset (2 - a, 2 - b). Writing
    # it this way keeps the kernel flip (true convolution) explicit.
    return tuple((2 - a, 2 - b, w) for (a, b), w in sorted(p.items()))


#: (di, dj, w): denominator(i, j) = sigma + sum w |L|(i + di, j + dj).
P_GATHER: Tuple[Tuple[Tuple[int, int, float], ...], ...] = tuple(_gather_taps(p) for p in P_MATLAB)


def laplacian_pyramid(x: torch.Tensor) -> List[torch.Tensor]:
    """Laplacian pyramid of ``x`` as in NLP_dist.m.

    Parameters
    ----------
    x : torch.Tensor
        (..., H, W) images.

    Returns
    -------
    list of torch.Tensor
        6 tensors (..., H_k, W_k) with H_1 = H and H_{k+1} = ceil(H_k / 2):
        five band-pass levels and the low-pass residual.
    """
    levels = []
    j = x
    for _ in range(N_LEVELS - 1):
        coarse = pyr_down(j)  # (.., ceil(H/2), ceil(W/2))
        levels.append(j - pyr_up(coarse, (j.shape[-2], j.shape[-1])))
        j = coarse
    levels.append(j)
    return levels


def nlpd_transform(x: torch.Tensor, *, validate: bool = True) -> List[torch.Tensor]:
    """Normalised Laplacian pyramid coefficients of a batch of spectrograms.

    Parameters
    ----------
    x : torch.Tensor
        (B, 1, F, T) log-mel images in [0, 1], float32 or float64, any device.
    validate : bool
        Check the input first (reads values back to the host); pass False in
        training loops.

    Returns
    -------
    list of torch.Tensor
        6 tensors (B, 1, F_k, T_k), F_1 = F, F_{k+1} = ceil(F_k / 2). The NLPD
        of two images is the mean over k of the RMS difference of these.
    """
    if validate:
        check_inputs(x, metric="nlpd")
    out = []
    for k, band in enumerate(laplacian_pyramid(x)):
        # |L| has derivative sign(L), which torch defines as 0 at 0: finite.
        den = divisive_denominator(band.abs(), SIGMAS[k], P_GATHER[k])
        out.append(band / den)  # (B, 1, F_k, T_k)
    return out


def safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` whose gradient is 0 (not inf) where ``v == 0``.

    The forward value is exact (no epsilon), so identical images give exactly
    0. At v == 0 the derivative of sqrt is infinite; the "double where" below
    routes the gradient of that element through a dummy branch instead, which
    amounts to choosing the subgradient 0 at the minimum of the distance. No
    host synchronisation is involved.
    """
    pos = v > 0
    s = torch.sqrt(torch.where(pos, v, torch.ones_like(v)))
    return torch.where(pos, s, torch.zeros_like(v))


def nlpd_levels(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """Per-level RMS differences of the normalised pyramids.

    Parameters
    ----------
    x, y : torch.Tensor
        (B, 1, F, T) images in [0, 1] of the same shape.
    validate : bool
        Check the inputs first (host sync); pass False in training loops.

    Returns
    -------
    torch.Tensor
        (B, 6): column k is the RMS over all pixels of y_k(x) - y_k(y).
    """
    if validate:
        check_inputs(x, y, metric="nlpd")
    b = x.shape[0]
    # One transform over the stacked pair halves the number of kernel calls.
    coeffs = nlpd_transform(torch.cat([x, y], 0), validate=False)  # 6 x (2B, 1, F_k, T_k)
    rms = []
    for c in coeffs:
        d = c[:b] - c[b:]
        rms.append(safe_sqrt(d.square().mean(dim=(1, 2, 3))))  # (B,)
    return torch.stack(rms, dim=1)  # (B, 6)


def nlpd(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """NLPD between two batches of spectrograms (Laparra et al. 2016).

    Parameters
    ----------
    x, y : torch.Tensor
        (B, 1, F, T) log-mel images in [0, 1], same shape, dtype and device.
        Rows are mel bins (low frequencies first), columns are frames.
    validate : bool
        Check the inputs (rank, shape, NaN/inf, range) first; this reads
        values back to the host, so training loops pass False.

    Returns
    -------
    torch.Tensor
        (B,) distances; 0 for identical images, symmetric in x and y.
        Differentiable with finite gradients everywhere (see :func:`safe_sqrt`).
    """
    return nlpd_levels(x, y, validate=validate).mean(dim=1)
