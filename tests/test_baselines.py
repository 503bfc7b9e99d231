"""The log-mel and MFCC statistics baselines: vectors, z-scores, distances, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from perceptlab.audio.features import FeatureConfig, log_mel, unit_to_db
from perceptlab.metrics import distance_matrix, get_metric, list_metrics
from perceptlab.metrics.registry import is_baseline
from perceptlab.metrics.baselines import (
    BASELINES,
    apply_standardisation,
    baseline_vectors,
    cosine_distance,
    logmel_stats,
    mfcc_stats,
    raw_vector,
    standardise,
    vector_dim,
)
from perceptlab.metrics.pairwise import build_index

CFG = FeatureConfig()
RATE = CFG.sample_rate
NAMES = ("logmel-stats", "mfcc-stats")


def _harmonic(f0: float, seconds: float = 1.0, decay: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8) if k * f0 < RATE / 2)
    x = x * np.exp(-decay * t)
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _noise(seconds: float = 1.0, seed: int = 1, amp: float = 0.3) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def _quieter(image: np.ndarray, db: float = 6.0) -> np.ndarray:
    """The image of a copy ``db`` quieter: shifted down where it is above the floor."""
    return np.clip(image - db / (CFG.db_ceiling - CFG.db_floor), 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def images():
    """A small varied library: tones of several pitches and decays, noise, a click train."""
    clicks = np.zeros(RATE, np.float32)
    clicks[:: RATE // 8] = 0.9
    waves = [_harmonic(f, decay=d, seed=i) for i, (f, d) in
             enumerate([(110, 0), (220, 0), (220, 3), (440, 0), (440, 5), (880, 1), (1760, 0), (3520, 2)])]
    waves += [_noise(seed=7), _noise(seed=8, amp=0.02), clicks]
    return [log_mel(w, CFG) for w in waves]


def test_vector_shapes_and_dtypes(images):
    im = images[1]
    assert logmel_stats(im, CFG).shape == (2 * CFG.n_mels,) and logmel_stats(im).dtype == np.float32
    assert mfcc_stats(im, CFG).shape == (40,) and mfcc_stats(im).dtype == np.float32
    for name in NAMES:
        assert raw_vector(name, im, CFG).shape == (vector_dim(name, CFG),)
        assert BASELINES[name] is (logmel_stats if name == "logmel-stats" else mfcc_stats)
    # Any clip length: statistics over the whole clip, one frame included.
    assert logmel_stats(im[:, :1]).shape == (256,) and np.all(logmel_stats(im[:, :1])[128:] == 0)
    small = FeatureConfig(n_mels=32)
    assert raw_vector("logmel-stats", np.zeros((32, 5), np.float32), small).shape == (64,)
    with pytest.raises(ValueError, match="unknown baseline"):
        raw_vector("nlpd", im)
    with pytest.raises(ValueError, match="at least 20 mel bands"):
        mfcc_stats(np.zeros((16, 10), np.float32))
    with pytest.raises(ValueError, match=r"\(n_mels, T\)"):
        logmel_stats(im[None])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logmel_stats(im + 0.5)


def test_logmel_stats_are_band_levels_in_db(images):
    im = images[3]
    v = logmel_stats(im, CFG)
    db = unit_to_db(im.astype(np.float64), CFG)
    np.testing.assert_allclose(v[:128], db.mean(1), atol=1e-4)
    np.testing.assert_allclose(v[128:], db.std(1), atol=1e-4)


def test_mfcc_stats_equal_torchaudio_dct_of_the_db_image(images):
    for im in (images[0], images[8], np.random.default_rng(3).random((40, 9000), dtype=np.float32)):
        db = torch.from_numpy(unit_to_db(im.astype(np.float64), CFG))  # (F, T)
        dct = AF.create_dct(20, im.shape[0], norm="ortho").double()  # (F, 20)
        mfcc = torch.matmul(db.transpose(-1, -2), dct).transpose(-1, -2)  # (20, T), as torchaudio's MFCC
        want = torch.cat([mfcc.mean(1), mfcc.std(1, correction=0)]).numpy()
        got = mfcc_stats(im, CFG)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    # A read-only image (a view of cached bytes) and a tensor give the same vector.
    ro = images[0].copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(mfcc_stats(ro, CFG), mfcc_stats(torch.from_numpy(images[0]), CFG))


def test_standardise_gives_zero_mean_and_unit_std(images):
    for name in NAMES:
        raw = np.stack([raw_vector(name, im, CFG) for im in images])
        z, stats = standardise(raw)
        assert z.shape == raw.shape and z.dtype == np.float32
        kept = stats.kept
        assert kept.sum() > raw.shape[1] // 2
        np.testing.assert_allclose(z[:, kept].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(z[:, kept].std(0), 1.0, atol=1e-5)
        np.testing.assert_allclose(apply_standardisation(raw[2], stats), z[2], atol=1e-6)
        z2, _ = baseline_vectors(name, images, CFG)
        np.testing.assert_array_equal(z2, z)
        again = type(stats).from_dict(stats.to_dict())
        np.testing.assert_array_equal(apply_standardisation(raw, again), z)


def test_zero_variance_dimensions_are_left_out():
    raw = np.array([[1.0, -80.0, 3.0], [2.0, -80.0, 5.0], [3.0, -80.0, 4.0]], np.float32)
    z, stats = standardise(raw)
    assert stats.kept.tolist() == [True, False, True]
    assert np.all(z[:, 1] == 0) and np.all(np.isfinite(z))
    # A query that differs in the constant dimension is not dominated by it.
    q = apply_standardisation(np.array([2.0, -20.0, 4.0]), stats)
    assert q[1] == 0 and np.all(np.abs(q) < 10)
    with pytest.raises(ValueError, match="at least 2"):
        standardise(raw[:1])
    with pytest.raises(ValueError, match="D = 3"):
        apply_standardisation(np.zeros(4), stats)


def test_cosine_distance_zero_for_identical_and_symmetric(images):
    for name in NAMES:
        z, _ = baseline_vectors(name, images, CFG)
        x = torch.from_numpy(z)
        m = get_metric(name)
        assert torch.all(m.fn(x, x.clone()) == 0)
        y = x.roll(1, 0)
        d = m.fn(x, y)
        assert torch.all(d > 0) and torch.all(d <= 2)
        torch.testing.assert_close(d, m.fn(y, x), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        cosine_distance(torch.zeros(2, 3), torch.zeros(2, 4))


def test_quieter_copy_is_nearer_than_a_different_clip(images):
    clip = images[1]  # 220 Hz harmonic tone
    quiet = _quieter(clip)
    assert np.isclose(np.median(clip[clip > 0.2] - quiet[clip > 0.2]), 6 / 83)
    for different in (images[8], images[6], images[10]):  # loud noise, a 1760 Hz tone, clicks
        library = images + [quiet]
        for name in NAMES:
            z, stats = baseline_vectors(name, library, CFG)
            i, q = 1, len(library) - 1
            j = next(k for k, im in enumerate(library) if im is different)
            m = get_metric(name)
            x = torch.from_numpy(z)
            near = float(m.fn(x[i : i + 1], x[q : q + 1])[0])
            far = float(m.fn(x[i : i + 1], x[j : j + 1])[0])
            assert near < far, (name, near, far)
            assert near < 0.5 * far, (name, near, far)
            # Of the whole library, the quieter copy is the clip's nearest neighbour.
            others = [k for k in range(len(library)) if k != i]
            d = m.fn(x[i : i + 1].expand(len(others), -1), x[others])
            assert others[int(d.argmin())] == q, (name, d)


def test_registry_lists_both_as_vector_baselines():
    names = [m.name for m in list_metrics()]
    assert names[:3] == ["mse", "nlpd", "msssim"]
    assert set(NAMES) <= set(names)
    assert get_metric("logmel-stats").display_name == "Log-mel stats"
    assert get_metric("mfcc-stats").display_name == "MFCC stats"
    for name in NAMES:
        m = get_metric(name)
        assert m.input_kind == "vector" and m.direction == "lower_is_closer"
        assert m.pairwise is not None and m.index is not None and m.description
        assert m.params["baseline"] is True and m.params["vector_from"] == "logmel-image"
        assert m.params["distance"] == "cosine" and is_baseline(name) and is_baseline(m)
    assert get_metric("mfcc-stats").params["coefficients"] == 20
    assert not any(is_baseline(n) for n in ("mse", "nlpd", "msssim"))


def test_pairwise_matrix_equals_per_pair_fn(images):
    for name in NAMES:
        z, _ = baseline_vectors(name, images, CFG)
        m = get_metric(name)
        steps = []
        d = distance_matrix(z, name, progress=lambda done, total: steps.append((done, total)))
        n = len(images)
        assert d.shape == (n, n) and d.dtype == torch.float64 and steps[-1] == (1, 1)
        assert torch.equal(d, d.T) and torch.all(d.diagonal() == 0)
        x = torch.from_numpy(z)
        ii, jj = torch.triu_indices(n, n, 1)
        per_pair = m.fn(x[ii], x[jj]).double()
        torch.testing.assert_close(d[ii, jj], per_pair, rtol=0, atol=1e-6)
        # The index answers queries with the same distances; a clip is its own nearest.
        index = build_index(z, name)
        torch.testing.assert_close(index.distances(x[3]), d[3], rtol=0, atol=1e-6)
        idx, _ = index.nearest(x[3], k=1)
        assert int(idx[0]) == 3
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        distance_matrix(np.zeros((3, 1, 8, 8), np.float32), "logmel-stats")


def test_all_zero_rows_are_identical_in_the_matrix():
    z = np.zeros((3, 4), np.float32)
    z[2, 0] = 1.0
    d = get_metric("logmel-stats").pairwise(z)
    assert d[0, 1] == 0 and d[0, 2] == 1
    x = torch.from_numpy(z)
    assert get_metric("logmel-stats").fn(x[:1], x[1:2])[0] == 0
