"""The NLPD engine's per-clip transform: every clip's normalised Laplacian pyramid, once.

:func:`_nlpd_coefficients` gives the flattened coefficients per level, in
chunks of clips sized to a memory budget; :func:`perceptlab.metrics.pairwise.nlpd_matrix`
compares them by one float64 GEMM per level and
:class:`~perceptlab.metrics.pairwise.NLPDIndex` caches them for queries; all
three take the normalisation's parameters (``params``, a calibrated
variant's :class:`~perceptlab.metrics.pyramid.NLPDParams`).
"""

from __future__ import annotations

from typing import List, Optional

import torch

from .pairwise_blocks import _budget_rows, _chunks, _Steps
from .pyramid import N_LEVELS, NLPDParams, nlpd_transform


def _nlpd_coefficients(
    x: torch.Tensor,
    budget_bytes: int,
    steps: Optional[_Steps] = None,
    chunk: Optional[int] = None,
    params: Optional[NLPDParams] = None,
) -> List[torch.Tensor]:
    """Flattened normalised pyramid of every clip: 6 tensors (N, F_k * T_k).

    ``params`` are the normalisation's sigmas and taps (a calibrated
    variant); None: the published values, by the same path as
    :func:`~perceptlab.metrics.pyramid.nlpd_transform` without them.
    """
    n = x.shape[0]
    if chunk is None:
        # The transform keeps ~12 image-sized temporaries alive per clip.
        chunk = _nlpd_chunk(x, budget_bytes)
    levels: List[List[torch.Tensor]] = [[] for _ in range(N_LEVELS)]
    with torch.no_grad():
        for i0, i1 in _chunks(n, chunk):
            for k, c in enumerate(nlpd_transform(x[i0:i1], params, validate=False)):
                levels[k].append(c.reshape(i1 - i0, -1))  # (b, F_k*T_k)
            if steps is not None:
                steps.step()
    return [torch.cat(parts, 0) if len(parts) > 1 else parts[0] for parts in levels]


def _nlpd_chunk(x: torch.Tensor, budget_bytes: int) -> int:
    per_clip = 12 * x.shape[-2] * x.shape[-1] * x.element_size()
    return _budget_rows(budget_bytes, per_clip, x.shape[0])

