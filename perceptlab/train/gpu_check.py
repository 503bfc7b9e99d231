"""``perceptlab bench train --device cuda``: a five-minute check that a GPU trains.

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

The checks are in :mod:`perceptlab.train.gpu_checks`, what they share
(results, the budget, subprocess runs and their judging) in
:mod:`perceptlab.train.gpu_check_runs`; this module runs them and reports.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from .gpu_check_runs import Budget, Check, GiB, first_line, make_library
from .gpu_checks import (
    check_nccl,
    check_oom,
    check_throughput,
    check_torchrun,
    process_group_probe,
    release_gpu_memory,
)

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
# running the checks
# --------------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM arrived (the caller's time limit): the check in progress fails, no other starts."""


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
            check = Check(name, problems=[f"unexpected error: {first_line(exc)}"])
            check.details["traceback"] = traceback.format_exc(limit=8)
    check.seconds = time.monotonic() - t0
    out(f"[{name}] {check.status} in {check.seconds:.1f} s" + (f": {check.summary}" if check.summary else ""))
    for p in check.problems:
        out(f"[{name}]   FAILED: {p}")
    for n in check.notes:
        out(f"[{name}]   note: {n}")
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
                release_gpu_memory()
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
    return process_group_probe(args.device)


if __name__ == "__main__":
    sys.exit(main())
