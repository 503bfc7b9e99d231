"""The training loop: one process, or DistributedDataParallel under torchrun.

Guarantees
----------
* Data order is a pure function of (seed, epoch) -- a DistributedSampler
  seeded per epoch, also with one process -- and the model has no other
  randomness, so ``--resume`` from ``last.pt`` (which also restores the RNG
  states, the optimizer, the schedule and the partial epoch's loss sums)
  ends where an uninterrupted run with the same seed ends.
* SIGINT / SIGTERM (or ``cancel()``) let the current step finish; then
  ``last.pt`` is written, an ``"interrupted"`` event is emitted and the run
  returns normally (exit status 0). A third signal stops at once.
* Checkpoints are written atomically, only by rank 0, only from a consistent
  state: after a finished step or epoch, never after a failed step. An error
  (bad config, no data, CUDA out of memory, NaN loss) leaves the previous
  ``last.pt`` as it was.
* ``best.pt`` holds the weights with the lowest validation loss (training
  loss when there is no validation split) and no optimizer state, so it is
  small; ``last.pt`` holds everything needed to resume.

Stop requests are :class:`~perceptlab.train.stop.StopFlag`; the resume
checks, the library's run record and the checkpoints are in
:mod:`perceptlab.train.run_records`.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from perceptlab.audio.features import mel_frequencies
from perceptlab.library.store import default_library_path
from perceptlab.models.autoencoder import AutoEncoder, count_parameters
from perceptlab.models.checkpoint import CheckpointError, load_checkpoint, set_rng_state
from perceptlab.tasks import Cancelled

from .config import ConfigError, TrainConfig
from .data import Augment, DataError, TrainingData, load_training_data
from .distributed import DistContext
from .losses import ReconstructionLoss, all_metrics, mse_scale, view_agreement
from .progress import NullReporter, Reporter
from .run_records import RunRecordsMixin
from .stop import StopFlag

#: Seconds to sleep after each step; for tests and demos that need a slow run.
STEP_DELAY_ENV = "PERCEPTLAB_STEP_DELAY_S"


class TrainError(Exception):
    """Training stopped on an error; ``kind`` is "oom", "nan" or "runtime"."""

    def __init__(self, message: str, kind: str = "runtime"):
        super().__init__(message)
        self.kind = kind


@dataclass
class TrainResult:
    status: str  # "completed" | "interrupted"
    epochs: int
    step: int
    best_val_loss: float | None
    best_epoch: int | None
    best: str | None
    last: str | None
    history: list = field(default_factory=list)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def pick_train_device(cfg: TrainConfig, dist: DistContext) -> torch.device:
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {cfg.device!r} requested but CUDA is not available here; use device = \"cpu\" or \"auto\"")
        if dist.enabled:
            return torch.device("cuda", dist.local_rank)  # one GPU per process
        dev = torch.device(want)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {want!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        # "cuda" means the current device; name it (torch.cuda.set_device refuses a device without an index).
        return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of optim.lr for the optimizer step numbered ``step`` (0-based)."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return 1.0
    span = max(1, total - o.warmup_steps)
    t = min(1.0, max(0.0, (step - o.warmup_steps) / span))
    return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


# --------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    *,
    resume: bool | str | os.PathLike = False,
    reporter: Reporter | None = None,
    cancel: Callable[[], bool] | None = None,
    handle_signals: bool = True,
) -> TrainResult:
    """Train an autoencoder as ``cfg`` says.

    Parameters
    ----------
    cfg : TrainConfig
    resume : bool or path
        True: continue from ``<out_dir>/last.pt``; a path: from that file.
    reporter : Reporter
        Receives the progress events (only rank 0 reports).
    cancel : callable, optional
        Polled after each step like a signal.
    handle_signals : bool
        Catch SIGINT/SIGTERM (main thread only) for a clean stop.

    Raises
    ------
    ConfigError, DataError, CheckpointError, TrainError
        With a message fit for the user; nothing on disk is left inconsistent.
    """
    dist = DistContext.from_env()
    rep = reporter if (reporter is not None and dist.is_main) else NullReporter()
    stop = StopFlag(cancel)
    if handle_signals:
        stop.install()
    try:
        device = pick_train_device(cfg, dist)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init(device)
        return _Run(cfg, dist, device, rep, stop).run(resume)
    finally:
        stop.restore()
        dist.shutdown()


class _Run(RunRecordsMixin):
    """One training run: set-up, the loop over epochs and steps, evaluation, stops."""

    def __init__(self, cfg: TrainConfig, dist: DistContext, device: torch.device, rep: Reporter, stop: StopFlag):
        self.cfg = cfg
        self.dist = dist
        self.device = device
        self.rep = rep
        self.stop = stop
        self.out = cfg.out_path.absolute()  # events carry absolute paths (the GUI's cwd differs)
        self.last_path = self.out / "last.pt"
        self.best_path = self.out / "best.pt"
        self.delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        self.run_id: int | None = None

    # -- setup -----------------------------------------------------------------
    def _load_data(self) -> TrainingData:
        cfg = self.cfg
        library = cfg.data.library or str(default_library_path())
        last = [0.0]

        def progress(done, total):
            now = time.monotonic()
            if done in (0, total) or now - last[0] > 0.5:
                last[0] = now
                self.rep.emit("loading", done=done, total=total)

        def load():
            return load_training_data(
                library, labels=cfg.data.labels, val_fraction=cfg.data.val_fraction,
                split_seed=cfg.data.split_seed, patch=cfg.data.patch_frames, hop=cfg.data.patch_hop,
                min_frames=cfg.min_frames, features=cfg.features, progress=progress,
                cancel=lambda: self.stop.requested,
            )

        # Rank 0 fills the feature cache first; the others then only read it.
        data = load() if self.dist.is_main else None
        self.dist.barrier()
        return data if data is not None else load()

    # -- main ------------------------------------------------------------------------
    def run(self, resume) -> TrainResult:
        cfg, dist, device = self.cfg, self.dist, self.device
        self.t_session = time.perf_counter()
        resume_path = None
        if resume:
            resume_path = Path(resume) if not isinstance(resume, bool) else self.last_path
            if not resume_path.is_file():
                raise CheckpointError(f"{resume_path}: nothing to resume (no such checkpoint)")
        elif self.last_path.exists():
            raise ConfigError(
                f"out_dir: {self.out} already holds a run (last.pt); continue it with --resume, "
                "or choose another out_dir (--set out_dir=...)"
            )
        if cfg.batch_size % dist.world:
            raise ConfigError(f"batch_size: {cfg.batch_size} is not divisible by the {dist.world} processes")

        try:
            data = self._load_data()
        except Cancelled:
            self.rep.emit("interrupted", epoch=0, step=0, signal=self.stop.signal or "cancel", checkpoint=None)
            return TrainResult("interrupted", 0, 0, None, None, None, None)
        self.data_desc = data.describe()
        self._data = data

        ckpt = None
        if resume_path is not None:
            ckpt = load_checkpoint(resume_path)
            self._check_resume(ckpt, resume_path, data)

        _seed_everything(cfg.seed)
        model = AutoEncoder(cfg.model)
        self.model_cfg_dict = cfg.model.to_dict()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"]["state_dict"])
        model.to(device)
        self.core = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        else:
            net = model

        o = cfg.optim
        self.opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        per_rank_batch = cfg.batch_size // dist.world
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(data.train, num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=False)
        steps_per_epoch = math.ceil(len(sampler) / per_rank_batch)
        total_steps = steps_per_epoch * cfg.epochs
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, total_steps, cfg))
        use_amp = cfg.amp and device.type == "cuda"
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        loss_fn = ReconstructionLoss(cfg.loss)

        st = self.state = {
            "epoch": 0, "epoch_step": 0, "global_step": 0, "epoch_loss_sum": 0.0, "epoch_loss_count": 0,
            "epoch_recon_sum": 0.0, "wall_s": 0.0, "best": None, "best_epoch": None, "history": [],
        }
        if ckpt is not None:
            p, m = ckpt["progress"], ckpt["metrics"]
            st.update({k: p[k] for k in ("epoch", "epoch_step", "global_step", "epoch_loss_sum",
                                         "epoch_loss_count", "wall_s")})
            # Older checkpoints did not keep the reconstruction part: the resumed epoch's
            # reconstruction mean then covers only its steps after the resume.
            st["epoch_recon_sum"] = float(p.get("epoch_recon_sum", 0.0))
            st.update(best=m["best_val_loss"], best_epoch=m["best_epoch"], history=list(m["history"]))
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler") and self.scaler.is_enabled():
                self.scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            self.run_id = ckpt.get("run_id")
            if not dist.is_main:  # the saved partial-epoch sums are totals over ranks: count them once
                st["epoch_loss_sum"], st["epoch_loss_count"], st["epoch_recon_sum"] = 0.0, 0, 0.0
        self._record_run(data, self.run_id if ckpt is not None else None)

        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.rep.emit(
            "start", run=cfg.name, device=str(device), world_size=dist.world, amp=use_amp,
            n_train=len(data.train), n_val=len(data.val) if data.val is not None else 0,
            n_train_clips=len(data.train_clips), n_val_clips=len(data.val_clips),
            params=count_parameters(model), steps_per_epoch=steps_per_epoch, total_steps=total_steps,
            epoch=st["epoch"], step=st["global_step"],
            resumed_from=str(resume_path) if resume_path else None, out_dir=str(self.out),
            library=data.library, fingerprint=data.fingerprint,
            skipped=[{"path": p, "reason": r} for p, r in data.skipped[:20]],
            config=cfg.to_dict(),
        )

        try:
            return self._loop(net, model, data, sampler, loss_fn, per_rank_batch, steps_per_epoch,
                              total_steps, use_amp, amp_dtype)
        except (ConfigError, DataError, CheckpointError, TrainError) as exc:
            self._finish_run("failed", error=str(exc))
            raise
        except Exception as exc:
            if _is_oom(exc):
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                msg = (f"out of memory on {device} with batch_size = {cfg.batch_size}: lower it "
                       f"(--set batch_size={max(1, cfg.batch_size // 2)})"
                       + ("" if use_amp else " or turn on amp = true") + f"; {self.last_path} was left as it was")
                self._finish_run("failed", error=msg)
                raise TrainError(msg, "oom") from None
            self._finish_run("failed", error=f"{type(exc).__name__}: {exc}")
            raise

    def _loop(self, net, model, data, sampler, loss_fn, per_rank_batch, steps_per_epoch, total_steps,
              use_amp, amp_dtype) -> TrainResult:
        cfg, dist, device, st = self.cfg, self.dist, self.device, self.state
        world_batch = per_rank_batch * dist.world
        t_train = 0.0
        steps_this_session = 0
        stop_flag = torch.zeros(1, device=device)
        self.epoch_acc = torch.zeros(2, dtype=torch.float64, device=device)  # objective, reconstruction
        d = cfg.data
        augment = Augment(d.augment_shift, d.augment_gain_db, cfg.features.db_ceiling - cfg.features.db_floor,
                          transpose=d.augment_transpose, band_hz=mel_frequencies(cfg.features))
        # A resumed run that had already stopped (early stop, time budget) stays stopped.
        stopped_because = self._stop_reason() if st["epoch"] else None
        while st["epoch"] < cfg.epochs and not stopped_because:
            epoch = st["epoch"]  # 0-based index of the epoch in progress
            sampler.set_epoch(epoch)
            order = list(iter(sampler))
            batches = [order[i : i + per_rank_batch] for i in range(0, len(order), per_rank_batch)]
            log_sum = torch.zeros((), dtype=torch.float64, device=device)
            log_recon = torch.zeros((), dtype=torch.float64, device=device)  # the loss alone, in its units
            log_n = 0
            t_log = time.perf_counter()
            net.train()
            for b in range(st["epoch_step"], len(batches)):
                t0 = time.perf_counter()
                # The augmentation draws depend only on (seed, epoch, step, rank): a resumed
                # run sees the same patches as an uninterrupted one.
                rng = np.random.default_rng([cfg.seed % 2**63, epoch, b, dist.rank]) if augment.active else None
                x = data.train.batch(batches[b], augment, rng)  # (B, 1, F, T)
                if cfg.contrastive:
                    views_rng = np.random.default_rng([cfg.seed % 2**63, epoch, b, dist.rank, 1])
                    x = torch.cat([x, data.train.other_views(batches[b], augment, views_rng)])
                x = x.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    if cfg.contrastive:
                        recon, emb = net(x, return_embedding=True)
                    else:
                        recon = net(x)  # (B, 1, F, T)
                loss = recon_loss = loss_fn(recon, x)
                if cfg.contrastive:
                    if cfg.contrastive_scale == "mse":
                        loss = loss * mse_scale(recon, x, loss)
                    n = x.shape[0] // 2
                    loss = loss + cfg.contrastive * view_agreement(emb[:n], emb[n:], cfg.contrastive_temperature)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.optim.grad_clip > 0:
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                self.scaler.step(self.opt)
                self.scaler.update()
                self.step_lr = self.opt.param_groups[0]["lr"]  # the rate this step used
                self.sched.step()
                if self.delay:
                    time.sleep(self.delay)
                loss_d = loss.detach().double() * x.shape[0]
                recon_d = recon_loss.detach().double() * x.shape[0]
                log_sum += loss_d
                log_recon += recon_d
                log_n += x.shape[0]
                self.epoch_acc += torch.stack([loss_d, recon_d])  # stays on the device: no sync per step
                st["epoch_loss_count"] += x.shape[0]
                st["epoch_step"] = b + 1
                st["global_step"] += 1
                steps_this_session += 1
                t_train += time.perf_counter() - t0

                stop_flag.fill_(1.0 if self.stop.requested else 0.0)
                stopping = bool(dist.sum_(stop_flag).item() > 0) if dist.enabled else self.stop.requested
                last_in_epoch = b + 1 == len(batches)
                if st["global_step"] % cfg.log_every == 0 or b == 0 or (stopping and not last_in_epoch):
                    self._log_step(log_sum, log_recon, log_n, t_log, world_batch, t_train, steps_this_session,
                                   total_steps, steps_per_epoch, epoch)
                    log_sum = torch.zeros((), dtype=torch.float64, device=device)
                    log_recon = torch.zeros((), dtype=torch.float64, device=device)
                    log_n = 0
                    t_log = time.perf_counter()
                if stopping and not last_in_epoch:
                    return self._interrupt()
            # -- end of epoch ---------------------------------------------------------
            self._end_epoch(model, data, loss_fn, use_amp, amp_dtype)
            # Under DDP every rank must take part in the vote, so no short cut.
            if self._any_stop(stop_flag) if dist.enabled else self.stop.requested:
                return self._interrupt()
            stopped_because = self._stop_reason()
            if stopped_because:
                break
        best_val = st["best"]
        self.rep.emit("done", epochs=st["epoch"], step=st["global_step"], best_val_loss=best_val,
                      best_epoch=st["best_epoch"], best=str(self.best_path), last=str(self.last_path),
                      elapsed_s=round(st["wall_s"] + time.perf_counter() - self.t_session, 3),
                      stopped=stopped_because)
        self._finish_run("completed")
        return TrainResult("completed", st["epoch"], st["global_step"], best_val, st["best_epoch"],
                           str(self.best_path), str(self.last_path), st["history"])

    def _stop_reason(self) -> str | None:
        """Why training ends before ``epochs`` (early stopping, time budget), or None.

        Decided from numbers every rank shares (the history and the epoch
        count; the elapsed time is rank 0's, broadcast by the sum), so all
        ranks stop at the same epoch.
        """
        cfg, st = self.cfg, self.state
        if st["epoch"] >= cfg.epochs:
            return None
        if cfg.patience and st["best_epoch"] is not None and st["epoch"] - st["best_epoch"] >= cfg.patience:
            return (f"early stop: no better validation loss for {cfg.patience} epochs "
                    f"(best at epoch {st['best_epoch']})")
        if cfg.max_minutes:
            elapsed = st["wall_s"] + time.perf_counter() - self.t_session
            t = torch.tensor([elapsed if self.dist.is_main else 0.0], dtype=torch.float64)
            if self.dist.enabled:
                t = self.dist.sum_(t.to(self.device)).cpu()
            if float(t[0]) >= cfg.max_minutes * 60:
                return f"time budget: {cfg.max_minutes:g} min of training reached at epoch {st['epoch']}"
        return None

    def _epoch_sum(self) -> float:
        """This rank's loss sum over the epoch in progress (resumed part included)."""
        acc = getattr(self, "epoch_acc", None)
        return self.state["epoch_loss_sum"] + (float(acc[0]) if acc is not None else 0.0)

    def _epoch_recon_sum(self) -> float:
        """The same for the reconstruction loss alone (differs from the loss with view agreement)."""
        acc = getattr(self, "epoch_acc", None)
        return self.state["epoch_recon_sum"] + (float(acc[1]) if acc is not None else 0.0)

    def _any_stop(self, flag) -> bool:
        flag.fill_(1.0 if self.stop.requested else 0.0)
        return bool(self.dist.sum_(flag).item() > 0)

    def _log_step(self, log_sum, log_recon, log_n, t_log, world_batch, t_train, steps_done, total_steps,
                  steps_per_epoch, epoch) -> None:
        st = self.state
        n = torch.tensor(float(log_n), dtype=torch.float64, device=log_sum.device)
        loss_mean = self.dist.sum_(torch.stack([log_sum, n, log_recon]))
        train_loss = float(loss_mean[0] / loss_mean[1].clamp_min(1))
        # With view agreement the objective is not the loss validation reports: the step also
        # says the reconstruction loss alone, which the training curve sets beside validation.
        extra = {"recon_loss": float(loss_mean[2] / loss_mean[1].clamp_min(1))} if self.cfg.contrastive else {}
        if not math.isfinite(train_loss):
            raise TrainError(
                f"the training loss became {train_loss} at step {st['global_step']}; lower optim.lr "
                f"(now {self.cfg.optim.lr:g}) or turn amp off. {self.last_path} was left as it was", "nan")
        elapsed = max(1e-9, time.perf_counter() - t_log)
        remaining = total_steps - st["global_step"]
        eta = remaining * t_train / max(1, steps_done)
        self.rep.emit(
            "step", epoch=epoch + 1, step=st["global_step"], epoch_step=st["epoch_step"],
            steps_per_epoch=steps_per_epoch, train_loss=train_loss,
            samples_per_s=round(float(loss_mean[1]) / elapsed, 2), eta_s=round(eta, 1),
            lr=self.step_lr, **extra,
        )

    def _evaluate(self, model, data, loss_fn, use_amp, amp_dtype) -> tuple[float | None, dict]:
        if data.val is None:
            return None, {}
        dist, device = self.dist, self.device
        idx = list(range(dist.rank, len(data.val), dist.world))
        bs = self.cfg.batch_size
        names = None
        sums = None
        model.eval()
        with torch.no_grad():
            for i in range(0, len(idx), bs):
                x = data.val.batch(idx[i : i + bs]).to(device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    recon = model(x)
                mets = all_metrics(recon, x)
                names = ["loss"] + list(mets)
                vals = torch.stack([loss_fn.per_sample(recon, x).sum()] + [v.sum() for v in mets.values()]
                                   + [torch.tensor(float(x.shape[0]), device=device)])
                sums = vals if sums is None else sums + vals
        model.train()
        if names is None:  # this rank got no validation patches: the names the others sum (all_metrics)
            from perceptlab.metrics import list_metrics

            side = min(self.cfg.features.n_mels, data.val.patch)
            names = ["loss"] + [m.name for m in list_metrics() if m.trainable and side >= m.min_side]
            sums = torch.zeros(len(names) + 1, device=device)
        sums = self.dist.sum_(sums.double()).cpu()
        n = max(1.0, float(sums[-1]))
        out = {k: float(sums[i]) / n for i, k in enumerate(names)}
        return out.pop("loss"), out

    def _end_epoch(self, model, data, loss_fn, use_amp, amp_dtype) -> None:
        st = self.state
        local = torch.tensor([self._epoch_sum(), float(st["epoch_loss_count"]), self._epoch_recon_sum()],
                             dtype=torch.float64)
        if self.device.type != "cpu" or self.dist.enabled:
            local = local.to(self.device)
        tot = self.dist.sum_(local).cpu()
        train_loss = float(tot[0] / max(1.0, float(tot[1])))
        # With view agreement, the reconstruction loss alone, comparable with validation.
        extra = {"train_recon_loss": float(tot[2] / max(1.0, float(tot[1])))} if self.cfg.contrastive else {}
        if not math.isfinite(train_loss):
            raise TrainError(
                f"the training loss became {train_loss} in epoch {st['epoch'] + 1}; lower optim.lr. "
                f"{self.last_path} was left as it was", "nan")
        val_loss, val_metrics = self._evaluate(model, data, loss_fn, use_amp, amp_dtype)
        score = val_loss if val_loss is not None else train_loss
        st["epoch"] += 1
        st["epoch_step"] = 0
        st["epoch_loss_sum"] = 0.0
        st["epoch_loss_count"] = 0
        st["epoch_recon_sum"] = 0.0
        self.epoch_acc.zero_()
        is_best = st["best"] is None or score < st["best"]
        if is_best:
            st["best"] = score
            st["best_epoch"] = st["epoch"]
        elapsed = round(st["wall_s"] + time.perf_counter() - self.t_session, 3)
        st["history"].append({"epoch": st["epoch"], "step": st["global_step"], "train_loss": train_loss, **extra,
                              "val_loss": val_loss, "val_metrics": val_metrics, "elapsed_s": elapsed})
        if is_best:
            self._save("best")
        last = self._save("last")
        self.rep.emit("epoch", epoch=st["epoch"], step=st["global_step"], train_loss=train_loss, **extra,
                      val_loss=val_loss, val_metrics=val_metrics, best=is_best, checkpoint=last,
                      best_checkpoint=str(self.best_path), elapsed_s=elapsed)

    def _interrupt(self) -> TrainResult:
        st = self.state
        st["epoch_loss_sum"], st["epoch_recon_sum"] = self._epoch_sum(), self._epoch_recon_sum()
        self.epoch_acc.zero_()
        if self.dist.enabled:  # every rank stopped at the same step; agree on the partial sums
            t = torch.tensor([st["epoch_loss_sum"], float(st["epoch_loss_count"]), st["epoch_recon_sum"]],
                             dtype=torch.float64, device=self.device)
            t = self.dist.sum_(t).cpu()
            # Rank 0 saves the totals; the shards' split is irrelevant after a resume.
            st["epoch_loss_sum"], st["epoch_loss_count"], st["epoch_recon_sum"] = float(t[0]), int(t[1]), float(t[2])
        if not math.isfinite(st["epoch_loss_sum"]):
            raise TrainError(f"the training loss is not finite at step {st['global_step']}; "
                             f"{self.last_path} was left as it was", "nan")
        last = self._save("last")
        self.rep.emit("interrupted", epoch=st["epoch"] + (1 if st["epoch_step"] else 0), step=st["global_step"],
                      signal=self.stop.signal or "cancel", checkpoint=last)
        self._finish_run("cancelled")
        return TrainResult("interrupted", st["epoch"], st["global_step"], st["best"], st["best_epoch"],
                           str(self.best_path) if self.best_path.exists() else None, last, st["history"])
