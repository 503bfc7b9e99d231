"""The four checks of ``perceptlab bench train --device cuda``, and the process-group probe.

:func:`check_throughput`, :func:`check_torchrun`, :func:`check_nccl` and
:func:`check_oom` each return a :class:`~perceptlab.train.gpu_check_runs.Check`;
:mod:`perceptlab.train.gpu_check` runs them in order under one budget.
:func:`process_group_probe` is what ``check_nccl`` runs under torchrun.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from perceptlab.metrics import loss_names
from perceptlab.models.autoencoder import AutoEncoder, ModelConfig

from .bench import TrainStep, amp_dtype, measure
from .gpu_check_runs import (
    NO_INDEX,
    Budget,
    Check,
    GiB,
    MiB,
    RunOutput,
    count_patches,
    first_line,
    judge_finished,
    judge_oom,
    oom_config,
    run_cli,
    run_command,
    tiny_config,
    torchrun_cmd,
    write_config,
)

Out = Callable[[str], None]


def release_gpu_memory() -> None:
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
                release_gpu_memory()

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
            check.notes.append(f"torch.compile failed, compiled figures skipped: {first_line(exc)}")
            res_comp = None
        finally:
            if gpu.type == "cuda":
                release_gpu_memory()
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
    release_gpu_memory()
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
        release_gpu_memory()


def oom_sizes(device: torch.device) -> tuple[int, int]:
    """(first-layer output bytes of the big run, bytes left free when it must fail).

    The run's peak is about six times its first activation (two saved
    tensors each side of the model plus their gradients), which must fit the
    free GPU; the memory left free must hold a CUDA context and the model yet
    be far below one activation. One activation stays under 2**31 elements.
    """
    release_gpu_memory()
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


def process_group_probe(device_kind: str) -> int:
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
