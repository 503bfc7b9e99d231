"""Checkpoints and run records of a training run.

:class:`RunRecordsMixin` holds the methods of the loop's run
(``perceptlab.train.loop._Run``) that touch what outlives the process: the
checks before a resume (config, training clips, kind of checkpoint), the
run's row in the library (a convenience: never a reason to fail training),
and ``last.pt`` / ``best.pt``, written only by rank 0 from a consistent
state. The mixin reads the run's attributes (``cfg``, ``dist``, ``device``,
``state``, ``core``, ``opt``, ``sched``, ``scaler``, ``data_desc``, paths).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from perceptlab.models.checkpoint import (
    CheckpointError,
    inference_view,
    model_key,
    new_checkpoint,
    rng_state,
    save_checkpoint,
)

from .config import RESUMABLE_CHANGES, ConfigError, TrainConfig, config_diff
from .data import DataError, TrainingData, embedding_stats


def _with_defaults(saved: dict, defaults: dict) -> dict:
    """``saved`` with every key it lacks taken from ``defaults`` (nested tables too)."""
    out = dict(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict) and key != "loss":
            out[key] = _with_defaults(out[key], value)
    return out


class RunRecordsMixin:
    """Resume checks, the library's run record and the checkpoints of a run."""

    # -- resume and the run record -------------------------------------------
    def _check_resume(self, ckpt: dict, path: Path, data: TrainingData) -> None:
        # Keys added to the config since the checkpoint was written count as their defaults.
        defaults = TrainConfig().to_dict()
        # ... except the model's pooling: runs saved before it was recorded used the global mean.
        defaults["model"].update(pooling="global", embed_from=["latent"])
        saved = _with_defaults(ckpt["train_config"], defaults)
        diff = [k for k in config_diff(saved, self.cfg.to_dict()) if k not in RESUMABLE_CHANGES]
        if diff:
            raise ConfigError(
                f"{path}: cannot resume: the config differs from the checkpoint's in {', '.join(diff)} "
                f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
            )
        old = (ckpt.get("data") or {}).get("selection_hash")
        if old != data.selection_hash:
            raise DataError(
                f"{path}: cannot resume: the training clips differ from the checkpoint's "
                f"(selection {old} vs {data.selection_hash}); the library changed since the run started"
            )
        if "optimizer" not in ckpt or "rng" not in ckpt:
            raise CheckpointError(f"{path}: is a weights-only ('best') checkpoint; resume from last.pt")

    def _record_run(self, data: TrainingData, resumed_run: int | None) -> None:
        if not self.dist.is_main:
            return
        try:
            from perceptlab.library.store import Library

            with Library(data.library) as lib:
                if resumed_run is not None and any(r["id"] == resumed_run for r in lib.runs()):
                    self.run_id = resumed_run
                    lib.update_run(resumed_run, status="running", ended_at=None, error=None,
                                   config=self.cfg.to_dict())
                else:
                    self.run_id = lib.add_run(self.cfg.name, self.cfg.to_dict(), str(self.out.resolve()))
        except Exception:  # the run record is a convenience; never fail training for it
            self.run_id = None

    # -- checkpoints -------------------------------------------------------------
    def _checkpoint(self, kind: str) -> dict:
        st = self.state
        ck = new_checkpoint(
            self.model_cfg_dict, self.core.state_dict(), self.cfg.features.to_dict(), self.cfg.to_dict(),
            kind="last",
            data=self.data_desc,
            progress={
                "epoch": st["epoch"], "epoch_step": st["epoch_step"], "global_step": st["global_step"],
                "epoch_loss_sum": self._epoch_sum(), "epoch_loss_count": st["epoch_loss_count"],
                "epoch_recon_sum": self._epoch_recon_sum(),
                "wall_s": st["wall_s"] + (time.perf_counter() - self.t_session),
            },
            metrics={"best_val_loss": st["best"], "best_epoch": st["best_epoch"], "history": st["history"]},
            run_id=self.run_id,
            command=[str(a) for a in sys.argv],
            hardware={"device": str(self.device), "world_size": self.dist.world,
                      "name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"},
            optimizer=self.opt.state_dict(),
            scheduler=self.sched.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            rng=rng_state(),
        )
        return inference_view(ck) if kind == "best" else ck

    def _save(self, kind: str) -> str | None:
        if not self.dist.is_main:
            return None
        path = self.best_path if kind == "best" else self.last_path
        ck = self._checkpoint(kind)
        if kind == "best":
            ck["embedding_stats"] = self._embedding_stats()
            ck["model_hash"] = model_key(ck)
        save_checkpoint(ck, path)
        return str(path)

    def _embedding_stats(self) -> dict:
        return embedding_stats(self.core, self._data.train, self.cfg.batch_size, self.device)

    def _finish_run(self, status: str, error: str | None = None) -> None:
        """Record how the run ended (completed, cancelled or failed) with where it got to."""
        if not self.dist.is_main or self.run_id is None:
            return
        st = self.state
        try:
            from perceptlab.library.store import Library

            with Library(self.data_desc["library"]) as lib:
                lib.update_run(
                    self.run_id, status=status, ended_at=time.time(), error=error,
                    final_metrics={"best_val_loss": st["best"], "best_epoch": st["best_epoch"],
                                   "epochs": st["epoch"], "step": st["global_step"],
                                   "history": st["history"][-1:] if st["history"] else []},
                    best_checkpoint=str(self.best_path.resolve()) if self.best_path.exists() else None,
                    last_checkpoint=str(self.last_path.resolve()) if self.last_path.exists() else None,
                )
        except Exception:  # the run record is a convenience; never fail training for it
            pass
