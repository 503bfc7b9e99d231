"""Reconstruction losses: MSE, NLPD, 1 - MS-SSIM, or a weighted sum.

Each metric returns (B,) distances between (B, 1, F, T) images in [0, 1];
the loss of a batch is the weighted sum of their batch means. The metrics run
in float32 even under mixed precision (NLPD's divisive normalisation and
SSIM's variances lose too much in half precision) and with ``validate=False``
(no host synchronisation inside the step).
"""

from __future__ import annotations

from typing import Callable, Dict

import torch


def metric_fn(name: str) -> Callable[..., torch.Tensor]:
    """The distance function of a registered trainable metric (see ``Metric.trainable``)."""
    from perceptlab.metrics import get_metric, list_metrics, loss_names

    m = {m.name: m for m in list_metrics()}.get(name)
    if m is None or not m.trainable:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(loss_names())}")
    return get_metric(name).fn


class ReconstructionLoss:
    """Weighted sum of perceptual distances.

    Parameters
    ----------
    weights : dict
        {"mse" | "nlpd" | "msssim": weight}, e.g. {"nlpd": 1.0, "mse": 0.1}.
    """

    def __init__(self, weights: Dict[str, float]):
        self.weights = dict(weights)
        self.fns = {k: metric_fn(k) for k in self.weights}

    def per_sample(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) weighted distances; ``recon`` and ``target`` (B, 1, F, T)."""
        recon = recon.float()
        target = target.float()
        total = None
        for name, w in self.weights.items():
            d = self.fns[name](recon, target, validate=False) * w  # (B,)
            total = d if total is None else total + d
        return total

    def __call__(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss: the batch mean of :meth:`per_sample`."""
        return self.per_sample(recon, target).mean()


def all_metrics(recon: torch.Tensor, target: torch.Tensor) -> Dict[str, torch.Tensor]:
    """(B,) distances of a batch under every trainable metric whose size limit the patches meet
    (validation reports them all: MSE, NLPD and 1 - MS-SSIM today)."""
    from perceptlab.metrics import list_metrics

    recon = recon.float()
    target = target.float()
    side = min(target.shape[-2], target.shape[-1])
    return {m.name: m.fn(recon, target, validate=False) for m in list_metrics()
            if m.trainable and side >= m.min_side}


def mse_scale(recon: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """The factor that brings ``loss`` (a batch's reconstruction loss) to the size of the
    batch's MSE, with no gradient through it.

    ``loss * mse_scale(...)`` has the gradient of ``loss`` (its direction: what
    the loss asks of the reconstruction) at the size an MSE loss would have, so
    a weight set against it (the view-agreement term's) means the same for
    every loss. For an MSE loss the factor is 1.
    """
    with torch.no_grad():
        mse = torch.mean((recon.float() - target.float()) ** 2)
        return mse / loss.detach().clamp_min(torch.finfo(torch.float32).tiny)


def view_agreement(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE loss that pulls two views of the same clip together.

    ``a[i]`` and ``b[i]`` are embeddings of two patches of the same clip (two
    random crops, each at its own level); every other patch of the batch is a
    negative. The embeddings are centred on the batch mean and scaled to unit
    length, so the loss sees directions (what cosine distance compares), and
    the scores are divided by ``temperature``. Computed in float32.

    Parameters
    ----------
    a, b : torch.Tensor
        (N, D) embeddings, N >= 2.

    Returns
    -------
    torch.Tensor
        Scalar: mean cross-entropy of picking each patch's partner among the
        other 2N - 1 patches (log(2N - 1) for embeddings that carry nothing).
    """
    e = torch.cat([a, b]).float()
    e = torch.nn.functional.normalize(e - e.mean(0, keepdim=True), dim=1)
    sim = e @ e.T / temperature
    sim = sim.masked_fill(torch.eye(len(e), dtype=torch.bool, device=e.device), float("-inf"))
    n = a.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(e.device)
    return torch.nn.functional.cross_entropy(sim, partner)
