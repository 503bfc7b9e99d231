"""NLPD with other normalisation parameters: the metrics layer's ``params``, and saved calibrated variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from perceptlab.analysis.calibration import CalibratedVariant, load_variants, register_saved_variants, register_variant
from perceptlab.analysis.library_metrics import register_library_metrics
from perceptlab.library.store import Library
from perceptlab.metrics.pyramid import (
    N_LEVELS,
    P_MATLAB,
    SIGMAS,
    NLPDParams,
    laplacian_pyramid,
    nlpd,
    nlpd_levels,
    nlpd_transform,
)
from perceptlab.metrics.registry import get_metric, unregister_metric

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = Path(__file__).parent / "data"


def _reference_pair(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.load(DATA / "reference" / f"pair_{i:02d}_ref.npy")
    y = np.load(DATA / "reference" / f"pair_{i:02d}_dist.npy")
    return torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]


def _matrices(seed: int) -> list[np.ndarray]:
    """Per level a 5 x 5 P matrix (Matlab layout, centre (2, 2)): the published support, other weights."""
    rng = np.random.default_rng(seed)
    out = []
    for p in P_MATLAB:
        m = np.zeros((5, 5))
        for (a, b), w in p.items():
            m[a, b] = w * rng.uniform(0.3, 3.0)
        out.append(m)
    return out


def _params_of(sigmas, matrices) -> NLPDParams:
    # conv2 'same': slot (a, b) of P reads the input at offset (2 - a, 2 - b).
    taps = tuple(tuple((2 - a, 2 - b, float(m[a, b])) for a in range(5) for b in range(5) if m[a, b])
                 for m in matrices)
    return NLPDParams(tuple(float(s) for s in sigmas), taps)


def _reference_nlpd(x: torch.Tensor, y: torch.Tensor, sigmas, matrices) -> float:
    """NLP_dist.m's normalisation written with scipy's conv2 ('same', zero padding), float64."""
    levels = []
    for k, (bx, by) in enumerate(zip(laplacian_pyramid(x.double()[0, 0]), laplacian_pyramid(y.double()[0, 0]))):
        nx, ny = (b.numpy() / (sigmas[k] + convolve2d(np.abs(b.numpy()), matrices[k], mode="same"))
                  for b in (bx, by))
        levels.append(np.sqrt(np.mean((nx - ny) ** 2)))
    return float(np.mean(levels))


def test_default_params_take_the_published_path_bit_for_bit():
    x, y = _reference_pair(6)
    plain = nlpd_transform(x)
    for params in (None, NLPDParams.default(), NLPDParams()):
        assert all(torch.equal(a, b) for a, b in zip(plain, nlpd_transform(x, params)))
    assert torch.equal(nlpd(x, y), nlpd(x, y, NLPDParams.default()))
    assert NLPDParams.default().sigmas == SIGMAS


@pytest.mark.parametrize("pair", [0, 2, 4, 6])
def test_other_params_are_conv2_normalisation_with_those_sigmas_and_filters(pair):
    x, y = _reference_pair(pair)
    rng = np.random.default_rng(pair)
    sigmas = np.asarray(SIGMAS) * rng.uniform(0.3, 3.0, N_LEVELS)
    mats = _matrices(pair)
    params = _params_of(sigmas, mats)
    want = _reference_nlpd(x, y, sigmas, mats)
    got64 = float(nlpd(x.double(), y.double(), params)[0])
    got32 = float(nlpd(x, y, params)[0])
    assert got64 == pytest.approx(want, rel=1e-10)
    assert got32 == pytest.approx(want, rel=2e-6)
    assert abs(got64 - float(nlpd(x.double(), y.double())[0])) > 1e-3 * want  # the parameters matter
    levels = nlpd_levels(x.double(), y.double(), params)
    assert levels.shape == (1, N_LEVELS) and float(levels.mean()) == pytest.approx(got64, rel=1e-12)


def test_a_level_without_taps_is_normalised_by_its_sigma_alone():
    d = NLPDParams.default()
    params = NLPDParams(d.sigmas, d.taps[:-1] + ((),))
    x, _ = _reference_pair(3)
    last = laplacian_pyramid(x.double())[-1]
    assert torch.allclose(nlpd_transform(x.double(), params)[-1], last / d.sigmas[-1], rtol=1e-15, atol=0)
    assert NLPDParams.from_json(json.loads(json.dumps(params.to_json()))) == params


@pytest.mark.parametrize("make, match", [
    (lambda d: NLPDParams(d.sigmas[:5], d.taps), "6 sigmas and 6 tap sets, got 5 and 6"),
    (lambda d: NLPDParams((0.0,) + d.sigmas[1:], d.taps), "sigmas must be positive"),
    (lambda d: NLPDParams((float("nan"),) + d.sigmas[1:], d.taps), "sigmas must be positive and finite"),
    (lambda d: NLPDParams(d.sigmas, (((0, 5, 0.1),),) + d.taps[1:]), r"bad NLPD tap \(0, 5, 0.1\).*offsets"),
    (lambda d: NLPDParams(d.sigmas, (((0, 1, -0.1),),) + d.taps[1:]), r"bad NLPD tap .*weight"),
    (lambda d: NLPDParams.from_json({"sigmas": list(d.sigmas)}), "not NLPD parameters"),
    (lambda d: NLPDParams.from_json({"sigmas": ["x"] * 6, "taps": []}), "not NLPD parameters"),
])
def test_bad_params_are_refused_with_the_reason(make, match):
    with pytest.raises(ValueError, match=match):
        make(NLPDParams.default())


def test_a_variant_saved_by_the_earlier_calibration_code_loads_and_measures_the_same(tmp_path):
    """``data/calibration/saved_variant.json``: a variant as the calibration module saved it when it held
    its own copy of the parametrised NLPD, and the distances that code measured with it."""
    saved = json.loads((DATA / "calibration" / "saved_variant.json").read_text())
    with Library(tmp_path / "lib.sqlite") as lib:
        lib.set_meta(saved["meta_key"], saved["meta_value"])
        (variant,) = load_variants(lib)
        names = register_library_metrics(lib)
    name = "nlpd:calibrated-saved-2026"
    try:
        assert variant.name == "saved-2026" and name in names
        stored = json.loads(saved["meta_value"])
        assert variant.params == NLPDParams.from_json(stored["params"]) != NLPDParams.default()
        # Written again, it is the same JSON.
        assert json.dumps(variant.to_json(), sort_keys=True) == saved["meta_value"]
        assert CalibratedVariant.from_json(saved["meta_value"]) == variant
        m = get_metric(name)
        for key, want in saved["pairs"].items():
            x, y = _reference_pair(int(key[-2:]))
            assert float(m.fn(x, y)[0]) == pytest.approx(want["float32"], rel=2e-6), key
            assert float(m.fn(x.double(), y.double())[0]) == pytest.approx(want["float64"], rel=1e-12), key
            assert float(nlpd(x.double(), y.double(), variant.params)[0]) == pytest.approx(want["float64"], rel=1e-12)
        crops = np.stack([np.load(DATA / "reference" / f"pair_{i:02d}_{s}.npy")[:64, :64]
                          for i in range(8) for s in ("ref", "dist")])
        d = m.pairwise(torch.from_numpy(crops)[:, None]).numpy()
        np.testing.assert_allclose(d, np.asarray(saved["matrix"]), rtol=1e-6, atol=1e-9)
    finally:
        unregister_metric(name)


def test_a_damaged_saved_variant_is_named(tmp_path):
    with Library(tmp_path / "lib.sqlite") as lib:
        lib.set_meta("calibrated_metric:broken", json.dumps({"name": "broken", "params": {"sigmas": [1.0]}}))
        with pytest.raises(ValueError, match="saved calibrated metric 'calibrated_metric:broken' is damaged"):
            register_saved_variants(lib)


def _crops(n: int = 8, side: int = 48) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.load(DATA / "reference" / f"pair_{i:02d}_{s}.npy")[:side, :side]
                                      for i in range(n // 2) for s in ("ref", "dist")]))[:, None]


def _other_params(seed: int = 1) -> NLPDParams:
    rng = np.random.default_rng(seed)
    return _params_of(np.asarray(SIGMAS) * rng.uniform(0.3, 3.0, N_LEVELS), _matrices(seed))


def test_the_nlpd_engine_takes_params_and_measures_what_the_pair_function_does():
    from perceptlab.metrics.pairwise import NLPDIndex, nlpd_matrix

    x = _crops().double()
    params = _other_params()
    d = nlpd_matrix(x, params=params)
    n = x.shape[0]
    i, j = torch.triu_indices(n, n, 1)
    want = nlpd(x[i], x[j], params)
    np.testing.assert_allclose(d[i, j].numpy(), want.numpy(), rtol=1e-9, atol=1e-12)
    assert float((d - nlpd_matrix(x)).abs().max()) > 1e-3 * float(d.max())  # the parameters reach the matrix
    # A small memory budget (many chunks and blocks) gives the same matrix.
    np.testing.assert_allclose(nlpd_matrix(x, params=params, memory_budget_mb=0.01).numpy(), d.numpy(),
                               rtol=1e-12, atol=1e-14)
    index = NLPDIndex(x, params=params)
    np.testing.assert_allclose(index.distances(x[:3]).numpy(), d[:3].numpy(), rtol=1e-9, atol=1e-12)
    again = NLPDIndex.from_coefficients(index.levels, tuple(x.shape[-2:]), params)
    assert torch.equal(again.distances(x[5]), index.distances(x[5]))


def test_the_published_params_take_the_engine_s_default_path_bit_for_bit():
    from perceptlab.metrics.pairwise import NLPDIndex, nlpd_matrix

    x = _crops()
    assert torch.equal(nlpd_matrix(x, params=NLPDParams.default()), nlpd_matrix(x))
    assert torch.equal(NLPDIndex(x, params=NLPDParams.default()).distances(x[:2]), NLPDIndex(x).distances(x[:2]))


def test_a_calibrated_variant_s_matrix_and_index_are_the_engine_s():
    from perceptlab.metrics.pairwise import build_index, distance_matrix
    from perceptlab.tasks import Cancelled

    m = register_variant(CalibratedVariant("engine-check", _other_params(2)))
    try:
        x = _crops()
        seen = []
        d = distance_matrix(x, m.name, progress=lambda done, total: seen.append((done, total)))
        assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 1
        n = x.shape[0]
        i, j = torch.triu_indices(n, n, 1)
        np.testing.assert_allclose(d[i, j].numpy(), m.fn(x[i], x[j]).double().numpy(), rtol=2e-5, atol=1e-7)
        assert torch.equal(d, d.T) and float(d.diagonal().abs().max()) == 0.0
        index = build_index(x, m.name)
        np.testing.assert_allclose(index.distances(x[:4]).numpy(), d[:4].numpy(), rtol=2e-5, atol=1e-7)
        with pytest.raises(ValueError, match="nlpd:calibrated-engine-check: query shape"):
            index.distances(x[0, :, :40])
        with pytest.raises(Cancelled):
            distance_matrix(x, m.name, cancel=lambda: True)
    finally:
        unregister_metric(m.name)


def test_the_metrics_package_exports_the_params():
    import perceptlab.metrics as metrics

    assert metrics.NLPDParams is NLPDParams and "NLPDParams" in metrics.__all__
    assert "params" in metrics.__doc__ and ":class:`NLPDParams`" in metrics.__doc__
