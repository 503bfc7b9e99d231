"""The training engine, for real: tiny libraries, tiny models, a few steps.

Every run here trains an actual autoencoder on generated clips imported into
a real library, in-process (fast) or through the real command (signals,
torchrun). Patches are 128 mel x 32 frames with a 5-stage model of 8
channels, so a step takes milliseconds.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptlab.audio.features import windows
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.models.checkpoint import load_checkpoint
from perceptlab.train import ConfigError, DataError, train
from perceptlab.train.config import apply_overrides, config_from_dict, load_config, parse_override
from perceptlab.train.data import Augment, PatchSet, split_clips, window_starts
from perceptlab.train.progress import EVENTS, OPTIONAL, CallbackReporter
from perceptlab.train.run import run_train_command

from conftest import write_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


ONE_THREAD_ENV = dict(os.environ, OMP_NUM_THREADS="1")

TINY = {
    "name": "tiny",
    "epochs": 2,
    "batch_size": 8,
    "log_every": 1,
    "seed": 3,
    "data": {"patch_frames": 32, "patch_hop": 16, "val_fraction": 0.25},
    "model": {"channels": [8, 8, 8, 8, 8], "latent_dim": 8},
    "optim": {"lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
    "loss": "mse",
}


def make_clips(root: Path, per_label: int = 4, seconds: float = 1.6) -> Path:
    for li, label in enumerate(["low", "mid", "high"]):
        for j in range(per_label):
            write_clip(root / label / f"{label}_{j}.wav", seconds=seconds + 0.1 * j,
                       freq=110.0 * 2 ** (li + 0.2 * j), amp=0.3 + 0.1 * j)
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A real library of 12 generated clips (3 labels), features cached on import."""
    tmp = tmp_path_factory.mktemp("trainlib")
    path = tmp / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [make_clips(tmp / "clips")])
    return path


def tiny_config(library: Path, out: Path, **overrides):
    raw = json.loads(json.dumps(TINY))
    raw["data"]["library"] = str(library)
    raw["out_dir"] = str(out)
    raw["data"].update(overrides.pop("data", {}))  # [data] keys add to the tiny ones
    raw.update(overrides)
    return config_from_dict(raw)


def write_toml(path: Path, library: Path, out: Path, extra: str = "") -> Path:
    path.write_text(
        f"""name = "tiny"
epochs = 3
batch_size = 8
log_every = 1
seed = 3
out_dir = {json.dumps(str(out))}
loss = "mse"
{extra}
[data]
library = {json.dumps(str(library))}
patch_frames = 32
patch_hop = 16
val_fraction = 0.25

[model]
channels = [8, 8, 8, 8, 8]
latent_dim = 8

[optim]
lr = 3e-3
schedule = "cosine"
warmup_steps = 2
"""
    )
    return path


def events_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perceptlab.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env or ONE_THREAD_ENV, **kw)


# --------------------------------------------------------------------------
# real training, each loss
# --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mse", "nlpd", "msssim", {"nlpd": 1.0, "mse": 0.1}])
def test_each_loss_trains_and_the_loss_goes_down(library, tmp_path, loss):
    cfg = tiny_config(library, tmp_path / "run", loss=loss, epochs=6, optim={"lr": 1e-2, "schedule": "constant"})
    events = []
    result = train(cfg, reporter=CallbackReporter(events.append))
    assert result.status == "completed"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "loading" and "start" in kinds and kinds[-1] == "done"
    for e in events:  # every documented field is there, and no other
        assert set(EVENTS[e["event"]]) <= set(e), e["event"]
        assert set(e) <= {"event", "time", *EVENTS[e["event"]], *OPTIONAL.get(e["event"], ())}, e
        assert "recon_loss" not in e and "train_recon_loss" not in e  # no view agreement: the loss is the objective
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 6
    assert epochs[-1]["train_loss"] < 0.9 * epochs[0]["train_loss"]
    assert epochs[-1]["val_loss"] < 0.9 * epochs[0]["val_loss"]
    assert set(epochs[-1]["val_metrics"]) == {"mse", "nlpd", "msssim"}
    start = next(e for e in events if e["event"] == "start")
    assert start["n_train_clips"] == 9 and start["n_val_clips"] == 3  # split by clip, per label
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["kind"] == "best" and "optimizer" not in best
    assert best["metrics"]["best_val_loss"] == pytest.approx(min(e["val_loss"] for e in epochs))
    with Library(library) as lib:
        run = next(r for r in lib.runs() if r["best_checkpoint"] == str((tmp_path / "run" / "best.pt").resolve()))
    assert run["status"] == "completed" and run["config"]["loss"] == cfg.loss


def test_checkpoint_is_self_describing_and_weights_only(library, tmp_path):
    cfg = tiny_config(library, tmp_path / "run", epochs=1)
    train(cfg)
    for name in ("last.pt", "best.pt"):
        ck = torch.load(tmp_path / "run" / name, weights_only=True)  # no custom classes anywhere
        assert ck["format"] == "perceptlab-autoencoder"
        assert ck["model"]["args"]["channels"] == [8, 8, 8, 8, 8]
        assert ck["feature_config"]["n_mels"] == 128
        assert ck["train_config"]["data"]["patch_frames"] == 32
        with Library(library) as lib:
            assert ck["data"]["fingerprint"] == lib.fingerprint()
        assert set(ck["data"]["train_hashes"]).isdisjoint(ck["data"]["val_hashes"])
        assert ck["versions"]["torch"] == str(torch.__version__)
        assert ck["progress"]["epoch"] == 1
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= set(last)
    assert isinstance(last["rng"]["torch"], torch.Tensor)
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no temp files


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def test_patches_follow_windows_and_split_is_by_clip(library):
    rng = np.random.default_rng(0)
    for t in (5, 32, 33, 47, 100, 129):
        img = rng.random((4, t), dtype=np.float32)
        ps = PatchSet([img], 32, 8)
        np.testing.assert_array_equal(ps.batch(range(len(ps)))[:, 0].numpy(), windows(img, 32, 8))
        assert window_starts(t, 32, 8)[-1] == max(0, t - 32)
    with Library(library) as lib:
        clips = lib.clips()
    train_a, val_a = split_clips(clips, 0.25, 0)
    train_b, val_b = split_clips(list(reversed(clips)), 0.25, 0)
    assert [c.content_hash for c in val_a] == [c.content_hash for c in val_b]  # order-independent
    assert {c.content_hash for c in train_a}.isdisjoint({c.content_hash for c in val_a})
    assert sorted(c.label for c in val_a) == ["high", "low", "mid"]  # one per label
    assert split_clips(clips, 0.25, 1)[1] != val_a  # the seed matters


def test_augmentation_moves_and_levels_patches_within_the_clip():
    rng = np.random.default_rng(0)
    img = rng.random((4, 80), dtype=np.float32) * 0.9 + 0.05
    img[:, :10] = 0.0  # silence at the floor
    ps = PatchSet([img], 32, 16)
    plain = ps.batch(range(len(ps)))
    # No augmentation: exactly the grid patches (and no generator needed).
    np.testing.assert_array_equal(plain.numpy(), ps.batch(range(len(ps)), Augment()).numpy())
    # A random crop: every patch is a real 32-frame slice of the clip, most of them moved.
    picks = [0, 1, 1, 1, 2, 2, 2, 3]
    moved = ps.batch(picks, Augment(shift=8), np.random.default_rng(1))[:, 0].numpy()
    slices = [img[:, s : s + 32] for s in range(80 - 32 + 1)]
    assert all(any(np.array_equal(m, sl) for sl in slices) for m in moved)
    assert sum(not np.array_equal(m, plain[i, 0].numpy()) for m, i in zip(moved, picks)) >= 4
    # A gain of g dB adds g / 83 wherever the image is above the floor; silence stays silent.
    aug = Augment(gain_db=6.0, db_range=83.0)
    g = aug.apply_gain(torch.from_numpy(img[:, :32].copy()), 6.0).numpy()
    np.testing.assert_allclose(g[:, 10:], np.clip(img[:, 10:32] + 6 / 83, 0, 1), atol=1e-7)
    assert (g[:, :10] == 0).all()
    with pytest.raises(ValueError, match="random generator"):
        ps.batch([0], Augment(shift=4))


def test_transposed_partner_views_move_every_harmonic_by_the_interval():
    from perceptlab.audio.features import FeatureConfig, mel_frequencies

    hz = mel_frequencies(FeatureConfig())
    aug = Augment(transpose=3.0, band_hz=hz)
    # a 220 Hz harmonic tone: one lit band per harmonic, steady over 8 frames
    img = np.zeros((len(hz), 8), np.float32)
    for k in range(1, 16):
        img[int(np.argmin(np.abs(hz - 220.0 * k)))] = 0.8
    up = aug.apply_transpose(torch.from_numpy(img), 12.0).numpy()
    lit = hz[up[:, 0] > 0.3]
    for k in (1, 2, 3, 5, 8):  # an octave up: energy at 440 k Hz, within the bands' spacing
        near = lit[np.abs(lit - 440.0 * k) < 0.06 * 440.0 * k]
        assert near.size, f"no energy near {440 * k} Hz after transposing an octave up"
    assert up[hz < 400].max() < 0.05  # nothing left below the new fundamental
    np.testing.assert_allclose(aug.apply_transpose(torch.from_numpy(img), 0.0).numpy(), img, atol=1e-6)
    down = aug.apply_transpose(torch.from_numpy(img), -12.0).numpy()
    assert down[hz > hz[-1] / 2 * 1.01].max() == 0.0  # from above the top band: silence
    # What would come from outside the bands is silence, at both ends; everything else is read.
    ones = torch.ones(len(hz), 2)
    up3 = aug.apply_transpose(ones, 3.0)[:, 0].numpy()
    below = hz / 2 ** (3 / 12) < hz[0]
    assert below.any() and (up3[below] == 0).all() and np.allclose(up3[~below], 1.0)
    down3 = aug.apply_transpose(ones, -3.0)[:, 0].numpy()
    above = hz * 2 ** (3 / 12) > hz[-1]
    assert above.any() and (down3[above] == 0).all() and np.allclose(down3[~above], 1.0)
    # Only partner views are transposed, each by at most the limit, and the draw is reproducible.
    ps = PatchSet([img], 8, 8)
    assert torch.equal(ps.batch([0], aug, np.random.default_rng(0)), ps.batch([0]))
    views = ps.other_views([0] * 6, aug, np.random.default_rng(3))
    assert torch.equal(views, ps.other_views([0] * 6, aug, np.random.default_rng(3)))
    assert all(not torch.equal(v[0], torch.from_numpy(img)) for v in views)
    lowest = [hz[np.nonzero(v[0, :, 0].numpy() > 0.3)[0][0]] for v in views]
    assert all(220 * 2 ** (-3.2 / 12) < f < 220 * 2 ** (3.2 / 12) for f in lowest), lowest
    with pytest.raises(ValueError, match="centre frequency of each of the patch's 128 mel bands"):
        Augment(transpose=2.0).apply_transpose(torch.from_numpy(img), 1.0)


def test_augmented_run_trains_and_records_its_training_files(library, tmp_path):
    cfg = tiny_config(library, tmp_path / "run", epochs=2,
                      data={"augment_shift": 6, "augment_gain_db": 3.0})
    assert train(cfg).status == "completed"
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    files = ck["data"]["train_files"]
    assert len(files) == 9 and {f["label"] for f in files} == {"low", "mid", "high"}
    assert [f["content_hash"] for f in files] == ck["data"]["train_hashes"]
    assert all(Path(f["path"]).is_file() and f["duration"] > 1 for f in files)
    assert {f["content_hash"] for f in ck["data"]["val_files"]} == set(ck["data"]["val_hashes"])


def test_view_agreement_rewards_partners_that_match():
    from perceptlab.train.losses import view_agreement

    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 32, generator=g)
    matched = float(view_agreement(a, a + 0.01 * torch.randn(8, 32, generator=g)))
    unrelated = float(view_agreement(a, torch.randn(8, 32, generator=g)))
    assert matched < 0.05  # each patch finds its partner among the 15 others
    assert unrelated > 0.5 * np.log(15)  # no better than chance, roughly
    # Scale and a common offset do not matter: the loss compares centred directions.
    assert float(view_agreement(3 * a + 5, 3 * a + 5)) == pytest.approx(float(view_agreement(a, a)), abs=1e-4)


def test_a_run_with_the_view_agreement_term_trains(library, tmp_path):
    cfg = tiny_config(library, tmp_path / "c", epochs=4, contrastive=0.1, optim={"lr": 1e-2, "schedule": "constant"},
                      data={"augment_gain_db": 3.0, "augment_transpose": 2.0})
    events = []
    assert train(cfg, reporter=CallbackReporter(events.append)).status == "completed"
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    steps = [e for e in events if e["event"] == "step"]
    assert all(np.isfinite(e["train_loss"]) for e in steps)
    ck = load_checkpoint(tmp_path / "c" / "best.pt")
    assert ck["train_config"]["contrastive"] == 0.1
    assert ck["train_config"]["data"]["augment_transpose"] == 2.0
    with pytest.raises(ConfigError, match="contrastive_temperature: must be > 0"):
        tiny_config(library, tmp_path / "x", contrastive=0.1, contrastive_temperature=0.0)


def test_the_mse_scale_gives_each_loss_the_size_of_mse_and_keeps_its_gradient_direction():
    from perceptlab.train.losses import ReconstructionLoss, mse_scale

    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 64, 64, generator=g)
    for loss in ("mse", "nlpd", "msssim"):
        r = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1).requires_grad_()
        plain = ReconstructionLoss({loss: 1.0})(r, x)
        (g_plain,) = torch.autograd.grad(plain, r, retain_graph=True)
        scaled = plain * mse_scale(r, x, plain)
        (g_scaled,) = torch.autograd.grad(scaled, r)
        assert float(scaled.detach()) == pytest.approx(float(torch.mean((r.detach() - x) ** 2)), rel=1e-5)
        cos = torch.nn.functional.cosine_similarity(g_plain.flatten(), g_scaled.flatten(), dim=0)
        assert float(cos) == pytest.approx(1.0, abs=1e-5)  # the same direction, only the size changes
        if loss == "mse":
            assert float(mse_scale(r, x, plain)) == pytest.approx(1.0, abs=1e-6)
        else:  # NLPD and 1 - MS-SSIM are far larger than MSE on these patches
            assert float(mse_scale(r, x, plain)) < 0.5


def test_view_agreement_weighed_against_the_size_of_mse(library, tmp_path):
    common = dict(epochs=2, contrastive=0.1, optim={"lr": 1e-2, "schedule": "constant"})
    # With an MSE loss the two scales are the same objective: the same run, step for step.
    runs = {}
    for scale in ("absolute", "mse"):
        events = []
        cfg = tiny_config(library, tmp_path / f"mse-{scale}", contrastive_scale=scale, **common)
        assert train(cfg, reporter=CallbackReporter(events.append)).status == "completed"
        steps = [e for e in events if e["event"] == "step"]
        runs[scale] = [e["train_loss"] for e in steps]
        # Each step also reports the reconstruction loss alone: below the objective, which
        # adds the (non-negative) agreement term to it.
        assert all(0 < e["recon_loss"] < e["train_loss"] for e in steps)
    np.testing.assert_allclose(runs["mse"], runs["absolute"], rtol=1e-4)
    # With NLPD the optimised loss is in MSE units: far below the NLPD a plain run reports.
    events = []
    cfg = tiny_config(library, tmp_path / "nlpd", contrastive_scale="mse", loss="nlpd", **common)
    assert train(cfg, reporter=CallbackReporter(events.append)).status == "completed"
    epochs = [e for e in events if e["event"] == "epoch"]
    assert all(np.isfinite(e["train_loss"]) for e in epochs)
    assert epochs[-1]["val_loss"] > epochs[-1]["train_loss"]  # validation is NLPD itself, unscaled
    # ... and so is the reconstruction loss each step reports: near validation, not near the objective.
    last = [e for e in events if e["event"] == "step"][-1]
    assert last["recon_loss"] > 2 * last["train_loss"]
    assert 0.5 < last["recon_loss"] / epochs[-1]["val_loss"] < 2
    # The epoch's mean of it, in the event and in the checkpoint's history.
    for e in epochs:
        assert e["train_recon_loss"] > 2 * e["train_loss"] and 0.5 < e["train_recon_loss"] / e["val_loss"] < 2
    history = load_checkpoint(tmp_path / "nlpd" / "last.pt")["metrics"]["history"]
    assert [h["train_recon_loss"] for h in history] == pytest.approx([e["train_recon_loss"] for e in epochs])
    assert load_checkpoint(tmp_path / "nlpd" / "best.pt")["train_config"]["contrastive_scale"] == "mse"
    with pytest.raises(ConfigError, match="contrastive_scale: must be one of 'absolute', 'mse', got 'nlpd'"):
        tiny_config(library, tmp_path / "x", contrastive=0.1, contrastive_scale="nlpd")


def test_a_run_with_view_agreement_cancelled_mid_epoch_resumes_to_the_same_epoch_means(library, tmp_path):
    common = dict(epochs=2, contrastive=0.1, contrastive_scale="mse", loss="nlpd", log_every=1,
                  optim={"lr": 1e-2, "schedule": "constant"})
    whole = []
    assert train(tiny_config(library, tmp_path / "whole", **common),
                 reporter=CallbackReporter(whole.append)).status == "completed"
    cut = []
    cfg = tiny_config(library, tmp_path / "cut", **common)
    steps_per_epoch = next(e for e in whole if e["event"] == "start")["steps_per_epoch"]
    assert steps_per_epoch >= 2, "the test needs a cut inside the first epoch"
    stopped = train(cfg, reporter=CallbackReporter(cut.append),
                    cancel=lambda: sum(e["event"] == "step" for e in cut) >= 1)
    assert stopped.status == "interrupted"
    assert train(cfg, resume=True, reporter=CallbackReporter(cut.append)).status == "completed"
    ends = {name: [e for e in ev if e["event"] == "epoch"] for name, ev in (("whole", whole), ("cut", cut))}
    for key in ("train_loss", "train_recon_loss", "val_loss"):
        np.testing.assert_allclose([e[key] for e in ends["cut"]], [e[key] for e in ends["whole"]], rtol=1e-4)


def test_early_stopping_and_time_budget_end_the_run_and_say_why(library, tmp_path):
    # A learning rate of ~0 cannot improve the validation loss after epoch 1.
    cfg = tiny_config(library, tmp_path / "es", epochs=20, patience=2,
                      optim={"lr": 1e-12, "schedule": "constant"})
    events = []
    result = train(cfg, reporter=CallbackReporter(events.append))
    done = events[-1]
    assert result.status == "completed" and result.epochs < 20
    assert done["stopped"].startswith("early stop: no better validation loss for 2 epochs")
    assert result.epochs - result.best_epoch == 2
    # Resuming a run that stopped early trains nothing more.
    again = train(cfg, resume=True)
    assert again.epochs == result.epochs and again.best_epoch == result.best_epoch
    events = []
    cfg = tiny_config(library, tmp_path / "tb", epochs=50, max_minutes=1e-9)
    result = train(cfg, reporter=CallbackReporter(events.append))
    assert result.epochs == 1 and events[-1]["stopped"].startswith("time budget")
    with pytest.raises(ConfigError, match="patience: must be >= 0"):
        tiny_config(library, tmp_path / "x", patience=-1)
    with pytest.raises(ConfigError, match="data.augment_gain_db: must be in \\[0, 40\\]"):
        tiny_config(library, tmp_path / "x", data={"augment_gain_db": 90.0})
    with pytest.raises(ConfigError, match="data.augment_transpose: must be in \\[0, 4\\] semitones"):
        tiny_config(library, tmp_path / "x", contrastive=0.1, data={"augment_transpose": 6.0})
    with pytest.raises(ConfigError, match="data.augment_transpose: transposes the partner views .* which is off"):
        tiny_config(library, tmp_path / "x", data={"augment_transpose": 2.0})


def test_the_progress_line_warns_when_the_best_epoch_is_the_last():
    out = io.StringIO()
    from perceptlab.train.progress import BarReporter

    BarReporter(out).emit("done", epochs=3, step=9, best_val_loss=0.1, best_epoch=3, best="b.pt", last="l.pt",
             elapsed_s=1.0, stopped=None)
    assert "best validation loss came at the last epoch (3)" in out.getvalue()


def test_the_progress_line_shows_the_reconstruction_loss_beside_the_objective():
    from perceptlab.train.progress import BarReporter

    step = dict(epoch=1, step=5, epoch_step=5, steps_per_epoch=10, samples_per_s=40.0, eta_s=3.0, lr=1e-3)
    out = io.StringIO()
    BarReporter(out).emit("step", train_loss=0.0123, recon_loss=0.52, **step)
    assert "loss 0.0123 (reconstruction 0.52) lr" in out.getvalue()
    out = io.StringIO()
    BarReporter(out).emit("step", train_loss=0.0123, **step)
    assert "reconstruction" not in out.getvalue()


# --------------------------------------------------------------------------
# interrupt and resume (real process, real SIGINT)
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_sigint_then_resume_matches_an_uninterrupted_run(library, tmp_path):
    cfg_file = write_toml(tmp_path / "run.toml", library, tmp_path / "a")
    env = dict(ONE_THREAD_ENV, PERCEPTLAB_STEP_DELAY_S="0.05")
    proc = subprocess.Popen([sys.executable, "-m", "perceptlab.cli", "train", "--config", str(cfg_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:  # wait until training is really under way
        lines.append(line)
        if '"event":"step"' in line and json.loads(line)["step"] >= 3:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    events = events_of("".join(lines) + out)
    assert proc.returncode == 0, err
    stop = events[-1]
    assert stop["event"] == "interrupted" and stop["signal"] == "SIGINT"
    assert stop["checkpoint"] == str(tmp_path / "a" / "last.pt")
    ck = load_checkpoint(tmp_path / "a" / "last.pt")
    assert 3 <= ck["progress"]["global_step"] < 3 * events[[e["event"] for e in events].index("start")][
        "steps_per_epoch"]

    # a second start without --resume refuses to overwrite the run
    rc, again = _run_cmd(cfg_file)
    assert rc == 2 and "--resume" in again[-1]["message"]

    res = cli("train", "--config", cfg_file, "--resume")  # one thread, like this process
    assert res.returncode == 0, res.stderr
    rev = events_of(res.stdout)
    start = next(e for e in rev if e["event"] == "start")
    assert start["step"] == ck["progress"]["global_step"] and start["resumed_from"].endswith("last.pt")
    assert rev[-1]["event"] == "done"

    # the same run without interruption, in this process
    ref = load_config(cfg_file, [f"out_dir={json.dumps(str(tmp_path / 'b'))}"])
    result = train(ref)
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["progress"]["global_step"] == b["progress"]["global_step"] == result.step
    for k, v in b["model"]["state_dict"].items():
        torch.testing.assert_close(a["model"]["state_dict"][k], v, rtol=1e-4, atol=1e-6)
    ha, hb = a["metrics"]["history"], b["metrics"]["history"]
    assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb] == [1, 2, 3]
    for x, y in zip(ha, hb):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4)


def test_an_error_mid_run_leaves_the_last_good_checkpoint(library, tmp_path, monkeypatch):
    from perceptlab.models.autoencoder import AutoEncoder
    from perceptlab.train import TrainError

    armed = {"on": False}
    real_forward = AutoEncoder.forward

    def flaky(self, x):
        if armed["on"]:  # a step of the second epoch, after last.pt was written once
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, x)

    def arm(event):
        if event["event"] == "epoch":
            armed["on"] = True

    monkeypatch.setattr(AutoEncoder, "forward", flaky)
    cfg = tiny_config(library, tmp_path / "run", epochs=3)
    with pytest.raises(TrainError, match="out of memory.*batch_size") as info:
        train(cfg, reporter=CallbackReporter(arm))
    assert info.value.kind == "oom"
    last = tmp_path / "run" / "last.pt"
    ck = load_checkpoint(last)
    assert ck["progress"]["epoch"] == 1 and ck["progress"]["epoch_step"] == 0

    # the command reports it as one error event, exit 1, and leaves last.pt alone
    class Stream(io.StringIO):
        def write(self, text):
            if '"event":"epoch"' in text:
                armed["on"] = True
            return super().write(text)

    armed["on"] = False
    before = last.read_bytes()
    out = Stream()
    rc = run_train_command(None, [f"{k}={json.dumps(v)}" for k, v in {
        "name": "tiny", "epochs": 3, "batch_size": 8, "seed": 3, "loss": "mse",
        "out_dir": str(tmp_path / "run"), "data.library": str(library), "data.patch_frames": 32,
        "data.patch_hop": 16, "data.val_fraction": 0.25, "model.channels": [8, 8, 8, 8, 8],
        "model.latent_dim": 8, "optim.lr": 3e-3, "optim.schedule": "constant", "log_every": 1}.items()],
        resume=True, progress="json", stream=out)
    events = events_of(out.getvalue())
    assert rc == 1 and events[-1]["event"] == "error" and events[-1]["kind"] == "oom", events[-1]
    assert "batch_size" in events[-1]["message"]
    assert [e["event"] for e in events].count("epoch") == 1  # epoch 2 finished, epoch 3 failed
    after = load_checkpoint(last)
    assert after["progress"]["epoch"] == 2 and last.read_bytes() != before


# --------------------------------------------------------------------------
# DDP: two processes on the CPU with gloo
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_ddp_with_gloo(library, tmp_path):
    cfg_file = write_toml(tmp_path / "run.toml", library, tmp_path / "ddp")
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "perceptlab.cli", "train", "--config", str(cfg_file), "--set", "epochs=2"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    events = events_of(out.stdout)
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1  # only rank 0 reports
    start = events[kinds.index("start")]
    assert start["world_size"] == 2 and start["device"] == "cpu"
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 2 and all(np.isfinite(e["val_loss"]) for e in epochs)
    ck = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ck["hardware"]["world_size"] == 2 and ck["progress"]["epoch"] == 2
    assert not any(k.startswith("module.") for k in ck["model"]["state_dict"])  # the bare model's weights


# --------------------------------------------------------------------------
# bad input: one clear error, nothing written
# --------------------------------------------------------------------------


def _run_cmd(config, sets=()):
    out = io.StringIO()
    rc = run_train_command(str(config) if config else None, list(sets), progress="json", stream=out)
    events = events_of(out.getvalue())
    return rc, events


def test_unknown_key_is_named_through_the_real_command(library, tmp_path):
    cfg = write_toml(tmp_path / "bad.toml", library, tmp_path / "out", extra="learning_rate = 0.1\n")
    out = cli("train", "--config", cfg)
    assert out.returncode == 2
    (event,) = events_of(out.stdout)
    assert event["event"] == "error" and event["kind"] == "config"
    assert "learning_rate: unknown key" in event["message"] and str(cfg) in event["message"]
    assert "perceptlab: error:" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sets, needle", [
    (["optim.lrr=1"], "optim.lrr: unknown key in [optim]"),
    (["loss=ssim"], "loss.ssim: unknown loss 'ssim'"),
    (["loss.nlpd=-1"], "loss.nlpd: weight must be >= 0"),
    (["epochs=0"], "epochs: must be at least 1"),
    (["batch_size=\"big\""], "batch_size: must be an integer"),
    (["optim.schedule=linear"], "optim.schedule: must be one of cosine, constant"),
    (["data.val_fraction=1.5"], "data.val_fraction: must be in [0, 1)"),
    (["data.patch_frames=48"], "data.patch_frames: 48 is not a multiple of 2**len(channels) = 32"),
    (["device=tpu"], "device: must be one of auto, cpu, cuda"),
    (["features.n_mel=64"], "features.n_mel: unknown key in [features]"),
    (["nonsense"], "expected KEY=VALUE"),
])
def test_bad_config_values_name_the_key(library, tmp_path, sets, needle):
    cfg = write_toml(tmp_path / "c.toml", library, tmp_path / "out")
    rc, events = _run_cmd(cfg, sets)
    assert rc == 2 and len(events) == 1 and events[0]["event"] == "error", events
    assert needle in events[0]["message"]
    assert not (tmp_path / "out").exists()


def test_empty_library_missing_library_and_labels(tmp_path):
    empty = tmp_path / "empty.sqlite"
    Library(empty).close()
    rc, events = _run_cmd(None, [f"data.library={json.dumps(str(empty))}", f"out_dir={json.dumps(str(tmp_path / 'o'))}"])
    assert rc == 2 and events[-1]["kind"] == "data"
    assert "no usable clips" in events[-1]["message"] and "perceptlab import" in events[-1]["message"]
    missing = tmp_path / "missing.sqlite"
    rc, events = _run_cmd(None, [f"data.library={json.dumps(str(missing))}"])
    assert rc == 2 and "no library here" in events[-1]["message"] and not missing.exists()


def test_label_filter_without_matches(library, tmp_path):
    rc, events = _run_cmd(None, [f"data.library={json.dumps(str(library))}", 'data.labels=["jazz"]',
                                 f"out_dir={json.dumps(str(tmp_path / 'o'))}"])
    assert rc == 2 and "data.labels: no clips with labels ['jazz']" in events[-1]["message"]
    assert "high, low, mid" in events[-1]["message"]


def test_clips_too_short(tmp_path):
    lib_path = tmp_path / "short.sqlite"
    for i in range(4):
        write_clip(tmp_path / "c" / "x" / f"s{i}.wav", seconds=0.1, freq=300 + 50 * i)
    with Library(lib_path) as lib:
        import_files(lib, [tmp_path / "c"])
    cfg = tiny_config(lib_path, tmp_path / "o")
    with pytest.raises(DataError, match=r"all 4 clips are too short.*data.min_clip_frames = 16 frames"):
        train(cfg)
    rc, events = _run_cmd(None, [f"data.library={json.dumps(str(lib_path))}", f"out_dir={json.dumps(str(tmp_path / 'o'))}"])
    assert rc == 2 and "too short" in events[-1]["message"]
    assert not (tmp_path / "o").exists()


def test_resume_needs_a_checkpoint_and_the_same_config(library, tmp_path):
    cfg = tiny_config(library, tmp_path / "run", epochs=1)
    with pytest.raises(Exception, match="nothing to resume"):
        train(cfg, resume=True)
    train(cfg)
    changed = tiny_config(library, tmp_path / "run", epochs=2, loss="nlpd")
    with pytest.raises(ConfigError, match=r"cannot resume.*differs.*\bloss\b"):
        train(changed, resume=True)
    more = tiny_config(library, tmp_path / "run", epochs=2)  # more epochs is allowed
    assert train(more, resume=True).epochs == 2


def test_a_run_saved_before_newer_config_keys_existed_resumes(library, tmp_path):
    from perceptlab.models.checkpoint import save_checkpoint

    train(tiny_config(library, tmp_path / "run", epochs=1))
    last = tmp_path / "run" / "last.pt"
    ck = load_checkpoint(last)
    for key in ("patience", "max_minutes", "contrastive", "contrastive_temperature", "contrastive_scale"):
        del ck["train_config"][key]  # as an older perceptlab wrote it
    del ck["train_config"]["model"]["embed_from"]
    del ck["train_config"]["data"]["augment_shift"]
    save_checkpoint(ck, last)
    assert train(tiny_config(library, tmp_path / "run", epochs=2), resume=True).epochs == 2
    # A key the old run did have, set differently, is still refused.
    ck = load_checkpoint(last)
    with pytest.raises(ConfigError, match="differs.*contrastive"):
        train(tiny_config(library, tmp_path / "run", epochs=3, contrastive=0.5), resume=True)


def test_override_parsing():
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 1e-3)
    assert parse_override("data.library=/tmp/x.sqlite") == ("data.library", "/tmp/x.sqlite")
    assert parse_override('data.labels=["a", "b"]') == ("data.labels", ["a", "b"])
    assert parse_override("amp=true") == ("amp", True)
    raw = apply_overrides({"loss": "nlpd"}, ["loss.mse=0.1"])
    assert raw["loss"] == {"nlpd": 1.0, "mse": 0.1}
    cfg = config_from_dict(apply_overrides({}, ["loss=msssim", "optim.lr=0.01"]))
    assert cfg.loss == {"msssim": 1.0} and cfg.optim.lr == 0.01
    with pytest.raises(ConfigError, match="optim.lr: must be > 0"):
        config_from_dict({"optim": {"lr": 0}})


def test_bench_train_prints_ratios_to_mse(capsys, monkeypatch):
    from perceptlab.train import bench

    monkeypatch.setattr(bench, "_patches", lambda n, f=128, t=128, seed=0: torch.rand(n, 1, f, t))
    res = bench.run_train_bench(steps=1, batch=2, rounds=1)
    text = capsys.readouterr().out
    assert set(res["cpu"]) == {"mse", "nlpd", "msssim"}
    assert "step cost x 1.00 of MSE" in text and "nlpd" in text


def test_terminal_progress_bar_is_readable(library, tmp_path):
    from perceptlab.train.progress import BarReporter

    out = io.StringIO()
    cfg = tiny_config(library, tmp_path / "run", epochs=2)
    train(cfg, reporter=BarReporter(out))
    text = out.getvalue()
    assert "training tiny on cpu" in text and "9 / 3 clips" in text
    assert "epoch 1/2 [" in text and "epoch 2/2: train" in text and "*best*" in text
    assert f"-> {tmp_path / 'run' / 'best.pt'}" in text
    assert '{"event"' not in text and "params, loss mse\n" in text  # no JSON on a terminal


def test_repooling_reads_the_embedding_from_other_maps_of_the_same_weights(library, tmp_path):
    from perceptlab.models import Encoder
    from perceptlab.models.checkpoint import CheckpointError
    from perceptlab.train.repool import repool_checkpoint

    cfg = tiny_config(library, tmp_path / "run", epochs=1)
    train(cfg)
    src = tmp_path / "run" / "best.pt"
    new = repool_checkpoint(src, tmp_path / "stages.pt", ("stage0", "latent"))
    old = load_checkpoint(src)
    for k, v in old["model"]["state_dict"].items():  # the weights are untouched
        assert torch.equal(new["model"]["state_dict"][k], v)
    enc = Encoder.load(tmp_path / "stages.pt", "cpu")
    # stage0: 8 channels x 64 mel rows; latent: 8 channels x 4 rows; mean and std of each
    assert enc.patch_dim == 2 * 8 * 64 + 2 * 8 * 4 == new["embedding_stats"]["mean"].shape[0]
    assert enc.model_hash != old["model_hash"] and new["repooled_from"]["embed_from"] == ["latent"]
    # The statistics are over the run's own training patches: repooling to the
    # original maps gives back the checkpoint's statistics.
    same = repool_checkpoint(src, tmp_path / "same.pt", ("latent",))
    torch.testing.assert_close(same["embedding_stats"]["mean"], old["embedding_stats"]["mean"], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="embed_from: must list distinct maps among latent, stage0"):
        repool_checkpoint(src, tmp_path / "bad.pt", ("stage9",))
    with pytest.raises(CheckpointError, match="only a best.pt"):
        repool_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "bad.pt", ("latent",))


def test_a_run_that_fails_is_recorded_as_failed_with_the_reason(library, tmp_path, monkeypatch):
    from perceptlab.train import loop

    def broken(self, *args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(loop._Run, "_loop", broken)
    cfg = tiny_config(library, tmp_path / "run", epochs=1)
    with pytest.raises(RuntimeError, match="the disk went away"):
        train(cfg)
    with Library(library) as lib:
        run = next(r for r in lib.runs() if r["out_dir"] == str((tmp_path / "run").resolve()))
    assert run["status"] == "failed" and run["error"] == "RuntimeError: the disk went away"
    assert run["ended_at"] is not None and run["final_metrics"]["step"] == 0
