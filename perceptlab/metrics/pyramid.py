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

The sigmas and P filters are those published; :class:`NLPDParams` holds
others (a variant fitted to listeners, :mod:`perceptlab.analysis.calibration`),
and :func:`nlpd_transform`, :func:`nlpd_levels` and :func:`nlpd` take them as
``params`` (None: the published values, on the same code path).

The input is one channel in [0, 1] (the constants are absolute). Rows are mel
bins with low frequencies first, columns are time frames; the P filters are
anisotropic, so this orientation is part of the metric's definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

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


Taps = Tuple[Tuple[Tuple[int, int, float], ...], ...]

#: Largest tap offset :class:`NLPDParams` accepts, either axis (the 9 x 9 support around the centre).
MAX_TAP_OFFSET = 4


@dataclass(frozen=True)
class NLPDParams:
    """Divisive-normalisation parameters of NLPD.

    ``sigmas``: 6 positive floats, one per level. ``taps``: per level a tuple
    of (di, dj, w) in gather form: ``den(i, j) = sigma + sum w |L|(i + di, j + dj)``
    (zero outside the image), the layout of :data:`P_GATHER`. The defaults
    are the published values.
    """

    sigmas: Tuple[float, ...] = SIGMAS
    taps: Taps = P_GATHER

    def __post_init__(self):
        if len(self.sigmas) != N_LEVELS or len(self.taps) != N_LEVELS:
            raise ValueError(f"NLPD parameters need {N_LEVELS} sigmas and {N_LEVELS} tap sets, "
                             f"got {len(self.sigmas)} and {len(self.taps)}")
        for s in self.sigmas:
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"NLPD sigmas must be positive and finite, got {self.sigmas}")
        for level in self.taps:
            for di, dj, w in level:
                if not (math.isfinite(w) and w >= 0) or max(abs(di), abs(dj)) > MAX_TAP_OFFSET:
                    raise ValueError(f"bad NLPD tap {(di, dj, w)}: the weight must be finite and >= 0 "
                                     f"and the offsets at most {MAX_TAP_OFFSET} either way")

    @classmethod
    def default(cls) -> "NLPDParams":
        """The published values (Laparra et al. 2016): :data:`SIGMAS` and :data:`P_GATHER`."""
        return cls(SIGMAS, P_GATHER)

    def to_json(self) -> dict:
        """``{"sigmas": [6 floats], "taps": [[[di, dj, w], ...] per level]}``."""
        return {"sigmas": list(self.sigmas), "taps": [[[di, dj, w] for di, dj, w in lv] for lv in self.taps]}

    @classmethod
    def from_json(cls, data: dict) -> "NLPDParams":
        """The inverse of :meth:`to_json`; ValueError names what is wrong."""
        try:
            sig = tuple(float(s) for s in data["sigmas"])
            taps = tuple(tuple((int(di), int(dj), float(w)) for di, dj, w in lv) for lv in data["taps"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not NLPD parameters ({exc})") from None
        return cls(sig, taps)


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


def nlpd_transform(x: torch.Tensor, params: Optional[NLPDParams] = None, *,
                   validate: bool = True) -> List[torch.Tensor]:
    """Normalised Laplacian pyramid coefficients of a batch of spectrograms.

    Parameters
    ----------
    x : torch.Tensor
        (B, 1, F, T) log-mel images in [0, 1], float32 or float64, any device.
    params : NLPDParams, optional
        The normalisation's sigmas and taps; None: the published values.
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
    sigmas, taps = (SIGMAS, P_GATHER) if params is None else (params.sigmas, params.taps)
    out = []
    for k, band in enumerate(laplacian_pyramid(x)):
        # |L| has derivative sign(L), which torch defines as 0 at 0: finite.
        if taps[k]:
            den = divisive_denominator(band.abs(), sigmas[k], taps[k])
        else:  # a level normalised by its sigma alone
            den = torch.full_like(band, sigmas[k])
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


def nlpd_levels(x: torch.Tensor, y: torch.Tensor, params: Optional[NLPDParams] = None, *,
                validate: bool = True) -> torch.Tensor:
    """Per-level RMS differences of the normalised pyramids.

    Parameters
    ----------
    x, y : torch.Tensor
        (B, 1, F, T) images in [0, 1] of the same shape.
    params : NLPDParams, optional
        As in :func:`nlpd_transform` (None: the published values).
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
    coeffs = nlpd_transform(torch.cat([x, y], 0), params, validate=False)  # 6 x (2B, 1, F_k, T_k)
    rms = []
    for c in coeffs:
        d = c[:b] - c[b:]
        rms.append(safe_sqrt(d.square().mean(dim=(1, 2, 3))))  # (B,)
    return torch.stack(rms, dim=1)  # (B, 6)


def nlpd(x: torch.Tensor, y: torch.Tensor, params: Optional[NLPDParams] = None, *,
         validate: bool = True) -> torch.Tensor:
    """NLPD between two batches of spectrograms (Laparra et al. 2016).

    Parameters
    ----------
    x, y : torch.Tensor
        (B, 1, F, T) log-mel images in [0, 1], same shape, dtype and device.
        Rows are mel bins (low frequencies first), columns are frames.
    params : NLPDParams, optional
        The normalisation's sigmas and taps (a calibrated variant); None: the
        published values.
    validate : bool
        Check the inputs (rank, shape, NaN/inf, range) first; this reads
        values back to the host, so training loops pass False.

    Returns
    -------
    torch.Tensor
        (B,) distances; 0 for identical images, symmetric in x and y.
        Differentiable with finite gradients everywhere (see :func:`safe_sqrt`).
    """
    return nlpd_levels(x, y, params, validate=validate).mean(dim=1)
