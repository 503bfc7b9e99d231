"""Training progress: JSON lines for programs, a progress bar for people.

Every event is a dict with ``"event"`` (its kind) and ``"time"`` (unix
seconds); the kinds and their fields are listed in ``training/README.md``
and in :data:`EVENTS`. :class:`JsonLinesReporter` writes one compact JSON
object per line and flushes, so a reader (the GUI's QProcess) sees each event
at once. Non-finite floats are written as ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, TextIO

from perceptlab.jsonable import jsonable
from perceptlab.progress_text import bar_text, duration_text

#: Event kinds and the fields each one always carries (besides event, time).
EVENTS = {
    "loading": ("done", "total"),
    "start": ("run", "device", "world_size", "amp", "n_train", "n_val", "n_train_clips", "n_val_clips",
              "params", "steps_per_epoch", "total_steps", "epoch", "step", "resumed_from", "out_dir",
              "library", "fingerprint", "skipped", "config"),
    "step": ("epoch", "step", "epoch_step", "steps_per_epoch", "train_loss", "samples_per_s", "eta_s", "lr"),
    "epoch": ("epoch", "step", "train_loss", "val_loss", "val_metrics", "best", "checkpoint", "best_checkpoint",
              "elapsed_s"),
    "interrupted": ("epoch", "step", "signal", "checkpoint"),
    "done": ("epochs", "step", "best_val_loss", "best_epoch", "best", "last", "elapsed_s", "stopped"),
    "error": ("message", "kind"),
}
#: Fields some events carry only sometimes. A run with view agreement (``contrastive > 0``)
#: trains on more than the reconstruction loss, so its steps also report that loss alone
#: (``recon_loss``, in the units validation reports) beside the objective (``train_loss``),
#: and each epoch its mean over the epoch (``train_recon_loss``, also in the history).
OPTIONAL = {"step": ("recon_loss",), "epoch": ("train_recon_loss",)}


class Reporter:
    """Receives events; subclasses render them."""

    def emit(self, event: str, **fields) -> dict:
        obj = {"event": event, "time": round(time.time(), 3), **fields}
        obj = jsonable(obj)
        self.write(obj)
        return obj

    def write(self, obj: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class NullReporter(Reporter):
    """For DDP ranks other than 0."""

    def write(self, obj: dict) -> None:
        pass


class CallbackReporter(Reporter):
    """Hands each event dict to a callable (in-process use, tests)."""

    def __init__(self, fn: Callable[[dict], None]):
        self.fn = fn

    def write(self, obj: dict) -> None:
        self.fn(obj)


class JsonLinesReporter(Reporter):
    """One JSON object per line on ``stream`` (stdout by default), flushed."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def write(self, obj: dict) -> None:
        self.stream.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self.stream.flush()


def _fmt_s(s) -> str:
    return "?" if s is None else duration_text(s)


def _loss_text(weights: dict) -> str:
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(weights))
    return " + ".join(f"{w:g} {k}" for k, w in weights.items())


def _num(v, fmt=".4g") -> str:
    return "-" if v is None else format(v, fmt)


class BarReporter(Reporter):
    """A human-readable progress bar (used when stdout is a terminal)."""

    def __init__(self, stream: TextIO | None = None, width: int = 28):
        self.stream = stream or sys.stdout
        self.width = width
        self.total_epochs = 0
        self._open_line = False

    def _line(self, text: str) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def write(self, obj: dict) -> None:
        kind = obj["event"]
        if kind == "loading":
            done, total = obj["done"], obj["total"]
            self.stream.write(f"\rloading clips {done}/{total}")
            self._open_line = done < total
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
        elif kind == "start":
            cfg = obj["config"]
            self.total_epochs = cfg["epochs"]
            resumed = f", resumed from {obj['resumed_from']}" if obj.get("resumed_from") else ""
            self._line(
                f"training {obj['run']} on {obj['device']} (x{obj['world_size']}{', amp' if obj['amp'] else ''}): "
                f"{obj['n_train']} train / {obj['n_val']} val patches from {obj['n_train_clips']} / "
                f"{obj['n_val_clips']} clips, {obj['params']:,} params, loss {_loss_text(cfg['loss'])}{resumed}"
            )
            if obj.get("skipped"):
                self._line(f"  left out {len(obj['skipped'])} clips, e.g. {obj['skipped'][0]['path']}: "
                           f"{obj['skipped'][0]['reason']}")
        elif kind == "step":
            frac = obj["epoch_step"] / max(1, obj["steps_per_epoch"])
            self.stream.write(
                f"\repoch {obj['epoch']}/{self.total_epochs} {bar_text(frac, self.width)} "
                f"loss {_num(obj['train_loss'])}"
                + (f" (reconstruction {_num(obj['recon_loss'])})" if obj.get("recon_loss") is not None else "")
                + f" lr {_num(obj['lr'], '.2e')} "
                f"{_num(obj['samples_per_s'], '.0f')} samples/s eta {_fmt_s(obj['eta_s'])}   "
            )
            self._open_line = True
            self.stream.flush()
        elif kind == "epoch":
            mark = " *best*" if obj["best"] else ""
            self._line(
                f"epoch {obj['epoch']}/{self.total_epochs}: train {_num(obj['train_loss'])} "
                + (f"(reconstruction {_num(obj['train_recon_loss'])}) "
                   if obj.get("train_recon_loss") is not None else "")
                + f"val {_num(obj['val_loss'])}{mark} ({_fmt_s(obj['elapsed_s'])})"
            )
        elif kind == "interrupted":
            self._line(f"interrupted by {obj['signal']} at step {obj['step']}; saved {obj['checkpoint']} "
                       "(continue with --resume)")
        elif kind == "done":
            self._line(f"done in {_fmt_s(obj['elapsed_s'])}: best val loss {_num(obj['best_val_loss'])} "
                       f"(epoch {obj['best_epoch']}) -> {obj['best']}")
            if obj.get("stopped"):
                self._line(f"  {obj['stopped']}")
            elif obj.get("best_epoch") is not None and obj["best_epoch"] == obj["epochs"]:
                self._line(f"  warning: the best validation loss came at the last epoch ({obj['epochs']}): "
                           "the model may not have converged; train longer (--set epochs=...)")
        elif kind == "error":
            self._line(f"error: {obj['message']}")
