"""2-D maps with out-of-sample placement, and Griffin-Lim inversion of log-mel images."""

from __future__ import annotations

import numpy as np
import pytest

from perceptlab.analysis.projection import fit_distance_map, fit_embedding_map


def _blobs(n=30, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[: n // 2] += 4.0
    return x


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_maps_place_new_points_without_refitting(method):
    x = _blobs()
    p = fit_embedding_map(x, method)
    before = p.coords.copy()
    assert p.coords.shape == (30, 2)
    # A fitted point placed again lands where it is; the map itself never moves.
    np.testing.assert_allclose(p.place(x[:3]), p.coords[:3], atol=1e-6)
    new = x[:1] + 0.01
    placed = p.place(new)
    np.testing.assert_array_equal(p.coords, before)
    # ... and near its neighbour, in its own cluster.
    first_cluster = p.coords[:15].mean(0)
    other = p.coords[15:].mean(0)
    assert np.linalg.norm(placed[0] - first_cluster) < np.linalg.norm(placed[0] - other)


def test_mds_of_a_distance_matrix_and_placement():
    x = _blobs()
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    p = fit_distance_map(d)
    assert p.coords.shape == (30, 2)
    # MDS preserves distances roughly: within-cluster pairs closer than across.
    c = p.coords
    within = np.linalg.norm(c[0] - c[1])
    across = np.linalg.norm(c[0] - c[20])
    assert within < across
    np.testing.assert_allclose(p.place(distances=d[:2]), p.coords[:2], atol=1e-9)
    with pytest.raises(ValueError, match="distances"):
        p.place(vectors=x[:1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 3"):
        fit_embedding_map(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown embedding map method"):
        fit_embedding_map(_blobs(), "umap")
    with pytest.raises(ValueError, match="square"):
        fit_distance_map(np.zeros((3, 4)))


def test_griffin_lim_round_trip_is_close_in_log_mel():
    from perceptlab.audio.features import FeatureConfig, log_mel
    from perceptlab.audio.invert import griffin_lim_audio

    cfg = FeatureConfig()
    rate = cfg.sample_rate
    t = np.arange(int(1.5 * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)).astype(np.float32)
    image = log_mel(x, cfg)
    y = griffin_lim_audio(image, cfg, n_iter=16)
    assert y.dtype == np.float32 and abs(len(y) - len(x)) < cfg.hop_length
    again = log_mel(y, cfg)[:, : image.shape[1]]
    # Where the tones are (within 30 dB of the peak) the inversion keeps the level within ~3 dB.
    loud = image > image.max() - 30 / 83
    assert np.abs(again - image)[loud].mean() < 3 / 83
    # The brightest band stays the brightest band.
    assert abs(int(again.mean(1).argmax()) - int(image.mean(1).argmax())) <= 1
    assert np.array_equal(y, griffin_lim_audio(image, cfg, n_iter=16))  # seeded, repeatable
    with pytest.raises(ValueError, match="expected an"):
        griffin_lim_audio(image[:10], cfg)
