"""``perceptlab bench train --device cuda``: the GPU check.

On the CPU every part that can run does, for real: the training steps and
their finite/float32 checks (CPU autocast stands in for the GPU's), the
compile-failure note, the out-of-memory check end to end (real runs of a
real library, with the error raised inside the model's forward while the
"memory pressure" is on, as torch.cuda.OutOfMemoryError or as the
RuntimeError older torch raises), torchrun and the process-group probe with
gloo, and the "no CUDA device" exit. The tests marked by ``needs_cuda`` run
the real thing on a GPU.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from perceptlab.cli import main
from perceptlab.models.autoencoder import AutoEncoder, ModelConfig
from perceptlab.models.checkpoint import load_checkpoint
from perceptlab.train import gpu_check, gpu_check_runs, gpu_checks
from perceptlab.train.bench import TrainStep
from perceptlab.train.losses import ReconstructionLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY_MODEL = ModelConfig(patch_frames=32, channels=(8, 8, 8, 8, 8), latent_dim=8)
CPU = torch.device("cpu")


def tiny_throughput(**kw):
    kw = dict(dict(cpu_batch=2, gpu_batch=2, cpu_steps=2, gpu_steps=2, rounds=1, compile=False,
                   model_config=TINY_MODEL, out=lambda line: None), **kw)
    return gpu_checks.check_throughput(CPU, **kw)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A real library of 6 generated clips (3 labels), made as the GPU check makes its own."""
    return gpu_check_runs.make_library(tmp_path_factory.mktemp("gpucheck"), per_label=2, seconds=1.5)


# --------------------------------------------------------------------------
# no GPU
# --------------------------------------------------------------------------


def test_no_cuda_device_is_said_clearly_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "train", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perceptlab: error: no CUDA device") and "--device cpu" in err
    assert "Traceback" not in err

    assert main(["bench", "train", "--device", "cuda", "--json"]) == 2
    cap = capsys.readouterr()
    report = json.loads(cap.out)  # stdout holds only the JSON
    assert report["ok"] is False and report["error"].startswith("no CUDA device")
    with pytest.raises(gpu_check.NoCudaDevice, match="no CUDA device"):
        gpu_check.run_gpu_check()


def test_no_cuda_device_through_the_real_command():
    out = subprocess.run([sys.executable, "-m", "perceptlab.cli", "bench", "train", "--device", "cuda"],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert out.returncode == 2, out.stderr
    assert "perceptlab: error: no CUDA device" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------
# the command's wiring
# --------------------------------------------------------------------------


def test_json_goes_to_stdout_and_the_lines_to_stderr(monkeypatch, capsys):
    from perceptlab.train import bench

    seen = {}

    def fake_bench(steps, out, device):
        seen.update(steps=steps, device=device)
        out("cpu (CPU):")
        return {"cpu": {"mse": 10.0, "nlpd": 5.0, "msssim": 4.0}}

    monkeypatch.setattr(bench, "run_train_bench", fake_bench)
    assert main(["bench", "train", "--device", "cpu", "--json", "--n", "3"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"cpu": {"mse": 10.0, "nlpd": 5.0, "msssim": 4.0}}
    assert "cpu (CPU):" in cap.err and seen == {"steps": 3, "device": "cpu"}
    assert main(["bench", "train"]) == 0  # the default: auto, readable lines on stdout
    assert seen["device"] == "auto" and "cpu (CPU):" in capsys.readouterr().out


@pytest.mark.parametrize("ok, status", [(True, 0), (False, 1)])
def test_gpu_check_exit_status_follows_the_checks(monkeypatch, capsys, ok, status):
    monkeypatch.setattr(gpu_check, "no_cuda_message", lambda: None)
    monkeypatch.setattr(gpu_check, "run_gpu_check", lambda steps, out: (out("table"), {"ok": ok, "checks": []})[1])
    assert main(["bench", "train", "--device", "cuda", "--json"]) == status
    cap = capsys.readouterr()
    assert json.loads(cap.out)["ok"] is ok and "table" in cap.err


def test_summary_table_names_what_failed():
    checks = [gpu_check_runs.Check("throughput", summary="eager x10.0-x20.0 of the CPU"),
              gpu_check_runs.Check("oom", problems=["resumed run: the error is of kind 'internal', not 'oom'"])]
    report = {"ok": False, "elapsed_s": 12.0, "checks": [c.to_dict() for c in checks]}
    text = "\n".join(gpu_check.summary_table(report))
    assert "throughput  ok" in text and "oom         failed" in text
    assert "kind 'internal'" in text and "FAILED: oom in 12 s" in text


# --------------------------------------------------------------------------
# training steps: throughput, finite float32 losses, compile
# --------------------------------------------------------------------------


def test_train_step_keeps_the_loss_float32_under_autocast():
    step = TrainStep("nlpd", CPU, 2, amp=True, model_config=TINY_MODEL)
    loss = step()
    assert step.recon_dtype == torch.bfloat16 and step.loss_dtype == torch.float32 == loss.dtype
    step()
    assert len(step.losses) == 2 and step.not_finite() is None


def test_throughput_check_on_the_cpu():
    check = tiny_throughput()
    assert check.status == "ok", check.problems
    rows = check.details["rows"]
    assert [r["loss"] for r in rows] == ["mse", "nlpd", "msssim"]
    for r in rows:
        assert r["cpu_samples_per_s"] > 0 and r["eager_samples_per_s"] > 0
        assert r["eager_vs_cpu"] == pytest.approx(r["eager_samples_per_s"] / r["cpu_samples_per_s"], rel=0.05)
        assert r["compiled_samples_per_s"] is None
    assert "finite and float32" in check.summary


def test_a_loss_that_is_not_finite_fails_with_where(monkeypatch):
    real = ReconstructionLoss.per_sample

    def nan_nlpd(self, recon, target):
        d = real(self, recon, target)
        return d * float("nan") if "nlpd" in self.weights else d

    monkeypatch.setattr(ReconstructionLoss, "per_sample", nan_nlpd)
    check = tiny_throughput()
    assert check.status == "failed"
    assert any(p.startswith("cpu float32: the nlpd loss became nan at step 1 of") for p in check.problems), check.problems
    assert not any("mse" in p or "msssim" in p for p in check.problems)
    assert "finite" not in check.summary


def test_a_failing_compile_is_skipped_with_a_note(monkeypatch, capsys):
    class Broken(torch.nn.Module):  # like torch.compile's wrapper: the model's parameters, a failing call
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            raise RuntimeError("InductorError: no working C++ compiler found\nsecond line")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: Broken(model))
    check = tiny_throughput(compile=True, out=print)
    assert check.status == "ok", check.problems
    assert check.notes == ["torch.compile failed, compiled figures skipped: RuntimeError: InductorError: "
                           "no working C++ compiler found"]
    assert all(r["compiled_samples_per_s"] is None for r in check.details["rows"])
    assert "skipped" in capsys.readouterr().out


def test_a_working_compile_is_reported_against_eager_and_cpu(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)  # the real compile needs a compiler
    check = tiny_throughput(compile=True)
    assert check.status == "ok" and not check.notes
    for r in check.details["rows"]:
        assert r["compiled_vs_eager"] == pytest.approx(r["compiled_samples_per_s"] / r["eager_samples_per_s"],
                                                       rel=0.05)
    assert "compiled x" in check.summary


# --------------------------------------------------------------------------
# out of memory (real runs in this process; the error raised in the forward)
# --------------------------------------------------------------------------


def in_process(args, timeout):
    """``perceptlab ARGS`` in this process, as check_oom's ``run``."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in args])
    return gpu_check_runs.RunOutput(list(args), rc, out.getvalue(), err.getvalue(), 0.0)


def oom_when_pressed(monkeypatch, error):
    """A pressure context under which every forward pass raises ``error``."""
    state = {"on": False}
    real = AutoEncoder.forward

    def forward(self, x):
        if state["on"]:
            raise error
        return real(self, x)

    monkeypatch.setattr(AutoEncoder, "forward", forward)

    @contextmanager
    def pressure(device, leave):
        state["on"] = True
        try:
            yield {"held_bytes": 0}
        finally:
            state["on"] = False

    return pressure


SIZES = (1 << 20, 1 << 18)  # first activation 1 MiB, "left free" 256 KiB: a CPU-sized run


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB. GPU 0 has a total capacity of "
                                "139.81 GiB of which 1.50 GiB is free."),
    RuntimeError("CUDA out of memory. Tried to allocate 6.00 GiB (GPU 0; 139.81 GiB total capacity)"),
], ids=["OutOfMemoryError", "RuntimeError"])
def test_oom_check_passes_when_the_run_ends_cleanly_and_keeps_last_pt(library, tmp_path, monkeypatch, error):
    pressure = oom_when_pressed(monkeypatch, error)
    check = gpu_checks.check_oom(tmp_path, library, device="cpu", run=in_process, pressure=pressure, sizes=SIZES)
    assert check.status == "ok", check.problems
    d = check.details
    assert d["first_run"]["last_pt_epoch"] == 1 and d["batch_size"] == d["patches"] > 100
    for part in ("fresh_run", "resumed_run"):
        assert d[part]["exit_status"] == 1 and d[part]["error_kind"] == "oom"
        assert "out of memory" in d[part]["message"] and "batch_size" in d[part]["message"]
    assert d["resumed_run"]["last_pt_unchanged"] is True and d["resumed_run"]["last_pt_epoch"] == 1
    # what the loop does today when the very first step fails: no last.pt at all
    assert d["fresh_run"]["last_pt"] is False
    assert any("leaves no last.pt" in n for n in check.notes)
    assert load_checkpoint(tmp_path / "oom-run" / "last.pt")["progress"]["epoch"] == 1
    assert "kept unchanged and loadable" in check.summary


def test_oom_check_fails_when_the_error_is_something_else(library, tmp_path, monkeypatch):
    pressure = oom_when_pressed(monkeypatch, RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    check = gpu_checks.check_oom(tmp_path, library, device="cpu", run=in_process, pressure=pressure, sizes=SIZES)
    assert check.status == "failed"
    assert any("resumed run: the error is of kind 'internal', not 'oom'" in p for p in check.problems), check.problems
    assert any("a traceback on stderr" in p for p in check.problems)


def test_oom_check_fails_when_nothing_runs_out_of_memory(library, tmp_path):
    @contextmanager
    def no_pressure(device, leave):
        yield {}

    check = gpu_checks.check_oom(tmp_path, library, device="cpu", run=in_process, pressure=no_pressure, sizes=SIZES)
    assert check.status == "failed"
    assert "resumed run: the run succeeded: no out-of-memory error was forced" in check.problems
    assert any("resumed run:" in p and "rewritten" in p for p in check.problems)


def test_judge_oom_names_a_hang_and_a_crash(tmp_path):
    hang = gpu_check_runs.RunOutput(["x"], None, "", "still going", 120.0)
    problems, _, _ = gpu_check_runs.judge_oom(hang, tmp_path, before=None)
    assert problems and "did not end within 120 s" in problems[0]
    crash = gpu_check_runs.RunOutput(["x"], -9, "", "", 3.0)
    problems, _, _ = gpu_check_runs.judge_oom(crash, tmp_path, before=None)
    assert "killed by signal 9, expected exit status 1" in problems[0]


@needs_cuda
def test_oom_sizes_leave_room_for_a_context_but_not_for_an_activation():
    act, leave = gpu_checks.oom_sizes(torch.device("cuda"))
    assert act >= 2 * leave and leave >= 768 << 20 and act // 4 < 2**31


# --------------------------------------------------------------------------
# torchrun and the process group (gloo on the CPU)
# --------------------------------------------------------------------------


def test_a_cuda_device_without_an_index_is_named_and_retried_on_cuda_0(library, tmp_path):
    """torch.cuda.set_device(torch.device("cuda")) raises; the check says so and tries cuda:0."""
    error = ("ValueError: Expected a torch.device with a specified index or an integer, but got:cuda")
    calls = []

    def run(cmd, timeout):
        calls.append(cmd)
        event = {"event": "error", "message": error, "kind": "internal"}
        return gpu_check_runs.RunOutput(cmd, 1, json.dumps(event) + "\n", "Traceback ...\n" + error, 1.0)

    check = gpu_checks.check_torchrun(tmp_path, library, device="cuda", run=run)
    assert check.status == "failed" and len(calls) == 2
    assert "device = \"cuda:0\" avoids it" in check.problems[0]
    assert 'device="cuda:0"' in calls[1] and check.notes[0].startswith('with device = "cuda:0" the same run failed')


@pytest.mark.slow
def test_torchrun_check_with_one_cpu_process(library, tmp_path):
    check = gpu_checks.check_torchrun(tmp_path, library, device="cpu")
    assert check.status == "ok", check.problems
    d = check.details
    assert d["world_size"] == 1 and d["device"] == "cpu" and d["steps"] == d["total_steps"] > 0
    assert d["last_pt_epoch"] == 2 and "torch.distributed.run --standalone --nproc-per-node 1" in d["command"]


@pytest.mark.slow
def test_process_group_probe_with_gloo():
    check = gpu_checks.check_nccl(device="cpu")
    assert check.status == "ok", check.problems
    assert check.details["backend"] == "gloo" and check.details["all_reduce_ok"] is True
    assert check.details["ddp_grads_finite"] is True


def test_the_whole_check_runs_every_part_and_reports(monkeypatch, capsys):
    """run_gpu_check with the GPU parts swapped for their CPU stand-ins: order, budget, report."""
    _pretend_a_gpu(monkeypatch)
    real_throughput, real_oom = gpu_checks.check_throughput, gpu_checks.check_oom
    seen = []

    def throughput(dev, **kw):
        seen.append(("throughput", str(dev), kw["compile"]))
        return real_throughput(CPU, cpu_batch=2, gpu_batch=2, cpu_steps=1, gpu_steps=1, rounds=1, compile=False,
                               model_config=TINY_MODEL, out=kw["out"])

    def torchrun(root, library, budget):
        seen.append(("torchrun", library.name))
        return gpu_check_runs.Check("torchrun", summary="stand-in")

    def nccl(budget):
        seen.append(("nccl",))
        return gpu_check_runs.Check("nccl", problems=["the process group uses 'gloo', not 'nccl'"])

    def oom(root, library, budget):
        seen.append(("oom", library.name))
        pressure = oom_when_pressed(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory."))
        return real_oom(root, library, device="cpu", budget=budget, run=in_process, pressure=pressure,
                        sizes=SIZES)

    for name, fn in (("check_throughput", throughput), ("check_torchrun", torchrun), ("check_nccl", nccl),
                     ("check_oom", oom)):
        monkeypatch.setattr(gpu_check, name, fn)
    report = gpu_check.run_gpu_check(steps=5)
    assert seen == [("throughput", "cuda:0", True), ("torchrun", "lib.sqlite"), ("nccl",), ("oom", "lib.sqlite")]
    assert report["ok"] is False  # the nccl stand-in failed
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("throughput", "ok"), ("torchrun", "ok"), ("nccl", "failed"), ("oom", "ok")]
    assert len(report["throughput"]) == 3 and json.loads(json.dumps(report)) == report
    text = capsys.readouterr().out
    assert "nccl        failed" in text and "FAILED: nccl in" in text and "kept unchanged" in text


def _pretend_a_gpu(monkeypatch) -> None:
    """Let the check's driver run on a machine without one (every GPU step is replaced by the test)."""
    monkeypatch.setattr(gpu_check, "no_cuda_message", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(gpu_check, "device_info", lambda dev: {"name": "stand-in", "total_memory_gib": 0.0,
                                                               "capability": "0.0", "torch": "x", "cuda": "y"})
    monkeypatch.setattr(gpu_check, "release_gpu_memory", lambda: None)


def test_a_spent_budget_fails_the_checks_left_instead_of_running_past_it(monkeypatch):
    _pretend_a_gpu(monkeypatch)
    report = gpu_check.run_gpu_check(budget_s=10, out=lambda line: None)
    assert not report["ok"]
    assert all(c["status"] == "failed" and c["problems"][0].startswith("not run:") for c in report["checks"])


def test_sigterm_fails_the_check_in_progress_and_still_reports(monkeypatch):
    """``timeout 300`` sends SIGTERM: the report must still come out, the subprocesses must go."""
    import signal
    import time

    _pretend_a_gpu(monkeypatch)
    ran = {}

    def throughput(dev, **kw):
        return gpu_check_runs.Check("throughput", summary="stand-in")

    def torchrun(root, library, budget):  # a child that would hang, then the caller's SIGTERM
        sleeper = [sys.executable, "-c", "import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); "
                                         "time.sleep(60)"]
        t0 = time.monotonic()
        try:
            gpu_check_runs.run_command(sleeper, timeout=120)
        finally:
            ran["seconds"] = time.monotonic() - t0
        return gpu_check_runs.Check("torchrun", summary="never here")

    monkeypatch.setattr(gpu_check, "check_throughput", throughput)
    monkeypatch.setattr(gpu_check, "check_torchrun", torchrun)
    monkeypatch.setattr(gpu_check, "make_library", lambda root: root)
    previous = signal.getsignal(signal.SIGTERM)
    report = gpu_check.run_gpu_check(out=lambda line: None)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert ran["seconds"] < 30  # the sleeping child was killed, not waited for
    status = {c["name"]: (c["status"], c["problems"][:1]) for c in report["checks"]}
    assert status["throughput"] == ("ok", [])
    assert status["torchrun"] == ("failed", ["stopped by SIGTERM (the caller's time limit)"])
    assert status["nccl"][0] == status["oom"][0] == "failed" and status["oom"][1][0].startswith("not run:")
    assert report["ok"] is False


# --------------------------------------------------------------------------
# on a GPU
# --------------------------------------------------------------------------


@needs_cuda
def test_cuda_throughput_in_bf16_autocast():
    check = gpu_checks.check_throughput(torch.device("cuda"), cpu_batch=2, gpu_batch=8, cpu_steps=1,
                                       gpu_steps=2, rounds=1, compile=False, out=lambda line: None)
    assert check.status == "ok", check.problems


@needs_cuda
def test_nccl_probe():
    check = gpu_checks.check_nccl(device="cuda")
    assert check.status == "ok", check.problems
    assert check.details["backend"] == "nccl"


@needs_cuda
@pytest.mark.slow
def test_the_whole_gpu_check(tmp_path):
    out = subprocess.run(["bash", str(Path(__file__).parents[1] / "training" / "gpu_check.sh"),
                          str(tmp_path / "gpu_check.json")], capture_output=True, text=True, timeout=480)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out.returncode == 0, out.stderr[-3000:]
    assert report["ok"] and [c["name"] for c in report["checks"]] == ["throughput", "torchrun", "nccl", "oom"]
    assert report["elapsed_s"] < 300
