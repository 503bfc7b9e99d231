"""Perceptual distances between log-mel spectrogram images (no Qt).

Inputs are batches of log-mel images, tensors (B, 1, F, T) with values in
[0, 1]: rows are mel bins with the lowest frequency in row 0, columns are time
frames. Every metric returns (B,) distances, 0 for identical images, larger
for more different ones; all are symmetric, differentiable with finite
gradients everywhere (usable as training losses), run on CPU and CUDA in
float32 and float64, and never synchronise with the device unless asked to
validate (``validate=True``, the default; training loops pass False).

Metrics and their exact conventions
-----------------------------------
``mse(x, y)``
    Mean over the F x T pixels of (x - y)^2.

``nlpd(x, y)`` -- Laparra, Balle, Berardino, Simoncelli 2016, reference
Matlab ``NLP_dist.m``; matches the shipped reference vectors to 5e-7 in
float32 and 5e-8 in float64 (totals and per-level values).
    - Laplacian pyramid, 6 levels (5 band-pass + low-pass residual); low-pass
      kernel f' f with f = [.05 .25 .4 .25 .05].
    - Downsample: pad 2 on each side half-sample symmetric (Matlab
      'symmetric', b a | a b ..), correlate, keep samples 0, 2, 4, ...
      (size ceil(N/2)).
    - Upsample: replicate-pad by 1, insert zeros, filter with 4 f' f (zero
      padding), crop to the finer level's size. Band k = J_k - up(J_{k+1}).
    - Divisive normalisation y_k = L_k / (sigma_k + conv2(|L_k|, P_k, 'same')),
      true convolution (kernel flipped), zero padding, sigma = [.0248 .0185
      .0179 .0191 .0220 .2782] and the published P_k, P_1 with its 0.0072 tap
      (two pixels to the right in the Matlab matrix, so it reads |L|(i, j-2)).
    - Per level the RMS over all pixels of y_k(x) - y_k(y); NLPD is the plain
      mean of the 6 values (not the later 0.6-norm variant).
    - The P filters are anisotropic: swapping time and frequency changes the
      value. Rows must be mel bins (low first), columns frames.
    - :func:`nlpd_transform` exposes the normalised coefficients y_k.
    - ``params`` (:class:`NLPDParams`, e.g. a calibrated variant's) replaces
      the sigmas and P_k above in :func:`nlpd`, :func:`nlpd_transform`,
      :func:`nlpd_levels`, :func:`nlpd_matrix` and :class:`NLPDIndex`.

``msssim(x, y)`` returns 1 - MS-SSIM -- Wang, Simoncelli, Bovik 2003, as in
pytorch-msssim 1.0.0 with a 7-tap window.
    - 1-D Gaussian window of 7 taps, sigma 1.5 (computed in float32 like
      pytorch-msssim), separable, valid convolution; C1 = 0.01^2,
      C2 = 0.03^2 (data range 1).
    - Between scales: ``avg_pool2d(kernel 2, stride 2, padding=(H % 2,
      W % 2))``, zero padding counted in the mean (an odd side gets one zero
      at both ends, giving ceil(N/2); a constant image's border becomes half).
    - MS-SSIM = prod_{j<M} cs_j^w_j * ssim_M^w_M, each term the mean of its
      map over the image.

Small-image rule (MS-SSIM)
    The standard 5 scales with an 11-pixel window need min(F, T) >= 161;
    128-bin spectrograms are smaller. Here the window has 7 taps and the
    number of scales is M = 5 with weights [0.0448, 0.2856, 0.3001, 0.2363,
    0.1333] when min(F, T) > 96; otherwise the largest M with
    min(F, T) > 6 * 2^(M-1) (M = 4 for 49..96, 3 for 25..48, 2 for 13..24,
    1 for 7..12), using the first M weights divided by their sum.
    min(F, T) <= 6 raises ValueError. NLPD accepts any size.

Guards (the choices a user should know)
    - NLPD, sqrt at 0: the per-level RMS uses an exact sqrt in the forward
      pass (identical images give exactly 0, reference values are
      unchanged) and a "double where" that makes its gradient 0 where the
      mean square is exactly 0 -- the subgradient at the minimum -- instead
      of inf/NaN. No epsilon is added.
    - MS-SSIM, negative cs: pytorch-msssim applies ReLU to each mean before
      the fractional power, so an anti-correlated scale makes MS-SSIM 0 and
      every gradient 0. Here each mean is clamped from below at
      ``cs_floor = 1e-4`` instead (``msssim(..., cs_floor=...)``; must be
      > 0). Values are identical to pytorch-msssim whenever every mean is
      >= 1e-4 (true for all reference vectors); a scale whose mean falls
      below contributes the constant factor 1e-4^w_j (0.66 for the finest
      scale) instead of zeroing the product, so the distance of such a pair
      stays below 1 and still ranks it by the other scales. The clamped
      scale passes no gradient, the others do, and the power's derivative
      stays finite. When every scale is anti-correlated (e.g. y = 1 - x on
      a textured image) the gradient is 0, as with ReLU, but never NaN.
    - MS-SSIM, float32: local (co)variances are computed on mean-free images
      (subtracting each image's mean at each scale). This is exact in
      theory, and in float32 it avoids the cancellation of
      G*(x y) - G*x G*y, keeping results within ~2e-7 of float64 (the
      uncentred formula drifts by ~1e-5 on smooth images). The float64
      result differs from pytorch-msssim's by at most ~1e-6 because its
      float32 window does not sum to exactly 1.
    - Inputs outside [0, 1] by more than 1e-6, NaN/inf, wrong rank or channel
      count, mismatched shapes/dtypes/devices raise ValueError (in
      :func:`check_inputs`, skipped with ``validate=False``).

All-pairs and queries
---------------------
:func:`distance_matrix`, :func:`nearest` and the index classes
(:class:`NLPDIndex` ...) compute many distances without calling the pair
function N^2 times; see :mod:`perceptlab.metrics.pairwise`. The registry
(:func:`get_metric`, :func:`list_metrics`, :func:`register_metric`) names
the metrics for the GUI and CLI.

Modules
-------
- The metrics: :mod:`.pixel` (MSE), :mod:`.pyramid` (NLPD and
  :class:`NLPDParams`), :mod:`.ssim` (MS-SSIM), :mod:`.baselines` (log-mel and
  MFCC statistics), :mod:`.embedding` (distances in an encoder's latent
  space); :mod:`._filters` their separable filters, :mod:`.validation` the
  input checks. A new metric is one module here and one registration.
- What a metric is and which exist: :mod:`.metric` (:class:`Metric`),
  :mod:`.registry` (the built-ins, registered once; every list of metric
  names the project uses is asked of it).
- Many distances at once: :mod:`.pairwise` (the all-pairs engines,
  :func:`distance_matrix`, :func:`nearest`, the indexes) with
  :mod:`.pairwise_blocks` (inputs, memory-budgeted blocks),
  :mod:`.pairwise_index` (the index base), :mod:`.pairwise_nlpd` and
  :mod:`.pairwise_msssim` (per-clip coefficients and statistics);
  :mod:`.search` (exact or two-stage nearest-neighbour search over a
  persistent index).
- :mod:`.bench`, :mod:`.bench_neighbours`: ``perceptlab bench metrics`` and
  ``perceptlab bench neighbours``.
"""

from perceptlab.tasks import Cancelled

from .embedding import embedding_metric
from .pixel import mse
from .ssim import CS_FLOOR, msssim, n_scales, scale_weights
from .pyramid import NLPDParams, nlpd, nlpd_levels, nlpd_transform
from .pairwise import (
    GenericIndex,
    MSEIndex,
    MSSSIMIndex,
    NLPDIndex,
    build_index,
    distance_matrix,
    mse_matrix,
    msssim_matrix,
    nearest,
    nlpd_matrix,
)
from .pairwise_index import DistanceIndex
from .registry import (
    Metric,
    _register_builtins,
    get_metric,
    list_metrics,
    loss_names,
    register_metric,
    unregister_metric,
)
from .validation import check_inputs

_register_builtins()

__all__ = [
    "CS_FLOOR",
    "Cancelled",
    "DistanceIndex",
    "GenericIndex",
    "MSEIndex",
    "MSSSIMIndex",
    "Metric",
    "NLPDIndex",
    "NLPDParams",
    "build_index",
    "check_inputs",
    "distance_matrix",
    "embedding_metric",
    "get_metric",
    "list_metrics",
    "loss_names",
    "mse",
    "mse_matrix",
    "msssim",
    "msssim_matrix",
    "n_scales",
    "nearest",
    "nlpd",
    "nlpd_levels",
    "nlpd_matrix",
    "nlpd_transform",
    "register_metric",
    "scale_weights",
    "unregister_metric",
]
