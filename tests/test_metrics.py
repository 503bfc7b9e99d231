"""Pair metrics: reference vectors, gradients, dtypes/devices, validation, sanity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptlab.metrics import (
    CS_FLOOR,
    check_inputs,
    get_metric,
    list_metrics,
    mse,
    msssim,
    n_scales,
    nlpd,
    nlpd_levels,
    nlpd_transform,
    register_metric,
    scale_weights,
    unregister_metric,
)
from perceptlab.metrics.registry import Metric

METRICS = {"mse": mse, "nlpd": nlpd, "msssim": msssim}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# Shipped with the repository (see its README.md): the tests read nothing else.
REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"


def load_reference():
    d = REFERENCE_DIR
    # A missing or altered file must fail, not skip: the vectors are shipped.
    assert (d / "expected.json").is_file(), f"reference vectors missing from {d}"
    expected = json.loads((d / "expected.json").read_text())
    assert len(expected["pairs"]) == 8
    pairs = []
    for p in expected["pairs"]:
        a = np.load(d / f"pair_{p['pair']}_ref.npy")
        b = np.load(d / f"pair_{p['pair']}_dist.npy")
        assert a.dtype == np.float32 and list(a.shape) == p["shape"]
        assert b.dtype == np.float32 and list(b.shape) == p["shape"]
        digests = [hashlib.sha256(arr.tobytes()).hexdigest()[:16] for arr in (a, b)]
        assert digests == p["sha256_prefix_ref_dist"], f"pair {p['pair']} differs from the one measured"
        pairs.append((p, torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]))
    return pairs


@pytest.fixture(scope="module")
def ref_pairs():
    return load_reference()


def structured(h: int = 64, w: int = 96, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """A spectrogram-like image (1, 1, h, w) in [0.1, 0.9]: harmonics, onsets, texture."""
    g = torch.Generator().manual_seed(seed)
    f = torch.arange(h, dtype=torch.float64)[:, None]
    t = torch.arange(w, dtype=torch.float64)[None, :]
    harmonics = sum(torch.exp(-((f - 6 * k - 3) ** 2) / 2.0) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * torch.cos(2 * np.pi * t / 24.0) ** 2
    tilt = 0.6 - 0.3 * f / h
    texture = torch.nn.functional.avg_pool2d(
        torch.rand(1, 1, h, w, generator=g, dtype=torch.float64), 3, 1, 1
    )[0, 0]
    img = tilt * 0.6 + 0.35 * harmonics * envelope + 0.1 * texture
    img = (img - img.min()) / (img.max() - img.min())
    return (0.1 + 0.8 * img)[None, None].to(dtype)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(np.ceil(3 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    xp = torch.nn.functional.pad(x, (r, r, r, r), mode="replicate")
    y = torch.nn.functional.conv2d(xp, k.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1))


# --------------------------------------------------------------------------
# Reference vectors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nlpd_reference_vectors(ref_pairs, dtype):
    for p, a, b in ref_pairs:
        a, b = a.to(dtype), b.to(dtype)
        levels = nlpd_levels(a, b)[0].double().numpy()
        np.testing.assert_allclose(levels, p["nlpd_level_rms"], atol=1e-5, rtol=0, err_msg=p["pair"])
        assert abs(float(nlpd(a, b)[0]) - p["nlpd"]) < 1e-5, p["pair"]
        # Exact by construction: identical inputs give identical coefficients, so every
        # difference is exactly 0 and the guarded sqrt returns 0 (no epsilon).
        assert float(nlpd(a, a)[0]) == p["nlpd_ref_ref"] == 0.0


def test_nlpd_reference_symmetry(ref_pairs):
    expected = json.loads((REFERENCE_DIR / "expected.json").read_text())
    by_id = {p["pair"]: (a, b) for p, a, b in ref_pairs}
    assert expected["symmetry_check"], "no symmetry cases in expected.json"
    for s in expected["symmetry_check"]:
        a, b = by_id[s["pair"]]
        assert abs(float(nlpd(a, b)[0]) - s["nlpd_ref_dist"]) < 1e-5
        assert abs(float(nlpd(b, a)[0]) - s["nlpd_dist_ref"]) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_msssim_reference_vectors(ref_pairs, dtype):
    for p, a, b in ref_pairs:
        assert n_scales(*p["shape"]) == p["scales_used"]
        np.testing.assert_allclose(scale_weights(p["scales_used"]), p["weights_used"], atol=1e-9)
        value = 1.0 - float(msssim(a.to(dtype), b.to(dtype))[0])
        assert abs(value - p["msssim_vainf"]) < 1e-5, (p["pair"], value)


def test_nlpd_transform_shapes():
    x = torch.rand(3, 1, 37, 50)
    coeffs = nlpd_transform(x)
    assert len(coeffs) == 6
    h, w = 37, 50
    for c in coeffs:
        assert c.shape == (3, 1, h, w)
        h, w = (h + 1) // 2, (w + 1) // 2
    # the metric is the mean of the per-level RMS of these coefficients
    y = torch.rand(3, 1, 37, 50)
    cy = nlpd_transform(y)
    manual = torch.stack([(a - b).square().mean((1, 2, 3)).sqrt() for a, b in zip(coeffs, cy)], 1).mean(1)
    torch.testing.assert_close(manual, nlpd(x, y), atol=1e-6, rtol=0)


def test_nlpd_orientation_matters():
    x = structured(48, 48)
    y = blur(x, 1.0)
    d = float(nlpd(x, y)[0])
    dt = float(nlpd(x.transpose(-1, -2).contiguous(), y.transpose(-1, -2).contiguous())[0])
    assert d != pytest.approx(dt, abs=1e-6)


def test_msssim_matches_pytorch_msssim_oracle():
    import pytorch_msssim as pm  # a declared test dependency: missing means a broken setup, not a skip
    torch.manual_seed(3)
    x = torch.cat([structured(128, 160, seed=s) for s in range(2)])
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    ours = msssim(x.double(), y.double())
    theirs = 1 - pm.ms_ssim(x.double(), y.double(), data_range=1.0, win_size=7, size_average=False)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_msssim_scale_rule():
    assert [n_scales(s, 500) for s in (6, 7, 12, 13, 24, 25, 48, 49, 96, 97, 128)] == [
        0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5,
    ]
    assert sum(scale_weights(3)) == pytest.approx(1.0)
    assert scale_weights(5) == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    x = torch.rand(2, 1, 7, 300)
    assert msssim(x, x.flip(-1)).shape == (2,)


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


def test_gradcheck_nlpd():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 24, 24, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nlpd(a, b, validate=False), (x, y))


def test_gradcheck_msssim():
    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 40, dtype=torch.float64), 3, 1, 1)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert n_scales(40, 40) == 3
    # fast_mode checks random projections of the Jacobian: same power to find
    # a wrong backward, ~50x cheaper than the full 3200-column Jacobian.
    assert torch.autograd.gradcheck(
        lambda a, b: msssim(a, b, validate=False),
        (x.requires_grad_(), y.requires_grad_()),
        fast_mode=True,
    )
    # and the full Jacobian on a smaller single-scale image
    x1 = torch.rand(1, 1, 10, 11, dtype=torch.float64, requires_grad=True)
    y1 = torch.rand(1, 1, 10, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: msssim(a, b, validate=False), (x1, y1))


def test_gradcheck_mse():
    x = torch.rand(2, 1, 8, 9, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 8, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mse(a, b, validate=False), (x, y))


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_gradients_identical_and_inverted(name, dtype):
    fn = METRICS[name]
    x = structured(48, 64, dtype=dtype)
    for other in (x.clone(), 1.0 - x):
        a = x.clone().requires_grad_()
        b = other.clone().requires_grad_()
        fn(a, b).sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), name
    # identical inputs: distance exactly 0 (by construction, see
    # test_identity_symmetry_positivity) and the subgradient 0
    a = x.clone().requires_grad_()
    d = fn(a, x)
    d.sum().backward()
    assert float(d.detach()[0]) == 0.0
    assert float(a.grad.abs().max()) < 1e-6


def test_msssim_floor_keeps_gradients_where_relu_kills_them():
    # Fine-scale texture inverted, coarse structure shared: cs at scale 1 is
    # negative. ReLU (pytorch-msssim) gives distance 1 and zero gradients;
    # the floor keeps the other scales' signal.
    torch.manual_seed(0)
    h, w = 112, 160
    ramp = torch.linspace(0.3, 0.7, w).expand(h, w) + torch.linspace(-0.1, 0.1, h)[:, None]
    noise = 0.08 * torch.sign(torch.randn(h, w))
    x = (ramp + noise)[None, None].double()
    y = (ramp - noise)[None, None].double().requires_grad_()
    d = msssim(x, y)
    d.backward()
    assert 0.5 < float(d.detach()[0]) < 1.0
    assert float(y.grad.abs().max()) > 0
    assert torch.isfinite(y.grad).all()
    # y = 1 - x: the anti-correlated scales sit at the floor, the distance
    # stays just below 1 (flat regions still count as structurally equal)
    xs = structured(112, 160, dtype=torch.float64)
    assert 0.99 < float(msssim(xs, 1 - xs)[0]) <= 1 - CS_FLOOR


def test_no_host_sync_path_has_no_item_calls():
    # validate=False must work on tensors that require grad, inside autograd,
    # without reading values: a meta-device run proves no value is needed.
    x = torch.empty(2, 1, 40, 40, device="meta")
    for fn in METRICS.values():
        out = fn(x, x, validate=False)
        assert out.shape == (2,) and out.device.type == "meta"


# --------------------------------------------------------------------------
# Properties: identity, symmetry, dtype, device
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METRICS))
def test_identity_symmetry_positivity(name):
    fn = METRICS[name]
    x = torch.cat([structured(40, 56, seed=s) for s in range(3)])
    y = torch.cat([blur(x[i : i + 1], 1.0 + i) for i in range(3)])
    d_xy, d_yx = fn(x, y), fn(y, x)
    assert d_xy.shape == (3,)
    torch.testing.assert_close(d_xy, d_yx, atol=1e-7, rtol=0)
    assert (d_xy > 0).all()
    # Exact, not approximate: the metrics are elementwise-identical on identical
    # inputs (NLPD differences are 0; SSIM's numerator and denominator are the
    # same sums, so every ratio is exactly 1), whatever the CPU.
    assert (fn(x, x) == 0).all()


@pytest.mark.parametrize("name", list(METRICS))
def test_dtypes_agree(name):
    fn = METRICS[name]
    x = structured(40, 56)
    y = (x + 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    d32, d64 = fn(x, y), fn(x.double(), y.double())
    assert d32.dtype == torch.float32 and d64.dtype == torch.float64
    torch.testing.assert_close(d32.double(), d64, atol=2e-6, rtol=0)


@CUDA
@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(name, dtype):
    fn = METRICS[name]
    x = structured(48, 64, dtype=dtype)
    y = blur(x, 1.5)
    cpu = fn(x, y)
    xc, yc = x.cuda().requires_grad_(), y.cuda()
    gpu = fn(xc, yc)
    gpu.sum().backward()
    assert gpu.device.type == "cuda" and torch.isfinite(xc.grad).all()
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


@CUDA
@pytest.mark.parametrize("name", list(METRICS))
def test_cuda_validate_false_never_syncs(name):
    fn = METRICS[name]
    x = structured(48, 64).cuda().requires_grad_()
    y = blur(structured(48, 64), 1.0).cuda()
    fn(x, y, validate=False)  # warm-up outside the check (allocator, kernels)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        d = fn(x, y, validate=False)
        d.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(x.grad).all()


@CUDA
def test_cuda_reference_vectors(ref_pairs):
    for p, a, b in ref_pairs:
        assert abs(float(nlpd(a.cuda(), b.cuda())[0]) - p["nlpd"]) < 1e-5
        assert abs(1 - float(msssim(a.cuda(), b.cuda())[0]) - p["msssim_vainf"]) < 1e-5


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METRICS))
def test_bad_inputs_raise_clear_errors(name):
    fn = METRICS[name]
    good = torch.rand(2, 1, 32, 32)
    cases = [
        (torch.rand(32, 32), "4 dimensions"),
        (torch.rand(2, 3, 32, 32), "1 channel"),
        (good.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))), "NaN"),
        (good.clone().index_put_((torch.tensor([1]),), torch.tensor(float("inf"))), "inf"),
        (good * 2.0 + 0.5, "outside [0, 1]"),
        (good - 0.01, "outside [0, 1]"),
        (torch.randint(0, 2, (2, 1, 32, 32)), "floating"),
    ]
    for bad, msg in cases:
        with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            fn(good, bad)
    with pytest.raises(ValueError, match="same shape"):
        fn(good, torch.rand(2, 1, 32, 33))
    with pytest.raises(ValueError, match="same dtype"):
        fn(good, good.double())
    # tiny excursions from float32 feature code are tolerated
    fn(good, (good + 5e-7).clamp(max=1 + 5e-7))


def test_msssim_too_small_raises():
    x = torch.rand(1, 1, 6, 200)
    with pytest.raises(ValueError, match="too small"):
        msssim(x, x)
    with pytest.raises(ValueError, match="too small"):
        msssim(x, x, validate=False)  # the size rule needs no host sync
    with pytest.raises(ValueError, match="cs_floor"):
        msssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), cs_floor=0.0)


def test_metrics_core_imports_without_qt():
    import subprocess
    import sys

    code = "import sys, perceptlab.metrics; assert 'PySide6' not in sys.modules, 'Qt imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_check_inputs_is_public():
    check_inputs(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="torch.Tensor"):
        check_inputs(np.zeros((1, 1, 8, 8)))


# --------------------------------------------------------------------------
# First principles: more distortion, larger distance
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METRICS))
def test_monotone_in_noise_level(name):
    fn = METRICS[name]
    x = structured(64, 96)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    levels = [0.005, 0.01, 0.02, 0.04, 0.08]
    ys = torch.cat([(x + s * noise).clamp(0, 1) for s in levels])
    d = fn(x.expand_as(ys), ys)
    assert (d[1:] > d[:-1]).all(), (name, d)


@pytest.mark.parametrize("name", list(METRICS))
def test_monotone_in_blur_width(name):
    fn = METRICS[name]
    x = structured(64, 96)
    ys = torch.cat([blur(x, s) for s in (0.5, 1.0, 1.5, 2.5, 4.0)])
    d = fn(x.expand_as(ys), ys)
    assert (d[1:] > d[:-1]).all(), (name, d)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------


def test_registry_builtins():
    names = [m.name for m in list_metrics()]
    assert names[:3] == ["mse", "nlpd", "msssim"]
    ms = get_metric("msssim")
    assert ms.display_name == "1 - MS-SSIM" and ms.direction == "lower_is_closer"
    assert ms.fn is msssim and ms.pairwise is not None and ms.index is not None
    assert get_metric(ms) is ms
    with pytest.raises(ValueError, match="known metrics: .*mse.*msssim.*nlpd"):
        get_metric("ssim")


def test_registry_register_and_replace():
    m = Metric(name="test:l1", display_name="L1", fn=lambda x, y: (x - y).abs().mean((1, 2, 3)))
    try:
        register_metric(m)
        assert get_metric("test:l1") is m
        with pytest.raises(ValueError, match="already registered"):
            register_metric(m)
        register_metric(m, replace=True)
    finally:
        unregister_metric("test:l1")
    with pytest.raises(ValueError, match="direction"):
        Metric(name="sim", display_name="s", fn=mse, direction="higher_is_closer")


def test_the_ssim_map_shown_to_users_is_the_metrics_own_first_scale():
    """At one scale, MS-SSIM is 1 - the mean of the SSIM map the compare panel draws."""
    from perceptlab.analysis.local_maps import ssim_map as panel_map
    from perceptlab.metrics.ssim import msssim, n_scales, ssim_map

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 10, 40, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(3, 1, 10, 40, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert n_scales(10, 40) == 1
    m = ssim_map(x, y)
    assert m.shape == (3, 1, 4, 34)
    torch.testing.assert_close(1 - m.mean(dim=(-2, -1))[:, 0], msssim(x, y), rtol=0, atol=1e-12)
    shown = panel_map(x[0, 0].numpy(), y[0, 0].numpy())  # 1 - SSIM, zero where the window cannot centre
    assert shown.shape == (10, 40) and not shown[:3].any() and not shown[:, :3].any()
    np.testing.assert_allclose(shown[3:7, 3:37], (1 - m[0, 0]).numpy(), atol=1e-6)
