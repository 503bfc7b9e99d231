"""The MS-SSIM engine's per-clip statistics: local means and variances at every scale, once.

:class:`_MSSSIMStats` holds them in the form the pair loop of
:func:`perceptlab.metrics.pairwise.msssim_matrix` and
:class:`~perceptlab.metrics.pairwise.MSSSIMIndex` wants; per pair only the
cross term G * (x y) and the map arithmetic remain, computed for blocks of
pairs whose temporaries stay in the CPU's last-level cache.
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from . import ssim as _ms
from ._filters import _correlate
from .pairwise_blocks import _MB, _budget_rows, _chunks

# MS-SSIM pairs are processed in blocks of at most this many pairs on the CPU.
# Measured on 2 idle cores with 128 x 256 images: 24 pairs 0.155 ms/pair
# (the ~20 passes over a block stay in cache), 64 pairs 0.160, 119 pairs
# 0.165. Bigger blocks cost ~5% when idle but mean 5x fewer parallel regions,
# and each region waits for its slowest thread: with other programs busy on
# the same cores (the normal case on a desktop) that wait dominates.
_MSSSIM_CPU_BLOCK = 128
# Within a block, each scale works on at most this many bytes of image per
# temporary, so that its passes stay in the last-level cache (4 pairs or more
# at the finest scale of 30 s clips, 128 x 1328, 4x as many at each coarser
# scale). Measured on 64 such clips, 2 cores: 2-3 MB 0.81-0.95 ms/pair, 6 MB
# 1.03, the whole row at once (up to 128 pairs) 1.6-1.8.
_MSSSIM_BLOCK_BYTES = 3 * _MB


class _MSSSIMStats:
    """Per-clip MS-SSIM statistics at every scale, in the form the pair loop wants.

    For scale j: the mean-free image (N, h, w), its local mean mu and
    var + C2/2 (N, h', w'), so that the cs denominator of a pair is one
    addition. At the last scale also the true local mean and mu^2 + C1/2 for
    the luminance term.
    """

    def __init__(self, x: torch.Tensor, chunk: int):
        n = x.shape[0]
        self.m = _ms.check_msssim_size(x.shape[-2], x.shape[-1])
        self.weights = _ms.scale_weights(self.m)
        parts: List[List[List[torch.Tensor]]] = []
        with torch.no_grad():
            for i0, i1 in _chunks(n, chunk):
                per_scale = []
                for j, st in enumerate(_ms.scale_stats(x[i0:i1, 0], self.m)):
                    row = [st.image, st.mu, st.var + _ms.C2 / 2]
                    if j == self.m - 1:
                        mu = st.mu + st.mean  # true local mean for the luminance term
                        row += [mu, mu * mu + _ms.C1 / 2]
                    per_scale.append(row)
                parts.append(per_scale)
        self.scales = [
            [_cat([p[j][q] for p in parts]) for q in range(len(parts[0][j]))] for j in range(self.m)
        ]
        # Doubling the row taps of the cross-term filter gives 2 G*(xy) for free.
        self.taps_rows2 = tuple(2.0 * t for t in _ms._TAPS)
        self._shifts_key: Tuple[int, int] | None = None
        self._shifts: List[torch.Tensor] = []

    def row(self, q: "_MSSSIMStats", i: int, j0: int, j1: int, cs_floor: float) -> torch.Tensor:
        """1 - MS-SSIM between clip i of ``q`` and clips j0..j1-1 of ``self``: (j1 - j0,)."""
        prod = None
        for j in range(self.m):
            t = torch.cat([self._scale_term(q, i, j, a, b, cs_floor) for a, b in self._sub_blocks(j, j0, j1)])
            prod = t if prod is None else prod.mul_(t)
        return 1.0 - prod

    def _weighted_shifts(self, i: int, j: int) -> List[torch.Tensor]:
        """Clip i's image at scale j, shifted by each tap along W and weighted by it."""
        key = (i, j)
        if self._shifts_key != key:
            qimg = self.scales[j][0][i]  # (h, w)
            k = len(_ms._TAPS)
            width = qimg.shape[-1] - k + 1
            self._shifts = [qimg[..., t : t + width] * tap for t, tap in enumerate(_ms._TAPS)]
            self._shifts_key = key
        return self._shifts

    def _sub_blocks(self, j: int, j0: int, j1: int) -> List[Tuple[int, int]]:
        # On the CPU each scale works through the pairs in blocks whose
        # temporaries stay in the last-level cache: a few pairs at the finest
        # scale of a wide image, 4x as many at each coarser one (fewer, larger
        # operations where the images are small).
        img = self.scales[j][0]
        if img.device.type != "cpu":
            return [(j0, j1)]
        per_pair = img[0].numel() * img.element_size()
        size = max(4, _MSSSIM_BLOCK_BYTES // per_pair)
        return [(j0 + a, j0 + b) for a, b in _chunks(j1 - j0, size)]

    def _scale_term(self, q: "_MSSSIMStats", i: int, j: int, j0: int, j1: int, cs_floor: float) -> torch.Tensor:
        """The weighted, floored mean cs (times luminance at the last scale) of scale j: (j1 - j0,)."""
        last = j == self.m - 1
        img, mu, dvar = self.scales[j][:3]
        qmu, qdvar = q.scales[j][1][i], q.scales[j][2][i]
        # 2 G*(x y) + C2 in one go. Along W the filter of the product is a sum
        # of the block's shifted slices times the query's tap-weighted shifted
        # slices (prepared once per query), so the product itself is never
        # written; along H the doubled taps sum to 2, so the C2/2 added first
        # comes out as exactly C2.
        shifts = q._weighted_shifts(i, j)  # k x (h, w')
        y = img[j0:j1]  # (b, h, w)
        width = shifts[0].shape[-1]
        rows = torch.addcmul(_half_c2(img), y[..., :width], shifts[0])
        for t in range(1, len(shifts)):
            rows.addcmul_(y[..., t : t + width], shifts[t])
        num = _correlate(rows, self.taps_rows2, -2, img.shape[-2] - len(shifts) + 1)  # (b, h', w')
        num.addcmul_(mu[j0:j1], qmu, value=-2.0)  # 2 (G*(xy) - mu_x mu_y) + C2
        num.div_(dvar[j0:j1] + qdvar)  # cs map
        if last:
            tmu, tmu2 = self.scales[j][3:5]
            lum = torch.mul(tmu[j0:j1], q.scales[j][3][i]).mul_(2.0).add_(_ms.C1)
            lum.div_(tmu2[j0:j1] + q.scales[j][4][i])
            num.mul_(lum)
        return num.mean(dim=(-2, -1)).clamp_min_(cs_floor).pow_(self.weights[j])  # (b,)


def _cat(parts: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts, 0) if len(parts) > 1 else parts[0]


def _half_c2(img: torch.Tensor) -> torch.Tensor:
    return torch.full((), _ms.C2 / 2, dtype=img.dtype, device=img.device)


def _msssim_chunk(x: torch.Tensor, budget_bytes: int) -> int:
    per_clip = 16 * x.shape[-2] * x.shape[-1] * x.element_size()
    return _budget_rows(budget_bytes, per_clip, x.shape[0])


def _msssim_block(x: torch.Tensor, budget_bytes: int) -> int:
    # ~5 live image-sized temporaries per pair in the block (finest scale).
    per_pair = 5 * x.shape[-2] * x.shape[-1] * x.element_size()
    # On the CPU the block is cut again per scale (_MSSSIMStats._sub_blocks).
    cap = _MSSSIM_CPU_BLOCK if x.device.type == "cpu" else 4096
    return _budget_rows(budget_bytes, per_pair, cap)
