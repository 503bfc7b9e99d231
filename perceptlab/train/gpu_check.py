"""``perceptlab bench train --device cuda``: a five-minute check that a GPU trains.

(One module over 700 lines on purpose: the four checks share their time
budget, subprocess handling and report, and are read and run as one unit on
the GPU machine.)

Four checks, each reported as ok, failed or skipped, in one process that
owns one GPU:

``throughput``
    Training steps of the default autoencoder with each loss (mse, nlpd,
    msssim): on the CPU in float32 (the reference, measured in the same
    process) and on the GPU in bfloat16 autocast, eager and under
    ``torch.compile``. A step is taken as :mod:`perceptlab.train.loop` takes
    it (:class:`perceptlab.train.bench.TrainStep`): autocast around the model
    only, the loss in float32. Reports samples/s and the GPU/CPU ratio; fails
    when a loss value is not finite or the loss is not float32. A compile
    that fails is skipped with its reason; the eager figures still count.
``torchrun``
    ``torchrun --standalone --nproc-per-node 1 -m perceptlab.cli train`` of a
    tiny config (bfloat16 AMP, 2 epochs) on a library of generated clips made
    in a temporary folder; it must exit 0 with a ``done`` event, finite
    losses and a readable ``last.pt``.
``nccl``
    Under torchrun, the project's :class:`~perceptlab.train.distributed.DistContext`
    joins an NCCL process group, all-reduces, and a
    DistributedDataParallel model takes a step. DistContext skips the group
    when ``WORLD_SIZE`` is 1, so the one-process training run above never
    touches NCCL; this is what does.
``oom``
    A real CUDA out-of-memory error in a real run. A run whose one step
    takes the whole library as its batch (``batch_size`` = every patch; the
    first layer's output alone is several GiB) finishes an epoch and writes
    ``last.pt``. Then this process holds all but a little of the GPU's free
    memory and the same run is started afresh and resumed: both must end
    with exit status 1, one ``"error"`` event of kind ``"oom"`` whose message
    says what to lower, no traceback, and the earlier ``last.pt`` unchanged
    and loadable. Whether the fresh run left a ``last.pt`` is reported (the
    loop writes none when no epoch finished).

Every subprocess runs under a timeout cut from one budget (270 s by default,
inside the 300 s of ``training/gpu_check.sh``), so the summary and the JSON
report always come out. Without a GPU nothing runs: :func:`no_cuda_message`
says why, and the command exits 2.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from perceptlab.metrics import loss_names
from perceptlab.models.autoencoder import AutoEncoder, ModelConfig

from .bench import TrainStep, amp_dtype, measure

GiB = 1 << 30
MiB = 1 << 20
#: Seconds the whole check may take; training/gpu_check.sh kills it at 300.
DEFAULT_BUDGET_S = 270.0

Out = Callable[[str], None]


class NoCudaDevice(RuntimeError):
    """``--device cuda`` without a GPU torch can use."""


def no_cuda_message() -> str | None:
    """None when torch sees a CUDA device, else why not, fit for the user."""
    if torch.cuda.is_available():
        return None
    built = torch.version.cuda
    why = (f"torch {torch.__version__} is built for CUDA {built} but sees no GPU" if built
           else f"torch {torch.__version__} is a CPU-only build")
    return (f"no CUDA device: {why} (torch.cuda.is_available() is False); `perceptlab bench train "
            f"--device cuda` needs one NVIDIA GPU; `--device cpu` gives the CPU figures")


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------


@dataclass
class Check:
    """The outcome of one check: problems make it fail, notes only inform."""

    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: str = ""
    skipped: bool = False
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "failed" if self.problems else "skipped" if self.skipped else "ok"

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "problems": list(self.problems), "notes": list(self.notes),
                "seconds": round(self.seconds, 2), "details": self.details}


class Stopped(Exception):
    """SIGTERM arrived (the caller's time limit): the check in progress fails, no other starts."""


class Budget:
    """One deadline for the whole check; each subprocess gets what is left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, want: float) -> float:
        """``want`` seconds, or less so that the report still fits in the budget."""
        return max(1.0, min(want, self.left() - 5.0))


@contextmanager
def _sigterm_stops(budget: Budget) -> Iterator[None]:
    """Turn SIGTERM into :class:`Stopped` and spend the budget, so the report still comes out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        budget.end = time.monotonic()
        raise Stopped(f"stopped by {signal.Signals(signum).name} (the caller's time limit)")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _guarded(name: str, fn: Callable[[], Check], budget: Budget | None, need_s: float, out: Out) -> Check:
    """Run one check; an unexpected error or a spent budget fails it instead of the whole command."""
    t0 = time.monotonic()
    if budget is not None and budget.left() < need_s:
        check = Check(name, problems=[f"not run: {max(0.0, budget.left()):.0f} s of the "
                                      f"{budget.seconds:.0f} s budget left, it needs about {need_s:.0f} s"])
    else:
        out(f"[{name}] ...")
        try:
            check = fn()
        except Stopped as exc:
            check = Check(name, problems=[str(exc)])
        except Exception as exc:  # report it as this check's failure; the others still run
            check = Check(name, problems=[f"unexpected error: {_first_line(exc)}"])
            check.details["traceback"] = traceback.format_exc(limit=8)
    check.seconds = time.monotonic() - t0
    out(f"[{name}] {check.status} in {check.seconds:.1f} s" + (f": {check.summary}" if check.summary else ""))
    for p in check.problems:
        out(f"[{name}]   FAILED: {p}")
    for n in check.notes:
        out(f"[{name}]   note: {n}")
    return check


# --------------------------------------------------------------------------
# subprocesses
# --------------------------------------------------------------------------


@dataclass
class RunOutput:
    """What a command did: ``rc`` is None when it ran past its timeout."""

    cmd: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def events(self) -> list[dict]:
        """The JSON-lines progress events on stdout (other lines are ignored)."""
        found = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                found.append(obj)
        return found

    def tail(self, n: int = 600) -> str:
        text = (self.stderr or self.stdout).strip()
        return text[-n:]


def _child_env() -> dict:
    env = dict(os.environ)
    env.pop("PERCEPTLAB_STEP_DELAY_S", None)  # a demo slow-down must not eat the budget
    return env


def run_command(cmd: list[str], timeout: float) -> RunOutput:
    """Run ``cmd`` in its own process group; past ``timeout`` the whole group is stopped.

    torchrun's workers are its children: killing only torchrun would leave
    them holding the GPU.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_child_env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return RunOutput(cmd, proc.returncode, out, err, time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        out, err = "", ""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                out, err = "", ""
        return RunOutput(cmd, None, out or "", err or "", time.monotonic() - t0)
    except BaseException:  # stopped ourselves (SIGTERM, Ctrl-C): take the group down with us
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        proc.wait()
        raise


def run_cli(args: list[str], timeout: float) -> RunOutput:
    """``perceptlab ARGS`` as a separate process."""
    return run_command([sys.executable, "-m", "perceptlab.cli", *map(str, args)], timeout)


def torchrun_cmd(module: str, args: list[str], nproc: int = 1) -> list[str]:
    """``torchrun --standalone --nproc-per-node N -m MODULE ARGS`` (torchrun is torch.distributed.run)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", module, *map(str, args)]


# --------------------------------------------------------------------------
# a tiny library and configs
# --------------------------------------------------------------------------


def make_library(root: Path, per_label: int = 4, seconds: float = 3.0) -> Path:
    """A real library of ``3 * per_label`` generated clips (harmonic tones, 3 labels)."""
    import numpy as np
    import soundfile as sf

    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    rate = 22050
    rng = np.random.default_rng(0)
    clips = root / "clips"
    for li, label in enumerate(("low", "mid", "high")):
        (clips / label).mkdir(parents=True, exist_ok=True)
        for j in range(per_label):
            n = int(rate * (seconds + 0.1 * j))
            t = np.arange(n) / rate
            f0 = 110.0 * 2 ** (li + 0.2 * j)
            y = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
            y = y * (0.4 + 0.6 * np.sin(np.pi * (0.5 + j) * t) ** 2) + 0.01 * rng.standard_normal(n)
            sf.write(str(clips / label / f"{label}_{j}.wav"), y.astype(np.float32), rate)
    path = root / "lib.sqlite"
    with Library(path) as lib:
        summary = import_files(lib, [clips])
    if len(summary.imported) != 3 * per_label:
        raise RuntimeError(f"the generated library holds {len(summary.imported)} of {3 * per_label} clips: "
                           f"{summary.failed[:3]}")
    return path


def _toml_value(v) -> str:
    return json.dumps(v)  # a JSON scalar or list of scalars is also TOML


def write_config(path: Path, cfg: dict) -> Path:
    """A TOML config file from a dict of top-level keys and ``[section]`` dicts."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_config(library: Path, out_dir: Path, device: str = "cuda") -> dict:
    """Two epochs of a 5-stage, 8-channel model on 128 x 32 patches, bfloat16 AMP, NLPD."""
    return {
        "name": "gpu-check", "epochs": 2, "batch_size": 16, "device": device, "amp": True, "seed": 0,
        "out_dir": str(out_dir), "log_every": 1, "loss": "nlpd",
        "data": {"library": str(library), "patch_frames": 32, "patch_hop": 16, "val_fraction": 0.25},
        "model": {"channels": [8, 8, 8, 8, 8], "latent_dim": 8},
        "optim": {"lr": 3e-3, "schedule": "constant", "warmup_steps": 0},
    }


def count_patches(library: Path, patch: int, hop: int) -> int:
    """Training patches of every clip (no validation split), as the loop will cut them."""
    from perceptlab.audio.features import FeatureConfig

    from .data import load_training_data

    data = load_training_data(library, labels=[], val_fraction=0.0, split_seed=0, patch=patch, hop=hop,
                              min_frames=max(1, patch // 2), features=FeatureConfig())
    return len(data.train)


def oom_config(library: Path, out_dir: Path, n_patches: int, first_activation: int,
               device: str = "cuda", patch: int = 32, n_mels: int = 128) -> dict:
    """One step per epoch over every patch, with a first layer wide enough that its
    output alone is about ``first_activation`` bytes (float32)."""
    per_channel = n_patches * (n_mels // 2) * (patch // 2) * 4
    c1 = max(8, math.ceil(first_activation / per_channel))
    return {
        "name": "gpu-check-oom", "epochs": 1, "batch_size": n_patches, "device": device, "amp": False,
        "seed": 0, "out_dir": str(out_dir), "log_every": 1, "loss": "mse",
        "data": {"library": str(library), "patch_frames": patch, "patch_hop": 1, "val_fraction": 0.0},
        "model": {"channels": [c1, 8, 8, 8, 8], "latent_dim": 8},
        "optim": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 0},
    }


# --------------------------------------------------------------------------
# judging a finished run
# --------------------------------------------------------------------------


#: torch.cuda.set_device(torch.device("cuda")) raises this: the device has no index.
NO_INDEX = "Expected a torch.device with a specified index"


def _error_event(events: list[dict]) -> dict | None:
    errs = [e for e in events if e.get("event") == "error"]
    return errs[-1] if errs else None


def judge_finished(run: RunOutput, out_dir: Path, *, device: str, epochs: int) -> tuple[list[str], dict]:
    """Problems with a run that should have completed, and what it reported."""
    from perceptlab.models.checkpoint import CheckpointError, load_checkpoint

    problems: list[str] = []
    events = run.events()
    start = next((e for e in events if e.get("event") == "start"), None)
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    steps = [e for e in events if e.get("event") == "step"]
    details: dict = {"exit_status": run.rc, "seconds": round(run.seconds, 1), "steps": len(steps)}
    if run.timed_out:
        problems.append(f"did not finish within {run.seconds:.0f} s (stopped); last output: {run.tail()}")
        return problems, details
    if run.rc != 0:
        err = _error_event(events)
        text = err["message"] if err else run.tail()
        if NO_INDEX in text + run.stderr:
            text += (" (the training loop passes a CUDA device without an index, torch.device('cuda'), "
                     "to torch.cuda.set_device, which refuses it; device = \"cuda:0\" avoids it)")
        problems.append(f"exit status {run.rc}: {text}")
    if start is None:
        problems.append("no start event on stdout")
    else:
        details.update(device=start.get("device"), world_size=start.get("world_size"), amp=start.get("amp"),
                       n_train=start.get("n_train"), total_steps=start.get("total_steps"))
        if not str(start.get("device", "")).startswith(device):
            problems.append(f"trained on {start.get('device')}, not {device}")
    if done is None:
        if run.rc == 0:
            problems.append("exit status 0 but no done event: the run did not finish")
    else:
        details.update(epochs=done.get("epochs"), final_step=done.get("step"), best_val_loss=done.get("best_val_loss"))
    bad = [e["step"] for e in steps if not isinstance(e.get("train_loss"), (int, float))
           or not math.isfinite(e["train_loss"])]
    if bad:
        problems.append(f"the training loss was not finite at step(s) {bad[:5]}")
    if steps:
        details["last_train_loss"] = steps[-1].get("train_loss")
    last = out_dir / "last.pt"
    try:
        ck = load_checkpoint(last)
        details["last_pt_epoch"] = ck["progress"]["epoch"]
        if ck["progress"]["epoch"] != epochs:
            problems.append(f"{last} holds epoch {ck['progress']['epoch']}, not {epochs}")
    except CheckpointError as exc:
        problems.append(f"last.pt unreadable: {exc}")
    return problems, details


def judge_oom(run: RunOutput, out_dir: Path, *, before: bytes | None) -> tuple[list[str], list[str], dict]:
    """Problems with a run that should have ended on an out-of-memory error, notes, details.

    ``before``: the bytes of ``out_dir/last.pt`` before the run, which must
    still be there, unchanged and loadable; None when there was none.
    """
    from perceptlab.models.checkpoint import CheckpointError, load_checkpoint

    problems: list[str] = []
    notes: list[str] = []
    events = run.events()
    err = _error_event(events)
    details: dict = {"exit_status": run.rc, "seconds": round(run.seconds, 1),
                     "error_kind": err.get("kind") if err else None,
                     "message": err.get("message") if err else None}
    if run.timed_out:
        problems.append(f"did not end within {run.seconds:.0f} s (stopped): a hang instead of a clean exit; "
                        f"last output: {run.tail()}")
        return problems, notes, details
    if run.rc == 0:
        problems.append("the run succeeded: no out-of-memory error was forced")
    elif run.rc != 1:
        what = f"killed by signal {-run.rc}" if run.rc < 0 else f"exit status {run.rc}"
        problems.append(f"{what}, expected exit status 1 (a failure during training); {run.tail()}")
    if run.rc != 0:
        if err is None:
            problems.append(f"no error event on stdout; {run.tail()}")
        elif err.get("kind") != "oom":
            problems.append(f"the error is of kind {err.get('kind')!r}, not 'oom': {err.get('message')}")
        else:
            msg = str(err.get("message", ""))
            if "out of memory" not in msg or "batch_size" not in msg:
                problems.append(f"the message does not say it ran out of memory and what to lower: {msg!r}")
            if events and events[-1] is not err:
                problems.append(f"events after the error: {[e.get('event') for e in events[events.index(err) + 1:]]}")
        if "perceptlab: error:" not in run.stderr:
            problems.append("no 'perceptlab: error:' line on stderr")
        if "Traceback (most recent call last)" in run.stderr:
            tb = run.stderr[run.stderr.index("Traceback"):]
            problems.append(f"a traceback on stderr: {tb[-400:]}")
    last = out_dir / "last.pt"
    details["last_pt"] = last.exists()
    if before is not None:
        if not last.exists():
            problems.append(f"{last} is gone")
        else:
            now = last.read_bytes()
            details["last_pt_unchanged"] = now == before
            if now != before:
                problems.append(f"{last} was rewritten by the failed run")
            try:
                ck = load_checkpoint(last)
                details["last_pt_epoch"] = ck["progress"]["epoch"]
                details["last_pt_step"] = ck["progress"]["global_step"]
            except CheckpointError as exc:
                problems.append(f"{last} is not loadable after the out-of-memory error: {exc}")
    elif last.exists():
        notes.append(f"the failed run wrote {last}")
    if out_dir.exists():
        tmp = [p.name for p in out_dir.iterdir() if p.name.endswith(".tmp")]
        if tmp:
            problems.append(f"half-written files left in {out_dir}: {tmp}")
    return problems, notes, details


# --------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------


def _release_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def check_throughput(gpu: torch.device, *, cpu_batch: int = 32, gpu_batch: int = 256, cpu_steps: int = 3,
                     gpu_steps: int = 20, rounds: int = 2, compile: bool = True, out: Out = print,
                     model_config: ModelConfig = ModelConfig()) -> Check:
    """Samples/s per loss: CPU float32 vs ``gpu`` in autocast, eager and compiled; finite losses.

    ``gpu`` may be the CPU and ``model_config`` a tiny model (the tests do
    that); the "GPU" cases then run in CPU autocast.
    """
    check = Check("throughput")
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()

    def run(device, batch, amp, steps, rounds_, warmup, model=None):
        fns = {loss: TrainStep(loss, device, batch, amp, model=model, model_config=model_config)
               for loss in loss_names()}
        try:
            return measure(fns, steps=steps, rounds=rounds_, warmup=warmup)
        finally:
            del fns
            if device.type == "cuda":
                _release_gpu_memory()

    out(f"  CPU reference: float32, batch {cpu_batch}, {cpu_steps} timed steps per loss, {threads} threads")
    res_cpu = run(cpu, cpu_batch, False, cpu_steps, 1, 1)
    tag = str(gpu)
    out(f"  {tag}: {str(amp_dtype(gpu)).replace('torch.', '')} autocast, batch {gpu_batch}, "
        f"best of {rounds} x {gpu_steps} steps per loss")
    res_eager = run(gpu, gpu_batch, True, gpu_steps, rounds, 3)
    res_comp = None
    if compile:
        t0 = time.perf_counter()
        try:
            model = AutoEncoder(model_config).to(gpu)
            net = torch.compile(model, dynamic=False)  # one compile shared by the three losses
            res_comp = run(gpu, gpu_batch, True, gpu_steps, rounds, 3, model=net)
            check.details["compile_warmup_s"] = round(res_comp[loss_names()[0]]["warmup_s"], 1)
            check.details["compiled_case_s"] = round(time.perf_counter() - t0, 1)
        except Exception as exc:  # no compiler, an unsupported op, ...: the eager figures still stand
            check.notes.append(f"torch.compile failed, compiled figures skipped: {_first_line(exc)}")
            res_comp = None
        finally:
            if gpu.type == "cuda":
                _release_gpu_memory()
    else:
        check.notes.append("torch.compile not run")

    rows = []
    for loss in loss_names():
        c = res_cpu[loss]["samples_per_s"]
        e = res_eager[loss]["samples_per_s"]
        row = {"loss": loss, "cpu_samples_per_s": round(c, 1), "cpu_batch": cpu_batch,
               "gpu_batch": gpu_batch, "eager_samples_per_s": round(e, 1), "eager_vs_cpu": round(e / c, 2),
               "compiled_samples_per_s": None, "compiled_vs_cpu": None, "compiled_vs_eager": None}
        if res_comp is not None:
            k = res_comp[loss]["samples_per_s"]
            row.update(compiled_samples_per_s=round(k, 1), compiled_vs_cpu=round(k / c, 2),
                       compiled_vs_eager=round(k / e, 2))
        rows.append(row)
        for label, res in (("cpu float32", res_cpu), (f"{tag} autocast eager", res_eager),
                           (f"{tag} autocast compiled", res_comp)):
            if res is None:
                continue
            r = res[loss]
            if r["not_finite"]:
                check.problems.append(f"{label}: {r['not_finite']}")
            if r["loss_dtype"] != "float32":
                check.problems.append(f"{label}: the {loss} loss is {r['loss_dtype']}, not float32")
        if res_eager[loss]["recon_dtype"] == "float32":
            check.problems.append(f"{tag} autocast eager: the model output is float32; autocast did not engage")
    check.details["rows"] = rows
    check.details["cpu_threads"] = threads
    ratios = [r["eager_vs_cpu"] for r in rows]
    summary = f"eager x{min(ratios):.1f}-x{max(ratios):.1f} of the CPU"
    if res_comp is not None:
        comp = [r["compiled_vs_cpu"] for r in rows]
        summary += f", compiled x{min(comp):.1f}-x{max(comp):.1f}"
    check.summary = summary + ("; every loss finite and float32" if not check.problems else "")
    for line in throughput_table(rows):
        out("  " + line)
    return check


def throughput_table(rows: list[dict]) -> list[str]:
    head = (f"{'loss':<7} {'CPU fp32':>10} {'GPU eager':>11} {'x CPU':>7} {'compiled':>10} {'x CPU':>7} "
            f"{'x eager':>8}")
    lines = [head, f"{'':<7} {'samples/s':>10} {'samples/s':>11} {'':>7} {'samples/s':>10}"]
    for r in rows:
        k = r["compiled_samples_per_s"]
        comp = (f"{k:10.1f} {r['compiled_vs_cpu']:7.1f} {r['compiled_vs_eager']:8.2f}" if k is not None
                else f"{'skipped':>10} {'-':>7} {'-':>8}")
        lines.append(f"{r['loss']:<7} {r['cpu_samples_per_s']:10.1f} {r['eager_samples_per_s']:11.1f} "
                     f"{r['eager_vs_cpu']:7.1f} {comp}")
    return lines


def check_torchrun(root: Path, library: Path, *, device: str = "cuda", budget: Budget | None = None,
                   run: Callable[[list[str], float], RunOutput] = run_command) -> Check:
    """A tiny real training run under ``torchrun --nproc-per-node 1``; it must finish."""
    check = Check("torchrun")
    out_dir = root / "torchrun-run"
    cfg = tiny_config(library, out_dir, device)
    path = write_config(root / "tiny.toml", cfg)
    cmd = torchrun_cmd("perceptlab.cli", ["train", "--config", str(path), "--progress", "json"])
    res = run(cmd, budget.timeout(150) if budget else 150)
    problems, details = judge_finished(res, out_dir, device=device, epochs=cfg["epochs"])
    check.problems += problems
    check.details.update(details, command=" ".join(cmd[1:]), config=str(path))
    if problems and device == "cuda" and NO_INDEX in res.stdout + res.stderr:
        # Tell a broken device = "cuda" apart from a broken GPU: the same run on cuda:0.
        again_dir = root / "torchrun-run-cuda0"
        again = run(torchrun_cmd("perceptlab.cli", [
            "train", "--config", str(path), "--progress", "json", "--set", 'device="cuda:0"',
            "--set", f"out_dir={json.dumps(str(again_dir))}"]), budget.timeout(150) if budget else 150)
        p2, d2 = judge_finished(again, again_dir, device="cuda", epochs=cfg["epochs"])
        check.details["with_cuda_0"] = dict(d2, problems=p2)
        check.notes.append('with device = "cuda:0" the same run ' + (
            "finished: only the index-less device fails" if not p2 else f"failed too: {p2[0]}"))
    if not problems:
        check.summary = (f"{details.get('world_size')} process on {details.get('device')}, "
                         f"{details.get('steps')} steps in {details.get('epochs')} epochs, "
                         f"amp {details.get('amp')}, done; last.pt readable")
    return check


def check_nccl(*, device: str = "cuda", budget: Budget | None = None,
               run: Callable[[list[str], float], RunOutput] = run_command) -> Check:
    """NCCL (gloo on the CPU) through DistContext under torchrun: all-reduce and a DDP step."""
    check = Check("nccl")
    want = "nccl" if device == "cuda" else "gloo"
    cmd = torchrun_cmd("perceptlab.train.gpu_check", ["--process-group-probe", "--device", device])
    res = run(cmd, budget.timeout(90) if budget else 90)
    check.details.update(exit_status=res.rc, seconds=round(res.seconds, 1), command=" ".join(cmd[1:]))
    probe = next((e for e in res.events() if e.get("event") == "process_group_probe"), None)
    if res.timed_out:
        check.problems.append(f"did not finish within {res.seconds:.0f} s (stopped): {res.tail()}")
    elif probe is None:
        check.problems.append(f"exit status {res.rc}, no probe result: {res.tail()}")
    else:
        check.details.update({k: v for k, v in probe.items() if k != "seconds"},
                             probe_seconds=probe.get("seconds"))
        if probe.get("backend") != want:
            check.problems.append(f"the process group uses {probe.get('backend')!r}, not {want!r}")
        if not probe.get("all_reduce_ok"):
            check.problems.append(f"all-reduce gave {probe.get('all_reduce_value')}, expected "
                                  f"{probe.get('all_reduce_expected')}")
        if not probe.get("ddp_grads_finite"):
            check.problems.append("the DistributedDataParallel step gave missing or non-finite gradients")
        if res.rc != 0:
            check.problems.append(f"exit status {res.rc}: {res.tail()}")
        if not check.problems:
            check.summary = (f"{want} group of {probe.get('world_size')}: all-reduce and a "
                             f"DistributedDataParallel step in {probe.get('seconds')} s")
    return check


@contextmanager
def gpu_memory_pressure(device: torch.device, leave: int) -> Iterator[dict]:
    """Hold all but ``leave`` bytes of the GPU's free memory in this process."""
    _release_gpu_memory()
    free, total = torch.cuda.mem_get_info(device)
    want = free - leave
    hog = None
    for _ in range(16):  # what cudaMemGetInfo calls free may not come in one piece
        if want <= 0:
            break
        try:
            hog = torch.empty(want, dtype=torch.uint8, device=device)
            break
        except torch.cuda.OutOfMemoryError:
            want -= 256 * MiB
    try:
        yield {"held_bytes": want if hog is not None else 0, "free_bytes": torch.cuda.mem_get_info(device)[0],
               "total_bytes": total}
    finally:
        del hog
        _release_gpu_memory()


def oom_sizes(device: torch.device) -> tuple[int, int]:
    """(first-layer output bytes of the big run, bytes left free when it must fail).

    The run's peak is about six times its first activation (two saved
    tensors each side of the model plus their gradients), which must fit the
    free GPU; the memory left free must hold a CUDA context and the model yet
    be far below one activation. One activation stays under 2**31 elements.
    """
    _release_gpu_memory()
    free, _ = torch.cuda.mem_get_info(device)
    act = min(6 * GiB, free // 10)
    leave = max(768 * MiB, min(act // 4, 3 * GiB // 2))
    return act, leave


def check_oom(root: Path, library: Path, *, device: str = "cuda", budget: Budget | None = None,
              run: Callable[[list[str], float], RunOutput] = run_cli,
              pressure: Callable[[torch.device, int], object] | None = None,
              sizes: tuple[int, int] | None = None) -> Check:
    """Force a real out-of-memory error in a real run; it must end cleanly and keep last.pt.

    ``run`` runs ``perceptlab ARGS``; ``pressure(device, leave)`` is a context
    manager that leaves only ``leave`` bytes of the device free (the tests
    replace both to exercise this on the CPU).
    """
    check = Check("oom")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    device = str(dev)  # cuda:N: the run must use the GPU whose memory this process fills
    act, leave = sizes if sizes is not None else oom_sizes(dev)
    if act < 2 * leave:
        check.skipped = True
        check.summary = (f"skipped: {act / GiB:.1f} GiB per activation is too little above the "
                         f"{leave / GiB:.1f} GiB a run needs to start")
        return check
    n = count_patches(library, 32, 1)
    out_dir = root / "oom-run"
    cfg = oom_config(library, out_dir, n, act, device)
    path = write_config(root / "oom.toml", cfg)
    check.details.update(config=str(path), patches=n, batch_size=cfg["batch_size"],
                         first_channels=cfg["model"]["channels"][0], first_activation_gib=round(act / GiB, 2),
                         left_free_gib=round(leave / GiB, 2))
    t = (lambda s: budget.timeout(s)) if budget else (lambda s: s)

    # 1. The run fits on the free device and writes last.pt.
    first = run(["train", "--config", str(path), "--progress", "json"], t(120))
    problems, details = judge_finished(first, out_dir, device=dev.type, epochs=1)
    check.details["first_run"] = details
    if problems:
        check.problems += [f"the run that should fit did not finish: {p}" for p in problems]
        return check
    last = out_dir / "last.pt"
    before = last.read_bytes()
    check.details["last_pt_sha256"] = hashlib.sha256(before).hexdigest()[:16]

    # 2. With the device nearly full, the same run afresh and resumed must fail cleanly.
    fresh_dir = root / "oom-fresh"
    with (pressure or gpu_memory_pressure)(dev, leave) as held:
        if isinstance(held, dict):
            check.details["pressure"] = {k: round(v / GiB, 2) for k, v in held.items()}
        fresh = run(["train", "--config", str(path), "--progress", "json",
                     "--set", f"out_dir={json.dumps(str(fresh_dir))}"], t(120))
        resumed = run(["train", "--config", str(path), "--progress", "json", "--resume",
                       "--set", "epochs=2"], t(120))
    p_fresh, n_fresh, d_fresh = judge_oom(fresh, fresh_dir, before=None)
    p_res, n_res, d_res = judge_oom(resumed, out_dir, before=before)
    check.details["fresh_run"] = d_fresh
    check.details["resumed_run"] = d_res
    check.problems += [f"fresh run: {p}" for p in p_fresh] + [f"resumed run: {p}" for p in p_res]
    check.notes += n_fresh + n_res
    if not d_fresh.get("last_pt"):
        check.notes.append("a run whose first step runs out of memory leaves no last.pt: the loop writes "
                           "last.pt only after a finished epoch or on a stop signal, and on an error keeps "
                           "the one it had")
    if not check.problems:
        check.summary = (f"out of memory at batch {cfg['batch_size']}: exit 1, one 'oom' error event, no "
                         f"traceback; last.pt of epoch {d_res.get('last_pt_epoch')} kept unchanged and loadable")
    return check


# --------------------------------------------------------------------------
# the whole check
# --------------------------------------------------------------------------


def device_info(dev: torch.device) -> dict:
    props = torch.cuda.get_device_properties(dev)
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # a build without NCCL
        nccl = None
    return {"name": props.name, "index": dev.index, "capability": f"{props.major}.{props.minor}",
            "total_memory_gib": round(props.total_memory / GiB, 1), "bf16": torch.cuda.is_bf16_supported(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "nccl": nccl}


def run_gpu_check(*, steps: int | None = None, budget_s: float = DEFAULT_BUDGET_S, out: Out = print,
                  compile: bool = True) -> dict:
    """Run every check on the current CUDA device; returns the report (``report["ok"]``).

    Raises
    ------
    NoCudaDevice
        When torch sees no GPU (see :func:`no_cuda_message`).
    """
    why = no_cuda_message()
    if why:
        raise NoCudaDevice(why)
    t0 = time.monotonic()
    budget = Budget(budget_s)
    dev = torch.device("cuda", torch.cuda.current_device())
    info = device_info(dev)
    out(f"perceptlab bench train --device cuda: {info['name']} ({info['total_memory_gib']} GiB, sm "
        f"{info['capability']}), torch {info['torch']}, CUDA {info['cuda']}; budget {budget_s:.0f} s")
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="perceptlab-gpu-check-") as tmp, _sigterm_stops(budget):
        root = Path(tmp)
        lib: dict = {}

        def library() -> Path:  # made once, by the first check that needs it
            if "path" not in lib:
                lib["path"] = make_library(root / "library")
            return lib["path"]

        plan = [
            ("throughput", lambda: check_throughput(dev, gpu_steps=steps or 20, compile=compile, out=out), 60),
            ("torchrun", lambda: check_torchrun(root, library(), budget=budget), 25),
            ("nccl", lambda: check_nccl(budget=budget), 15),
            ("oom", lambda: check_oom(root, library(), budget=budget), 40),
        ]
        for name, fn, need_s in plan:
            try:
                checks.append(_guarded(name, fn, budget, need_s, out))
                _release_gpu_memory()
            except Stopped as exc:  # between two checks
                checks.append(Check(name, problems=[str(exc)]))
    report = {
        "command": "perceptlab bench train --device cuda",
        "ok": all(c.status != "failed" for c in checks),
        "device": info,
        "budget_s": budget_s,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "checks": [c.to_dict() for c in checks],
        "throughput": checks[0].details.get("rows", []),
    }
    for line in summary_table(report):
        out(line)
    return report


def summary_table(report: dict) -> list[str]:
    lines = ["", f"{'check':<11} {'status':<8} {'time':>7}  result"]
    for c in report["checks"]:
        text = c["summary"] or "; ".join(c["problems"][:1])
        lines.append(f"{c['name']:<11} {c['status']:<8} {c['seconds']:6.1f}s  {text}")
        for p in c["problems"][1 if not c["summary"] else 0:]:
            lines.append(f"{'':<29}FAILED: {p}")
    verdict = "all checks passed" if report["ok"] else "FAILED: " + ", ".join(
        c["name"] for c in report["checks"] if c["status"] == "failed")
    lines.append(f"{verdict} in {report['elapsed_s']:.0f} s")
    return lines


# --------------------------------------------------------------------------
# the process-group probe (run under torchrun by check_nccl)
# --------------------------------------------------------------------------


def _process_group_probe(device_kind: str) -> int:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .distributed import DistContext
    from .losses import ReconstructionLoss

    t0 = time.perf_counter()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # enabled=True even for one process: from_env() skips the group then.
    ctx = DistContext(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), True)
    device = torch.device("cuda", ctx.local_rank) if device_kind == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    ctx.init(device)
    try:
        backend = str(dist.get_backend())
        t = torch.full((1024,), float(ctx.rank + 1), device=device)
        ctx.sum_(t)
        ctx.barrier()
        expected = world * (world + 1) / 2
        got = float(t[0])
        torch.manual_seed(0)
        model = AutoEncoder(ModelConfig(patch_frames=32, channels=(8, 8, 8, 8, 8), latent_dim=8)).to(device)
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        x = torch.rand(4, 1, 128, 32, device=device)  # (B, 1, F, T)
        loss = ReconstructionLoss({"mse": 1.0})(net(x), x)
        loss.backward()  # DDP all-reduces the gradients over the group here
        grads_ok = all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        ctx.barrier()
        result = {"event": "process_group_probe", "backend": backend, "world_size": world,
                  "all_reduce_value": got, "all_reduce_expected": expected,
                  "all_reduce_ok": bool(torch.all(t == expected)), "ddp_grads_finite": grads_ok,
                  "device": str(device), "seconds": round(time.perf_counter() - t0, 2)}
        if ctx.is_main:
            print(json.dumps(result), flush=True)
        return 0 if result["all_reduce_ok"] and grads_ok else 1
    finally:
        ctx.shutdown()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m perceptlab.train.gpu_check",
        description="The process-group probe of the GPU check, run under torchrun; the check itself is "
                    "`perceptlab bench train --device cuda`.")
    p.add_argument("--process-group-probe", action="store_true",
                   help="join the process group, all-reduce, take a DistributedDataParallel step")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cuda: NCCL (default); cpu: gloo")
    args = p.parse_args(argv)
    if not args.process_group_probe:
        p.print_help(sys.stderr)
        return 2
    return _process_group_probe(args.device)


if __name__ == "__main__":
    sys.exit(main())
