"""The autoencoder and its checkpoints."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perceptlab.audio.features import FeatureConfig
from perceptlab.models import AutoEncoder, CheckpointError, Encoder, ModelConfig, count_parameters
from perceptlab.models.checkpoint import (
    check_plain,
    inference_view,
    load_checkpoint,
    model_key,
    new_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    weights_hash,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@torch.no_grad()
def test_shapes_range_and_size():
    model = AutoEncoder()
    x = torch.rand(3, 1, 128, 128)  # (B, 1, F, T)
    z = model.encode(x)
    assert z.shape == (3, 128, 4, 4) == (3, *ModelConfig().latent_shape)
    # "time" pooling: mean and std over time of each (channel, latent mel row).
    assert model.embed(x).shape == (3, 2 * 128 * 4) == (3, ModelConfig().embedding_dim)
    assert AutoEncoder(ModelConfig(pooling="global")).embed(x).shape == (3, 128)
    y = model(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert 100_000 < count_parameters(model) < 1_500_000  # CPU-trainable, checkpoint < 5 MB
    small = AutoEncoder(ModelConfig(n_mels=64, patch_frames=32, channels=(4, 8), latent_dim=6, convs_per_stage=2))
    assert small(torch.rand(2, 1, 64, 32)).shape == (2, 1, 64, 32)
    assert small.embed(torch.rand(2, 1, 64, 32)).shape == (2, 2 * 6 * 16)


def _moved_blob_patches(shift_rows: int) -> torch.Tensor:
    """Three patches: a harmonic-like blob, the same blob ``shift_rows`` mel rows higher, silence."""
    x = torch.zeros(3, 1, 128, 128)
    for i, top in enumerate((40, 40 + shift_rows)):
        x[i, 0, top : top + 12, 16:112] = 0.8
    return x


def test_time_pooling_keeps_where_in_frequency_a_feature_sits():
    x = _moved_blob_patches(32)  # the same feature, one latent row (32 mel bands) up
    assert torch.equal(x[0, 0, 40:52], x[1, 0, 72:84])  # nothing else differs

    def responses(pooling):
        torch.manual_seed(0)
        e = AutoEncoder(ModelConfig(pooling=pooling)).eval().embed(x).detach()
        d = e[:2] - e[2]  # what the feature adds to the embedding of silence
        return float(torch.nn.functional.cosine_similarity(d[0], d[1], dim=0))

    # Per-row pooling: the moved feature lands in other embedding dimensions.
    assert responses("time") < 0.5
    # The global mean over mel cannot tell the two apart.
    assert responses("global") > 0.99


def test_a_checkpoint_without_recorded_pooling_loads_with_the_global_mean():
    old = ModelConfig(channels=(4,) * 5, latent_dim=4).to_dict()
    del old["pooling"]  # as written before pooling was recorded
    assert ModelConfig.from_dict(old).pooling == "global"
    with pytest.raises(ValueError, match="pooling: must be one of time, global"):
        ModelConfig(pooling="max")


def test_model_config_problems_are_named():
    with pytest.raises(ValueError, match="patch_frames: 100 is not a multiple of 2\\*\\*len\\(channels\\) = 32"):
        ModelConfig(patch_frames=100)
    with pytest.raises(ValueError, match="latent_dim: must be positive"):
        ModelConfig(latent_dim=0)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"width": 3})
    cfg = ModelConfig(channels=[8, 8])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def _checkpoint(model: AutoEncoder, **extra) -> dict:
    return new_checkpoint(model.config.to_dict(), model.state_dict(), FeatureConfig().to_dict(),
                          {"name": "unit", "loss": {"mse": 1.0}}, kind="best", **extra)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AutoEncoder(ModelConfig(channels=(4, 8, 8, 8, 8), latent_dim=8))
    d = model.config.embedding_dim  # 2 * 8 channels * 4 latent mel rows
    stats = {"mean": torch.randn(d), "std": torch.rand(d) + 0.5, "n": 10}
    ck = _checkpoint(model, embedding_stats=stats, rng=rng_state(), metrics={"history": [{"x": 1.5}]})
    path = save_checkpoint(ck, tmp_path / "sub" / "m.pt")
    assert not list(path.parent.glob("*.tmp"))
    back = load_checkpoint(path)
    assert back["model_hash"] == ck["model_hash"] == weights_hash(model.state_dict())
    assert model_key(back) != weights_hash(model.state_dict())  # the statistics are part of the key
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"]["state_dict"][k], v)
    enc = Encoder(back, path, device="cpu")
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        want = (model.embed(x) - stats["mean"]) / stats["std"]
    torch.testing.assert_close(enc.embed_patches(x), want, rtol=1e-5, atol=1e-5)
    assert enc.model_hash == model_key(back) and enc.name == "unit"
    assert "optimizer" not in inference_view({"optimizer": 1, "x": 2})
    # statistics that do not fit the pooling are refused, not broadcast
    bad = dict(back, embedding_stats={"mean": torch.zeros(8), "std": torch.ones(8), "n": 1})
    with pytest.raises(CheckpointError, match="embedding statistics have \\(8,\\) values"):
        Encoder(bad, path, device="cpu")
    # a checkpoint survives a round trip through Encoder.load's cache
    assert Encoder.load(path, "cpu") is Encoder.load(path, "cpu")


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


def test_only_plain_objects_go_into_a_checkpoint(tmp_path):
    check_plain({"a": [1, 2.0, "x", None, (True,)], "t": torch.zeros(2)})
    with pytest.raises(TypeError, match=r"checkpoint\.versions\.torch: a torch\.torch_version\.TorchVersion"):
        check_plain({"versions": {"torch": torch.__version__}})
    with pytest.raises(TypeError):
        save_checkpoint({"p": Path("x")}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "perceptlab-autoencoder", "format_version": 1, "model": Evil(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load") as info:
        load_checkpoint(path)
    assert "system" in str(info.value)
    assert not marker.exists()
    if how == "torch.save":  # and through the command line: one clear line, nothing executed
        from perceptlab.library.store import Library

        Library(tmp_path / "lib.sqlite").close()
        out = subprocess.run([sys.executable, "-m", "perceptlab.cli", "embed", "--checkpoint", str(path),
                              "--library", str(tmp_path / "lib.sqlite")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and f"perceptlab: error: {path}: refused to load" in out.stderr
        assert "Traceback" not in out.stderr
        assert not marker.exists()


def test_other_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="other.pt: not a perceptlab autoencoder checkpoint"):
        load_checkpoint(other)
    truncated = tmp_path / "trunc.pt"
    save_checkpoint(_checkpoint(AutoEncoder(ModelConfig(channels=(4,) * 5, latent_dim=4))), truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(truncated)


@pytest.mark.parametrize("loss", ["mse", "nlpd", "msssim"])
def test_shipped_demo_checkpoints(loss):
    path = ASSETS / f"demo-{loss}.pt"
    # The checkpoints are shipped: a missing one is a broken checkout, not a skip.
    assert path.is_file(), f"{path} is missing (see assets/models/README.md)"
    assert path.stat().st_size < 5 * 1024 * 1024
    ck = load_checkpoint(path)
    assert ck["train_config"]["loss"] == {loss: 1.0} and ck["train_config"]["name"] == f"demo-{loss}"
    assert ck["kind"] == "best" and "embedding_stats" in ck and ck["command"]
    enc = Encoder(ck, path, device="cpu")
    # Made before pooling was recorded: they keep their global-mean embedding.
    assert enc.model_config.pooling == "global"
    assert enc.embed_patches(torch.rand(1, 1, 128, 128)).shape == (1, 128)
