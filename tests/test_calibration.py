"""Calibrating NLPD's normalisation to listeners."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from perceptlab.library.features import sound_excerpt
from perceptlab.analysis.calibration import (
    CalibratedVariant,
    calibrate,
    fit_ratings,
    fit_triplets,
    load_variants,
    register_saved_variants,
)
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.listening.create import TripletPlan, create_triplet_session
from perceptlab.metrics.pyramid import NLPDParams, nlpd
from perceptlab.metrics.registry import get_metric, unregister_metric


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth(rng, size, width):
    f = np.fft.fftfreq(size)
    gain = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) * (2 * np.pi * width) ** 2 / 2)
    a = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * gain))
    return a / np.abs(a).max()


#: Listeners who weigh fine detail less and coarse structure more than NLPD's published sigmas.
ALTERED = [6.0, 6.0, 1.0, 0.3, 0.3, 1.0]


def altered_params() -> NLPDParams:
    d = NLPDParams.default()
    return NLPDParams(tuple(s * f for s, f in zip(d.sigmas, ALTERED)), d.taps)


def synthetic_triplets(n=120, size=24, seed=0):
    """Triplets X, X + fine noise, X + coarse change; a third on which NLPD and the listeners disagree."""
    rng = np.random.default_rng(seed)
    pool = 3 * n
    xs, as_, bs = [], [], []
    for _ in range(pool):
        x = 0.5 + 0.3 * smooth(rng, size, size / 16)
        fine = rng.uniform(0.01, 0.08) * smooth(rng, size, 0.5)
        coarse = rng.uniform(0.01, 0.15) * smooth(rng, size, size / 12)
        pa, pb = (fine, coarse) if rng.integers(2) else (coarse, fine)
        xs.append(x), as_.append(x + pa), bs.append(x + pb)
    imgs = np.clip(np.stack(xs + as_ + bs), 0, 1).astype(np.float32)
    t = torch.from_numpy(imgs)[:, None]
    ix, ia, ib = np.arange(pool), np.arange(pool) + pool, np.arange(pool) + 2 * pool
    truth = (nlpd(t[ix], t[ia], altered_params()) < nlpd(t[ix], t[ib], altered_params())).numpy()
    default = (nlpd(t[ix], t[ia]) < nlpd(t[ix], t[ib])).numpy()
    wrong, right = np.flatnonzero(truth != default), np.flatnonzero(truth == default)
    keep = np.sort(np.r_[wrong[: n // 3], right[: n - min(len(wrong), n // 3)]])
    return imgs, ix[keep], ia[keep], ib[keep], truth[keep]


def test_defaults_reproduce_nlpd_exactly():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 40, 56)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert torch.allclose(nlpd(x, y, NLPDParams.default()), nlpd(x, y), atol=1e-7, rtol=0)
    p = NLPDParams.default()
    assert NLPDParams.from_json(json.loads(json.dumps(p.to_json()))) == p
    with pytest.raises(ValueError, match="positive"):
        NLPDParams((0.0,) * 6, p.taps)


def test_calibration_improves_held_out_agreement_with_altered_listeners():
    imgs, ix, ia, ib, chose_a = synthetic_triplets()
    res = fit_triplets(imgs, ix, ia, ib, chose_a, steps=60, lr=0.1, seed=0, n_boot=300)
    r = res.report
    assert r["n_train"] + r["n_test"] == len(ix) and r["n_test"] >= 30
    assert r["before"]["test"] < 0.8  # published NLPD misjudges these listeners
    assert r["after"]["test"] >= r["before"]["test"] + 0.15
    assert r["after"]["train"] > r["before"]["train"]
    assert r["loss"]["last"] < r["loss"]["first"]
    # Fitted sigmas moved the way the listeners' did at the finest and coarse band levels.
    d = NLPDParams.default().sigmas
    assert res.params.sigmas[0] > d[0] and res.params.sigmas[3] < d[3]
    # Deterministic for a seed.
    again = fit_triplets(imgs, ix, ia, ib, chose_a, steps=60, lr=0.1, seed=0, n_boot=300)
    assert again.params == res.params


def test_calibration_on_ratings_improves_held_out_correlation():
    rng = np.random.default_rng(3)
    size, n_items, per_item = 24, 12, 4
    refs, conds, iref = [], [], []
    for i in range(n_items):
        x = 0.5 + 0.3 * smooth(rng, size, size / 16)
        refs.append(x)
        for _ in range(per_item):
            fine = rng.uniform(0.0, 0.08) * smooth(rng, size, 0.5)
            coarse = rng.uniform(0.0, 0.12) * smooth(rng, size, size / 12)
            conds.append(x + fine + coarse)
            iref.append(i)
    imgs = np.clip(np.stack(refs + conds), 0, 1).astype(np.float32)
    t = torch.from_numpy(imgs)[:, None]
    ir = np.array(iref)
    ic = np.arange(n_items, n_items + len(conds))
    scores = 100 - 60 * nlpd(t[ir], t[ic], altered_params()).numpy()
    res = fit_ratings(imgs, ir, ic, scores, steps=60, lr=0.1, seed=1)
    b, a = res.report["before"]["test"]["pearson"], res.report["after"]["test"]["pearson"]
    assert a < b and a < -0.9


def test_variants_are_saved_registered_and_reloaded(tmp_path):
    v = CalibratedVariant("unit-test", altered_params(), {"design": "triplet", "fitted_on": {"sessions": [1]}})
    with pytest.raises(ValueError, match="name"):
        CalibratedVariant("bad name!", NLPDParams.default())
    with Library(tmp_path / "lib.sqlite") as lib:
        from perceptlab.analysis.calibration import save_variant

        save_variant(lib, v)
    unregister_metric(v.metric_name)
    with Library(tmp_path / "lib.sqlite") as lib:
        assert [x.name for x in load_variants(lib)] == ["unit-test"]
        (m,) = register_saved_variants(lib)
    try:
        assert m.name == "nlpd:calibrated-unit-test" and get_metric(m.name) is m
        torch.manual_seed(1)
        x = torch.rand(5, 1, 32, 32)
        d = m.pairwise(x)
        assert d[1, 3].item() == pytest.approx(float(m.fn(x[1:2], x[3:4])[0]), rel=1e-5)
        assert float(m.fn(x[1:2], x[3:4])[0]) == pytest.approx(float(nlpd(x[1:2], x[3:4], altered_params())[0]))
    finally:
        unregister_metric(m.name)


def test_calibrate_from_a_library_session_and_the_cli(tmp_path, clip_tree, capsys):
    from perceptlab.cli import main

    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [clip_tree])
        s = create_triplet_session(lib, "ann", TripletPlan(n_trials=12, n_catch=1, seed=2))

        def image(sound):
            return torch.from_numpy(sound_excerpt(lib, sound))[None, None]  # (1, 1, F, T)

        def agreement(params, sp, choice):
            x, a, b = image(sp["x"]), image(sp["a"]), image(sp["b"])
            margin = float(nlpd(x, b, params)[0] - nlpd(x, a, params)[0])  # > 0: A closer
            return 0.5 if margin == 0 else float((margin > 0) == (choice == "A"))

        # A listener who contradicts the published NLPD on every scored trial
        # (catch trials answered right, so screening keeps them): agreement
        # starts at 0 and the fit can only move the metric towards them.
        answers = []
        for p in range(s.n_trials):
            sp = s.spec(p)
            if sp["expected"]:
                s.answer(p, sp["expected"])
                continue
            choice = "B" if agreement(NLPDParams.default(), sp, "A") == 1.0 else "A"
            s.answer(p, choice)
            answers.append((sp, choice))
        assert len(answers) == 12
        variant, rep = calibrate(lib, [s.id], "ann1", steps=60, lr=0.1, seed=0)
        assert rep["metric"] == "nlpd:calibrated-ann1" and rep["n_train"] + rep["n_test"] == 12
        assert rep["saved"] and [v.name for v in load_variants(lib)] == ["ann1"]
        assert rep["before"] == {"train": 0.0, "test": 0.0}
        assert rep["loss"]["last"] < rep["loss"]["first"]
        # The fit moves the metric towards the listener: some training trials
        # that the published NLPD got wrong are now right (from 0 of 8).
        assert rep["after"]["train"] > rep["before"]["train"], rep["after"]
        # The reported agreement is that of the saved variant on these answers.
        (saved,) = load_variants(lib)
        assert saved.params == variant.params != NLPDParams.default()
        total = sum(agreement(saved.params, sp, choice) for sp, choice in answers)
        reported = rep["after"]["train"] * rep["n_train"] + rep["after"]["test"] * rep["n_test"]
        assert total == pytest.approx(reported, abs=1e-9)
    try:
        assert main(["calibrate", "--library", str(lib_path), "--session", str(s.id), "--name", "cli1",
                     "--steps", "3", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["metric"] == "nlpd:calibrated-cli1" and out["design"] == "triplet"
        assert len(out["params"]["sigmas"]) == 6
        # The saved variant is a metric like any other for the agreement report.
        assert main(["agreement", "--library", str(lib_path), "--metric", "nlpd,nlpd:calibrated-cli1",
                     "--boot", "50", "--json"]) == 0
        rep2 = json.loads(capsys.readouterr().out)
        assert set(rep2["triplet"]["metrics"]) == {"nlpd", "nlpd:calibrated-cli1"}
        assert main(["calibrate", "--library", str(lib_path), "--session", str(s.id), "--name", "x y"]) == 2
        assert "calibrated metric name 'x y'" in capsys.readouterr().err
    finally:
        unregister_metric("nlpd:calibrated-ann1")
        unregister_metric("nlpd:calibrated-cli1")
