"""``perceptlab bench train``: training throughput per loss, relative to MSE.

One full training step (forward, loss, backward, gradient clipping, AdamW)
of the default autoencoder on 128 x 128 patches, timed for each loss in the
same process on the CPU and, when present, on CUDA. The perceptual losses'
cost is printed as a ratio to the MSE step, which is what the choice of loss
costs in wall time. The patches are synthetic (smoothed noise in [0, 1] with
harmonic stripes), so no library is needed.

A step is taken as :mod:`perceptlab.train.loop` takes it: autocast (when
asked) around the model only, the loss in float32 outside it, a gradient
scaler only for float16. :func:`measure` runs one (loss, device, precision,
compiled or not) case and keeps every loss value, so callers can check that
they stayed finite; ``perceptlab bench train --device cuda``
(:mod:`.gpu_check`) builds on it.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from perceptlab.models.autoencoder import AutoEncoder, ModelConfig, count_parameters

from perceptlab.metrics import loss_names

from .losses import ReconstructionLoss



def _patches(n: int, f: int = 128, t: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, f // 8, t // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(f, t), mode="bilinear", align_corners=False)
    rows = torch.arange(f, dtype=torch.float32)[:, None]
    stripes = 0.5 + 0.5 * torch.sin(rows / 3.0)  # (F, 1) harmonic-like bands
    return (0.6 * x + 0.4 * stripes).clamp(0, 1)  # (B, 1, F, T)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype of training on ``device``.

    On CUDA the loop's rule: bfloat16 where the GPU has it, else float16
    (with loss scaling). On the CPU, autocast's own choice, bfloat16.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


class TrainStep:
    """One training step with one loss, callable; returns the (detached) loss.

    Parameters
    ----------
    loss_name : str
        "mse", "nlpd" or "msssim".
    device : torch.device
    batch : int
        Patches per step.
    amp : bool
        Autocast the model in :func:`amp_dtype`; the loss stays float32.
    model : nn.Module, optional
        The module to train (e.g. a ``torch.compile`` of an autoencoder, shared
        between losses so it compiles once); default a fresh autoencoder of
        ``model_config`` on ``device``. Each step object has its own optimizer.
    model_config : ModelConfig
        The patch size (and the model when ``model`` is None); default the
        default autoencoder on 128 x 128 patches.
    grad_clip : float
        Gradient-norm clipping as ``optim.grad_clip`` (0 turns it off).

    Every loss value is kept on the device in :attr:`losses` (no host
    synchronisation per step); :attr:`recon_dtype` and :attr:`loss_dtype`
    record the dtypes of the first step.
    """

    def __init__(self, loss_name: str, device: torch.device, batch: int, amp: bool,
                 model: torch.nn.Module | None = None, grad_clip: float = 1.0,
                 model_config: ModelConfig = ModelConfig()):
        torch.manual_seed(0)
        self.name = loss_name
        self.device = device
        self.amp = amp
        self.dtype = amp_dtype(device)
        self.model = model if model is not None else AutoEncoder(model_config).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda"
                                           and self.dtype == torch.float16)
        self.loss_fn = ReconstructionLoss({loss_name: 1.0})
        self.grad_clip = grad_clip
        self.x = _patches(batch, model_config.n_mels, model_config.patch_frames).to(device)  # (B, 1, F, T)
        self.losses: list[torch.Tensor] = []
        self.recon_dtype: torch.dtype | None = None
        self.loss_dtype: torch.dtype | None = None

    def __call__(self) -> torch.Tensor:
        x = self.x
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.amp):
            recon = self.model(x)  # (B, 1, F, T)
        loss = self.loss_fn(recon, x)  # float32 whatever recon's dtype
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.recon_dtype is None:
            self.recon_dtype, self.loss_dtype = recon.dtype, loss.dtype
        loss = loss.detach()
        self.losses.append(loss)
        return loss

    def not_finite(self) -> str | None:
        """None when every loss so far is finite, else what went wrong and where."""
        if not self.losses:
            return None
        vals = torch.stack(self.losses).double().cpu()
        bad = (~torch.isfinite(vals)).nonzero().flatten()
        if not len(bad):
            return None
        i = int(bad[0])
        return (f"the {self.name} loss became {float(vals[i])} at step {i + 1} of {len(vals)} "
                f"({len(bad)} non-finite value{'s' if len(bad) > 1 else ''})")


def _make_step(loss_name: str, device: torch.device, batch: int, amp: bool) -> Callable[[], torch.Tensor]:
    return TrainStep(loss_name, device, batch, amp)


def _rate(step: Callable[[], object], device: torch.device, batch: int, steps: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * steps / (time.perf_counter() - t0)


def measure(steps_by_loss: dict[str, TrainStep], *, steps: int, rounds: int = 1, warmup: int = 2) -> dict:
    """Best samples/s of each step over ``rounds`` rounds of ``steps`` steps.

    The losses are timed in turn, round after round, and the best round of
    each counts, so a burst of load from other processes hits every loss
    alike instead of skewing one ratio. ``warmup`` untimed steps come first
    (allocator, kernels, cuDNN autotuning; the compile of a compiled model).
    Returns {loss: {"samples_per_s", "steps", "not_finite", "warmup_s",
    "recon_dtype", "loss_dtype"}}; ``not_finite`` is None or what went wrong.
    """
    fns = dict(steps_by_loss)
    warm = {}
    for loss, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        if fn.device.type == "cuda":
            torch.cuda.synchronize(fn.device)
        warm[loss] = time.perf_counter() - t0
    best = {loss: 0.0 for loss in fns}
    for _ in range(rounds):
        for loss, fn in fns.items():
            best[loss] = max(best[loss], _rate(fn, fn.device, fn.x.shape[0], steps))
    return {loss: {"samples_per_s": best[loss], "steps": len(fn.losses), "not_finite": fn.not_finite(),
                   "warmup_s": warm[loss],
                   "recon_dtype": str(fn.recon_dtype).replace("torch.", ""),
                   "loss_dtype": str(fn.loss_dtype).replace("torch.", "")}
            for loss, fn in fns.items()}


def bench_devices(device: str = "auto") -> list[torch.device]:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (the CPU, and CUDA when present)."""
    if device == "cpu":
        return [torch.device("cpu")]
    if device == "cuda":
        return [torch.device("cuda")]
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def run_train_bench(steps: int = 8, batch: int = 32, rounds: int = 3,
                    out: Callable[[str], None] = print, device: str = "auto") -> dict:
    """Samples/s of a training step per loss and device; returns {device: {loss: samples/s}}.

    ``device``: see :func:`bench_devices`. On CUDA the step is also timed
    under autocast (``"cuda amp"``).
    """
    devices = bench_devices(device)
    params = count_parameters(AutoEncoder(ModelConfig()))
    out(f"perceptlab bench train: default autoencoder ({params:,} params), 128 x 128 patches, "
        f"batch {batch}, best of {rounds} rounds of {steps} steps after 2 warm-up steps; "
        f"torch threads {torch.get_num_threads()}")
    results: dict = {}
    for dev in devices:
        cases = [(False, "fp32")] + ([(True, "amp")] if dev.type == "cuda" else [])
        for amp, tag in cases:
            key = f"{dev.type}" + ("" if tag == "fp32" else f" {tag}")
            name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
            n = steps if dev.type == "cpu" else max(steps, 20)
            fns = {loss: _make_step(loss, dev, batch, amp) for loss in loss_names()}
            res = measure(fns, steps=n, rounds=rounds, warmup=2)
            best = {loss: res[loss]["samples_per_s"] for loss in loss_names()}
            out(f"{key} ({name}):")
            for loss in loss_names():
                note = f"   {res[loss]['not_finite']}" if res[loss]["not_finite"] else ""
                out(f"  {loss:<7} {best[loss]:9.1f} samples/s   step cost x{best['mse'] / best[loss]:5.2f} of MSE{note}")
            results[key] = best
    return results
