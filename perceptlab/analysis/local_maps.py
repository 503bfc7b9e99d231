"""Where two spectrograms differ, as each metric sees it.

Maps have the full image's shape (F, T) so a view can overlay them on the
spectrogram:

* ``difference``: A - B in dB (positive where A is louder);
* ``ssim``: 1 - SSIM at the finest MS-SSIM scale (7-tap Gaussian window,
  valid part placed at its centre pixels, the 3-pixel border left at 0);
* ``nlpd-<k>``: the squared difference of the divisively normalised
  Laplacian coefficients at level k (1 = finest), each coarse pixel spread
  over the fine pixels it covers. When F and T are multiples of 32 the map's
  mean is exactly the square of NLPD's per-level RMS for that level.
"""

from __future__ import annotations

import numpy as np


def _t(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]  # (1, 1, F, T)


def difference_map(a: np.ndarray, b: np.ndarray, config=None) -> np.ndarray:
    """A - B in dB for two (F, T) images on the fixed [0, 1] scale."""
    from perceptlab.audio.features import FeatureConfig

    cfg = config or FeatureConfig()
    return (a - b) * (cfg.db_ceiling - cfg.db_floor)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - SSIM map at the finest scale, (F, T); border pixels the window cannot centre on are 0."""
    import torch

    from perceptlab.metrics.ssim import _TAPS
    from perceptlab.metrics.ssim import ssim_map as _ssim

    with torch.no_grad():
        s = _ssim(_t(a).double(), _t(b).double())
    valid = (1.0 - s)[0, 0].numpy()
    out = np.zeros(a.shape, dtype=np.float32)
    r = (len(_TAPS) - 1) // 2
    out[r : r + valid.shape[0], r : r + valid.shape[1]] = valid
    return out


def nlpd_level_maps(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Per-level squared differences of the normalised coefficients, each (F, T)."""
    import torch

    from perceptlab.metrics.pyramid import nlpd_transform

    with torch.no_grad():
        ya = nlpd_transform(_t(a).double())
        yb = nlpd_transform(_t(b).double())
    f, t = a.shape
    out = []
    for la, lb in zip(ya, yb):
        err = ((la - lb) ** 2)[0, 0].numpy()  # (F_k, T_k)
        sf, st = -(-f // err.shape[0]), -(-t // err.shape[1])
        out.append(np.repeat(np.repeat(err, sf, axis=0), st, axis=1)[:f, :t].astype(np.float32))
    return out


def local_maps(a: np.ndarray, b: np.ndarray, config=None) -> dict[str, np.ndarray]:
    """Every map by name, in display order."""
    maps = {"difference": difference_map(a, b, config), "ssim": ssim_map(a, b)}
    for k, m in enumerate(nlpd_level_maps(a, b), start=1):
        maps[f"nlpd-{k}"] = m
    return maps
