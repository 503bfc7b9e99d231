"""Clip embeddings in the library and the embedding:<name> metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptlab.audio.features import FeatureConfig
from perceptlab.cli import main
from perceptlab.library.features import clip_image, file_image
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.metrics import distance_matrix, get_metric, unregister_metric
from perceptlab.models import AutoEncoder, Encoder, ModelConfig, embed_clip_vectors
from perceptlab.models.checkpoint import new_checkpoint, save_checkpoint
from perceptlab.models.embedding_metric import (
    clip_vectors,
    embed_library,
    library_vectors,
    query_vector,
    register_library_embeddings,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The fixture encoder's clip embedding: mean and std over time of 4 channels x 8 latent mel rows.
DIM = 2 * 4 * 8

# Every library offers these: the image metrics, then the statistics baselines.
BUILTIN_METRICS = ["mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A small (untrained, seeded) model saved as a real checkpoint, with embedding statistics."""
    torch.manual_seed(1)
    cfg = ModelConfig(patch_frames=32, channels=(4, 8, 8, 8), latent_dim=4)  # latent map (4, 8, 2)
    model = AutoEncoder(cfg)
    with torch.no_grad():
        z = model.embed(torch.rand(16, 1, 128, 32) * 0.6)  # (16, DIM), as training does on real patches
    ck = new_checkpoint(cfg.to_dict(), model.state_dict(), FeatureConfig().to_dict(),
                        {"name": "unit-ae", "loss": {"nlpd": 1.0}}, kind="best",
                        embedding_stats={"mean": z.mean(0), "std": z.std(0), "n": 16})
    return save_checkpoint(ck, tmp_path / "unit.pt")


@pytest.fixture
def library(tmp_path, clip_tree) -> Path:
    # an exact copy of one clip under another name: same content, same embedding
    shutil.copy(clip_tree / "low" / "low_0.wav", clip_tree / "mid" / "copy_of_low_0.wav")
    path = tmp_path / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [clip_tree])
    return path


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    for name in ("embedding:unit-ae", "embedding:other", "embedding:eu"):
        unregister_metric(name)


def test_embeddings_round_trip_through_the_library(library, checkpoint, clip_tree):
    with Library(library) as lib:
        summary = embed_library(lib, checkpoint, device="cpu")
        assert summary.name == "unit-ae" and summary.metric == "embedding:unit-ae"
        assert summary.computed == 9 and summary.reused == 0 and summary.failed == []  # 10 clips, 9 contents
        enc = Encoder.load(checkpoint, "cpu")
        stored = lib.get_embeddings(enc.model_hash)
        clips = lib.clips()
        assert len(stored) == 9 and all(v.shape == (DIM,) for v in stored.values())
        c0 = clips[0]
        np.testing.assert_allclose(stored[c0.content_hash], enc.embed_image(clip_image(lib, c0)), rtol=1e-5)
        (model,) = lib.models()
        assert model["name"] == "unit-ae" and model["info"]["distance"] == "cosine"
        assert model["info"]["loss"] == {"nlpd": 1.0} and model["info"]["standardised"] is True
        # again: nothing recomputed
        assert embed_library(lib, checkpoint, device="cpu").reused == 9

        # a fresh process sees it after register_library_embeddings
        unregister_metric("embedding:unit-ae")
        (metric,) = register_library_embeddings(lib)
        assert metric is get_metric("embedding:unit-ae") and metric.input_kind == "vector"
        vecs = library_vectors(lib, "embedding:unit-ae", clips)  # (N, D)
        assert vecs.shape == (10, DIM)
        d = distance_matrix(torch.from_numpy(vecs), "embedding:unit-ae")
        names = [c.name for c in clips]
        i, j = names.index("low_0.wav"), names.index("copy_of_low_0.wav")
        assert abs(float(d[i, j])) < 1e-6  # identical clips: 0
        off = d[~torch.eye(len(clips), dtype=torch.bool)]
        assert float(off.max()) > 1e-3
        single = metric.fn(torch.from_numpy(vecs[[i]]), torch.from_numpy(vecs[[i]]))
        assert abs(float(single)) < 1e-6

        # a file outside the library: embedded on the fly, same vector as the stored copy
        outside = clip_tree.parent / "outside.wav"
        shutil.copy(clip_tree / "high" / "high_1.wav", outside)
        q = type("Q", (), {"path": str(outside), "clip": None})()
        hi = next(c for c in clips if c.name == "high_1.wav")
        np.testing.assert_allclose(query_vector(lib, "embedding:unit-ae", q), stored[hi.content_hash], rtol=1e-5)
        np.testing.assert_allclose(embed_clip_vectors(checkpoint, [file_image(outside)])[0],
                                   stored[hi.content_hash], rtol=1e-5)


def test_browsing_compares_embeddings_z_scored_over_the_library(library, checkpoint, clip_tree):
    from perceptlab.analysis.matrices import cross_distances
    from perceptlab.analysis.neighbours import neighbours
    from perceptlab.analysis.similarity import Query
    from perceptlab.metrics.baselines import standardise

    with Library(library) as lib:
        embed_library(lib, checkpoint, device="cpu")
        clips = lib.clips()
        unique = list({c.content_hash: c for c in sorted(clips, key=lambda c: c.id)}.values())
        raw = library_vectors(lib, "embedding:unit-ae", clips)
        # Like the baselines: each dimension z-scored over the library's distinct clips, then cosine.
        stats = standardise(library_vectors(lib, "embedding:unit-ae", unique))[1]
        z = np.where(stats.kept, (raw - stats.mean) / np.where(stats.kept, stats.std, 1), 0)
        zn = z / np.linalg.norm(z, axis=1, keepdims=True)
        want = 1 - zn @ zn.T
        got = cross_distances(lib, "embedding:unit-ae", clips, clips)
        np.testing.assert_allclose(got, want, atol=1e-5)
        # neighbours of a clip use the same numbers
        q = Query(path=clips[0].path, name=clips[0].name, clip=clips[0])
        ns = neighbours(lib, q, "embedding:unit-ae", k=3)
        order = [j for j in np.argsort(want[0], kind="stable") if clips[j].content_hash != clips[0].content_hash][:3]
        np.testing.assert_allclose([n.distance for n in ns], want[0, order], atol=1e-5)


def test_missing_vectors_are_computed_or_reported(library, checkpoint, clip_tree, tmp_path):
    with Library(library) as lib:
        clips = lib.clips()
        embed_library(lib, checkpoint, clips=clips[:3], name="other", pool="meanstd", distance="euclidean",
                      device="cpu")
        assert clip_vectors(lib, "other", clips).shape == (10, 2 * DIM)  # the rest computed on demand
        ck2 = tmp_path / "gone.pt"
        shutil.copy(checkpoint, ck2)
        embed_library(lib, ck2, clips=clips[:2], name="eu", device="cpu", force=True)
        ck2.unlink()
        with pytest.raises(ValueError, match="embedding:eu: .* no stored embedding .*checkpoint .* is gone"):
            clip_vectors(lib, "embedding:eu", clips)
        with pytest.raises(ValueError, match="no embedding model 'nope'"):
            clip_vectors(lib, "nope", clips)
        assert get_metric("embedding:other").params["distance"] == "euclidean"


def test_embed_command(library, checkpoint, capsys):
    assert main(["embed", "--checkpoint", str(checkpoint), "--library", str(library), "--name", "unit-ae",
                 "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "embedding:unit-ae" and out["computed"] == 9 and out["dim"] == DIM
    assert main(["metrics", "--library", str(library)]) == 0
    assert "embedding:unit-ae" in capsys.readouterr().out


def test_each_library_lists_only_its_own_encoder_metrics(library, checkpoint, tmp_path, clip_tree):
    """The registry is process-wide: a metric one library brought must not be offered for another."""
    from perceptlab.analysis.library_metrics import register_library_metrics

    with Library(library) as lib:
        embed_library(lib, checkpoint, device="cpu")
        assert register_library_metrics(lib) == BUILTIN_METRICS + ["embedding:unit-ae"]
    other = tmp_path / "other.sqlite"
    with Library(other) as lib:
        import_files(lib, [clip_tree / "low"])
        assert get_metric("embedding:unit-ae")  # still registered, from the first library
        assert register_library_metrics(lib) == BUILTIN_METRICS
