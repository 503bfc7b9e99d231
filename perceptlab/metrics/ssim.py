"""Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) for spectrogram-sized images.

Conventions (pytorch-msssim 1.0.0 with a 7-tap window, see the
``perceptlab.metrics`` docstring for the full statement):

- 1-D Gaussian window, 7 taps, sigma 1.5, separable, valid (no padding);
  C1 = 0.01^2, C2 = 0.03^2 (data range 1).
- Scales: M = 5 with weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333] when
  min(F, T) > 96; otherwise the largest M with min(F, T) > 6 * 2^(M-1), using
  the first M weights renormalised to sum 1. min(F, T) <= 6 is rejected.
- Between scales, ``avg_pool2d(kernel 2, stride 2, padding=(H % 2, W % 2))``
  with the zero padding counted in the mean.
- MS-SSIM = prod_{j<M} cs_j^w_j * ssim_M^w_M, each term the image mean of its
  map. Each mean is clamped from below at ``cs_floor`` (default 1e-4) instead
  of pytorch-msssim's ReLU; the returned distance is 1 - MS-SSIM.
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import torch

from ._filters import avg_pool_2x2, gaussian_taps, gaussian_valid
from .validation import check_inputs

WIN_SIZE = 7
WIN_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
C1 = K1**2  # data range 1
C2 = K2**2
DEFAULT_WEIGHTS: Tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: Lower clamp of every per-scale mean before the fractional power.
#: Equal to pytorch-msssim whenever all means are >= CS_FLOOR; below it, the
#: term stays at CS_FLOOR ** w instead of dropping to 0, so the loss keeps
#: finite, non-zero gradients through the other scales.
CS_FLOOR = 1e-4

#: Smallest min(F, T) accepted: one scale needs at least a 7-pixel window.
MIN_SIDE = WIN_SIZE

_TAPS = gaussian_taps(WIN_SIZE, WIN_SIGMA)


def n_scales(height: int, width: int) -> int:
    """Number of scales used for an image of this size (0 if it is too small).

    5 when min(H, W) > 96, else the largest M with min(H, W) > 6 * 2^(M-1).
    """
    side = min(height, width)
    m = 0
    while m < len(DEFAULT_WEIGHTS) and side > (WIN_SIZE - 1) * 2**m:
        m += 1
    return m


def scale_weights(m: int) -> Tuple[float, ...]:
    """The first ``m`` default weights, renormalised to sum 1 when m < 5."""
    if not 1 <= m <= len(DEFAULT_WEIGHTS):
        raise ValueError(f"MS-SSIM needs 1..{len(DEFAULT_WEIGHTS)} scales, got {m}")
    w = DEFAULT_WEIGHTS[:m]
    if m == len(DEFAULT_WEIGHTS):
        return w
    s = sum(w)
    return tuple(v / s for v in w)


def check_msssim_size(height: int, width: int) -> int:
    """Return the number of scales, or raise ValueError if the image is too small."""
    m = n_scales(height, width)
    if m == 0:
        raise ValueError(
            f"msssim: images of {height} x {width} are too small; MS-SSIM with a "
            f"{WIN_SIZE}-pixel window needs both sides > {WIN_SIZE - 1} pixels "
            "(5 scales need both sides > 96)"
        )
    return m


# Why every scale works on mean-free images ("centring"): local variances
# and covariances are shift invariant, but computed as G*(x y) - (G*x)(G*y)
# they cancel badly in float32 when the values sit far from 0 (a log-mel
# image around 0.5 loses ~2 digits; float32 MS-SSIM then drifts ~1e-5 from
# float64). On images minus their own mean, float32 stays within ~2e-7 of
# float64. Only the luminance term needs the true local means, which are
# the centred ones plus the removed mean.


class ScaleStats(NamedTuple):
    """Per-image statistics at one scale, reused by the all-pairs engine."""

    image: torch.Tensor  # (..., H_j, W_j) the mean-free image at this scale
    mu: torch.Tensor  # (..., H_j - 6, W_j - 6) local mean G * image (mean-free)
    var: torch.Tensor  # (..., H_j - 6, W_j - 6) local variance G * image^2 - mu^2
    mean: torch.Tensor  # (..., 1, 1) the image mean removed at this scale


def scale_stats(x: torch.Tensor, m: int) -> List[ScaleStats]:
    """Local means and variances of ``x`` at each of ``m`` scales.

    Parameters
    ----------
    x : torch.Tensor
        (..., H, W) images.
    m : int
        Number of scales.
    """
    out = []
    for j in range(m):
        if j:
            x = avg_pool_2x2(x)
        a = x.mean(dim=(-2, -1), keepdim=True)
        xc = x - a  # centring, see above
        # One filter call for x and x^2 together halves the kernel launches.
        f = gaussian_valid(torch.stack([xc, xc * xc]), _TAPS)  # (2, .., H-6, W-6)
        mu, ex2 = f[0], f[1]
        out.append(ScaleStats(xc, mu, ex2 - mu * mu, a))
    return out


def luminance(mu_x: torch.Tensor, mu_y: torch.Tensor) -> torch.Tensor:
    """Luminance map (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) from the true local means."""
    return (2.0 * mu_x * mu_y + C1) / (mu_x * mu_x + mu_y * mu_y + C1)


def cs_map(
    mu_x: torch.Tensor,
    var_x: torch.Tensor,
    mu_y: torch.Tensor,
    var_y: torch.Tensor,
    exy: torch.Tensor,
) -> torch.Tensor:
    """The contrast-structure map (2 cov + C2) / (var_x + var_y + C2).

    ``exy`` is G * (x y) of the mean-free images, ``mu``/``var`` come from
    them too (:func:`scale_stats`). Arguments broadcast.
    """
    return (2.0 * (exy - mu_x * mu_y) + C2) / (var_x + var_y + C2)


def cs_mean(
    mu_x: torch.Tensor,
    var_x: torch.Tensor,
    mu_y: torch.Tensor,
    var_y: torch.Tensor,
    exy: torch.Tensor,
    lum: "torch.Tensor | None" = None,
) -> torch.Tensor:
    """Image mean of the cs map, or of lum * cs (the SSIM map) when ``lum`` is given.

    Arguments as in :func:`cs_map`; the result drops the last two dimensions.
    """
    m = cs_map(mu_x, var_x, mu_y, var_y, exy)
    if lum is not None:
        m = lum * m
    return m.mean(dim=(-2, -1))


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The SSIM map at the finest scale: (..., H, W) images give (..., H - 6, W - 6).

    Where the window fits only (no padding), from the same statistics the
    metric uses, so a map shown to a user is the metric's own first scale.
    """
    sx, sy = scale_stats(x, 1)[0], scale_stats(y, 1)[0]
    exy = gaussian_valid(sx.image * sy.image, _TAPS)
    lum = luminance(sx.mu + sx.mean, sy.mu + sy.mean)
    return lum * cs_map(sx.mu, sx.var, sy.mu, sy.var, exy)


def combine(means: Sequence[torch.Tensor], weights: Sequence[float], cs_floor: float) -> torch.Tensor:
    """1 - prod_j clamp(mean_j, cs_floor) ** w_j."""
    prod = None
    for v, w in zip(means, weights):
        # clamp_min, not ReLU: relu(cs) ** w is 0 for anti-correlated images,
        # which kills the whole product and every gradient with it; a floor
        # keeps the other scales' gradients alive and the power's derivative
        # finite (w * floor^(w-1)).
        t = v.clamp_min(cs_floor).pow(w)
        prod = t if prod is None else prod * t
    return 1.0 - prod


def msssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    validate: bool = True,
    cs_floor: float = CS_FLOOR,
) -> torch.Tensor:
    """1 - MS-SSIM between two batches of spectrograms.

    Parameters
    ----------
    x, y : torch.Tensor
        (B, 1, F, T) log-mel images in [0, 1], same shape, dtype and device;
        min(F, T) must be at least 7 (5 scales need > 96).
    validate : bool
        Check the inputs (rank, shape, NaN/inf, range) first; this reads
        values back to the host, so training loops pass False. The size check
        never needs the host and is always done.
    cs_floor : float
        Lower clamp of each per-scale mean (> 0); see :data:`CS_FLOOR`.

    Returns
    -------
    torch.Tensor
        (B,) distances 1 - MS-SSIM; 0 for identical images, symmetric.
    """
    if validate:
        check_inputs(x, y, metric="msssim")
    if not cs_floor > 0:
        raise ValueError(f"msssim: cs_floor must be > 0 (got {cs_floor}); it keeps gradients finite")
    m = check_msssim_size(x.shape[-2], x.shape[-1])
    weights = scale_weights(m)
    b = x.shape[0]
    means = []
    xs, ys = x, y
    for j in range(m):
        if j:
            xs, ys = avg_pool_2x2(xs), avg_pool_2x2(ys)
        ax = xs.mean(dim=(-2, -1), keepdim=True)  # (B, 1, 1, 1)
        ay = ys.mean(dim=(-2, -1), keepdim=True)
        xc, yc = xs - ax, ys - ay  # centring, see above
        # mu_x, mu_y, G*x^2, G*y^2, G*xy in one filter call.
        f = gaussian_valid(torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], 0), _TAPS)  # (5B, 1, h, w)
        mu_x, mu_y, ex2, ey2, exy = f.split(b, 0)
        var_x = ex2 - mu_x * mu_x
        var_y = ey2 - mu_y * mu_y
        last = j == m - 1
        if last:
            lum = luminance(mu_x + ax, mu_y + ay)
        means.append(cs_mean(mu_x, var_x, mu_y, var_y, exy, lum if last else None))  # (B, 1)
    return combine(means, weights, cs_floor)[:, 0]  # (B,)
