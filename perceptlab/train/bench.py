"""``perceptlab bench train``: training throughput per loss, relative to MSE.

One full training step (forward, loss, backward, AdamW) of the default
autoencoder on 128 x 128 patches, timed for each loss in the same process on
the CPU and, when present, on CUDA. The perceptual losses' cost is printed as
a ratio to the MSE step, which is what the choice of loss costs in wall time.
The patches are synthetic (smoothed noise in [0, 1] with harmonic stripes),
so no library is needed.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from perceptlab.models.autoencoder import AutoEncoder, ModelConfig, count_parameters

from .losses import ReconstructionLoss


def _patches(n: int, f: int = 128, t: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, f // 8, t // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(f, t), mode="bilinear", align_corners=False)
    rows = torch.arange(f, dtype=torch.float32)[:, None]
    stripes = 0.5 + 0.5 * torch.sin(rows / 3.0)  # (F, 1) harmonic-like bands
    return (0.6 * x + 0.4 * stripes).clamp(0, 1)  # (B, 1, F, T)


def _make_step(loss_name: str, device: torch.device, batch: int, amp: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = AutoEncoder(ModelConfig()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = ReconstructionLoss({loss_name: 1.0})
    x = _patches(batch).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            recon = model(x)
        loss = loss_fn(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _rate(step: Callable[[], None], device: torch.device, batch: int, steps: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * steps / (time.perf_counter() - t0)


def run_train_bench(steps: int = 8, batch: int = 32, rounds: int = 3,
                    out: Callable[[str], None] = print) -> dict:
    """Samples/s of a training step per loss and device; returns {device: {loss: samples/s}}.

    The losses are timed in turn, ``rounds`` times, and the best round of
    each counts, so a burst of load from other processes hits every loss
    alike instead of skewing one ratio.
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    params = count_parameters(AutoEncoder(ModelConfig()))
    out(f"perceptlab bench train: default autoencoder ({params:,} params), 128 x 128 patches, "
        f"batch {batch}, best of {rounds} rounds of {steps} steps after 2 warm-up steps; "
        f"torch threads {torch.get_num_threads()}")
    results: dict = {}
    losses = ("mse", "nlpd", "msssim")
    for dev in devices:
        cases = [(False, "fp32")] + ([(True, "amp")] if dev.type == "cuda" else [])
        for amp, tag in cases:
            key = f"{dev.type}" + ("" if tag == "fp32" else f" {tag}")
            name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
            n = steps if dev.type == "cpu" else max(steps, 20)
            fns = {loss: _make_step(loss, dev, batch, amp) for loss in losses}
            for fn in fns.values():  # warm-up: allocator, kernels, cuDNN autotuning
                fn()
                fn()
            best = {loss: 0.0 for loss in losses}
            for _ in range(rounds):
                for loss, fn in fns.items():
                    best[loss] = max(best[loss], _rate(fn, dev, batch, n))
            out(f"{key} ({name}):")
            for loss in losses:
                out(f"  {loss:<7} {best[loss]:9.1f} samples/s   step cost x{best['mse'] / best[loss]:5.2f} of MSE")
            results[key] = best
    return results
