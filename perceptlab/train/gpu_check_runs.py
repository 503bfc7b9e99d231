"""The GPU check's plumbing: results, a time budget, subprocess runs, tiny configs, judging.

What every check of :mod:`perceptlab.train.gpu_check` shares: a
:class:`Check` outcome, one :class:`Budget` cut into subprocess timeouts,
:func:`run_command` (a process group stopped as a whole past its timeout),
the generated library and TOML configs the runs train on, and
:func:`judge_finished` / :func:`judge_oom`, which read a finished run's
JSON-lines events and ``last.pt``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1 << 30
MiB = 1 << 20


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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


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

