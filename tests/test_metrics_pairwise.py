"""All-pairs matrices, nearest-neighbour queries, indexes, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perceptlab.metrics import (
    Cancelled,
    GenericIndex,
    Metric,
    NLPDIndex,
    build_index,
    distance_matrix,
    embedding_metric,
    get_metric,
    mse,
    msssim,
    nearest,
    nlpd,
    register_metric,
    unregister_metric,
)

METRICS = {"mse": mse, "nlpd": nlpd, "msssim": msssim}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def spec_set(n: int = 12, h: int = 32, w: int = 48, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """n spectrogram-like clips (n, 1, h, w) in [0, 1], with a few near-duplicates."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, h, w, generator=g, dtype=torch.float64)
    base = torch.nn.functional.avg_pool2d(base, 5, 1, 2)
    f = torch.linspace(0.7, 0.2, h, dtype=torch.float64)[:, None]
    x = (f + 0.8 * (base - 0.5)).clamp(0, 1)
    # near-duplicates stress the Gram-matrix cancellation
    x[1] = (x[0] + 1e-4 * torch.randn(1, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    x[2] = x[0]
    return x.to(dtype)


def pair_reference(fn, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    i, j = torch.triu_indices(n, n, 1)
    d = torch.zeros(n, n, dtype=torch.float64)
    d[i, j] = fn(x[i], x[j]).double()
    return d + d.T


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_equals_pair_function(name, dtype):
    x = spec_set(dtype=dtype)
    d = distance_matrix(x, name)
    assert d.shape == (12, 12) and d.dtype == torch.float64 and d.device.type == "cpu"
    ref = pair_reference(METRICS[name], x)
    torch.testing.assert_close(d, ref, atol=1e-5, rtol=0)
    assert (d.diag() == 0).all()
    assert torch.equal(d, d.T)  # exact: one triangle is computed and mirrored
    assert float(d[0, 2]) == pytest.approx(0.0, abs=1e-7)  # exact duplicate


@pytest.mark.parametrize("name", list(METRICS))
def test_matrix_small_memory_budget_and_numpy_input(name):
    x = spec_set(n=9, h=24, w=30)
    full = distance_matrix(x, name)
    # a budget below one block forces the smallest tiles
    tiny = distance_matrix(x.numpy(), name, memory_budget_mb=0.01)
    torch.testing.assert_close(tiny, full, atol=1e-7, rtol=0)


def test_matrix_odd_sizes_match_pairs():
    x = spec_set(n=6, h=27, w=41, seed=3)
    for name, fn in METRICS.items():
        torch.testing.assert_close(distance_matrix(x, name), pair_reference(fn, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(METRICS))
def test_nearest_agrees_with_matrix(name):
    x = spec_set(n=12, seed=4)
    d = distance_matrix(x, name)
    index = build_index(x, name)
    assert len(index) == 12
    for q in (0, 5, 11):
        idx, dist = nearest(x[q], index, k=4)
        order = torch.sort(d[q], stable=True).indices[:4]
        assert idx.tolist() == order.tolist(), (name, q)
        torch.testing.assert_close(dist, d[q, order], atol=1e-5, rtol=0)
        # excluding the query itself
        idx2, _ = index.nearest(x[q], 3, exclude=[q])
        assert q not in idx2.tolist()
    # the one-shot form builds an index internally
    idx, _ = nearest(x[3:4], x, name, k=2)
    assert idx[0] == 3
    # a batch of queries gives rows of the matrix
    torch.testing.assert_close(index.distances(x[:3]), d[:3], atol=1e-5, rtol=0)


def test_nlpd_index_exact_for_near_duplicates():
    x = spec_set(n=8)
    index = NLPDIndex(x)
    got = index.distances(x[0])
    want = nlpd(x[0:1].expand(8, -1, -1, -1), x).double()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert 0 < float(got[1]) < 1e-3  # the near-duplicate is resolved, not lost
    assert float(got[0]) == 0.0


def test_progress_and_cancel():
    x = spec_set(n=10)
    for name in METRICS:
        calls = []
        distance_matrix(x, name, memory_budget_mb=0.05, progress=lambda d, t: calls.append((d, t)))
        assert calls and calls[0][0] == 0 and calls[-1][0] == calls[-1][1], name
        assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))

        polls = {"n": 0}

        def cancel():
            polls["n"] += 1
            return polls["n"] > 2  # let two chunks run, then stop

        with pytest.raises(Cancelled):
            distance_matrix(x, name, memory_budget_mb=0.05, cancel=cancel)
        assert polls["n"] == 3
    with pytest.raises(Cancelled):
        NLPDIndex(x, cancel=lambda: True)


def test_bad_inputs():
    x = spec_set(n=4)
    with pytest.raises(ValueError, match="unknown metric"):
        distance_matrix(x, "nope")
    with pytest.raises(ValueError, match="4 dimensions"):
        distance_matrix(x[:, 0], "nlpd")
    with pytest.raises(ValueError, match="outside"):
        distance_matrix(x * 3, "mse")
    bad = x.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        distance_matrix(bad, "msssim")
    with pytest.raises(ValueError, match="too small"):
        distance_matrix(torch.rand(3, 1, 6, 40), "msssim")
    index = build_index(x, "nlpd")
    with pytest.raises(ValueError, match="does not match"):
        index.distances(torch.rand(1, 1, 32, 40))
    with pytest.raises(ValueError, match="metric"):
        nearest(x[0], x)


def test_custom_metric_falls_back_to_pair_function():
    l1 = Metric(name="test:l1", display_name="L1", fn=lambda a, b: (a - b).abs().mean((1, 2, 3)))
    register_metric(l1, replace=True)
    try:
        x = spec_set(n=7)
        d = distance_matrix(x, "test:l1", memory_budget_mb=0.02)
        torch.testing.assert_close(d, pair_reference(l1.fn, x), atol=1e-6, rtol=0)
        index = build_index(x, "test:l1")
        assert isinstance(index, GenericIndex)
        idx, dist = index.nearest(x[4], 3)
        assert idx[0] == 4 and float(dist[0]) == 0.0
    finally:
        unregister_metric("test:l1")


def test_embedding_metric_registers_and_uses_vectors():
    x = spec_set(n=8)

    def encode(s):  # a stand-in encoder: mean spectrum per clip
        return s.mean(dim=-1).flatten(1)

    m = embedding_metric("toy", encode, distance="euclidean")
    assert m.name == "embedding:toy"
    register_metric(m, replace=True)
    try:
        d = distance_matrix(x, "embedding:toy")
        torch.testing.assert_close(d, pair_reference(get_metric("embedding:toy").fn, x), atol=1e-6, rtol=0)
        idx, _ = nearest(x[5], x, "embedding:toy", k=1)
        assert idx.tolist() == [5]
    finally:
        unregister_metric("embedding:toy")
    # vector form: works on stored embeddings directly
    vec = embedding_metric("toyvec", None, distance="cosine")
    v = torch.randn(6, 5, dtype=torch.float64)
    d = distance_matrix(v, vec)
    torch.testing.assert_close(d, pair_reference(vec.fn, v), atol=1e-9, rtol=0)
    idx, _ = nearest(v[2], v, vec, k=1)
    assert idx.tolist() == [2]


def test_msssim_matrix_against_pytorch_msssim():
    import pytorch_msssim as pm  # a declared test dependency: missing means a broken setup, not a skip
    x = spec_set(n=4, h=100, w=120, seed=5).double()
    d = distance_matrix(x, "msssim")
    i, j = torch.triu_indices(4, 4, 1)
    theirs = 1 - pm.ms_ssim(x[i], x[j], data_range=1.0, win_size=7, size_average=False)
    torch.testing.assert_close(d[i, j], theirs, atol=1e-5, rtol=0)


@CUDA
@pytest.mark.parametrize("name", list(METRICS))
def test_cuda_matrix_and_index(name):
    x = spec_set(n=10)
    cpu = distance_matrix(x, name)
    gpu = distance_matrix(x, name, device="cuda")
    assert gpu.device.type == "cpu"
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=0)
    index = build_index(x.cuda(), name)
    idx, _ = index.nearest(x[3].cuda(), 3)
    assert idx[0] == 3


def test_results_are_plain_numpy_friendly():
    d = distance_matrix(spec_set(n=5), "nlpd")
    a = d.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float64
