"""distance, matrix and neighbours from the command line, checked against the metric functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from perceptlab.audio.features import compared_width, excerpt, pad_frames
from perceptlab.library.features import file_image
from perceptlab.library.store import Library
from perceptlab.metrics.registry import get_metric
from conftest import run_cli, write_clip


run = run_cli


@pytest.fixture
def lib_path(clip_library):
    return clip_library


def _direct(a, b, name, whole=True):
    """The metric function on the two whole images padded to the pair's width (or centre excerpts)."""
    ia, ib = file_image(a), file_image(b)
    if whole:
        w = compared_width(max(ia.shape[1], ib.shape[1]))
        ia, ib = pad_frames(ia, w), pad_frames(ib, w)
    else:
        ia, ib = excerpt(ia, 128), excerpt(ib, 128)
    return float(get_metric(name).fn(torch.from_numpy(ia[None, None]), torch.from_numpy(ib[None, None]))[0])


def test_distance_json_matches_the_metric_functions(tmp_path, clip_tree):
    a, b = clip_tree / "low" / "low_0.wav", clip_tree / "high" / "high_2.wav"
    out = json.loads(run("distance", a, b, "--json", "--no-align", "--library", tmp_path / "none.sqlite").stdout)
    # No library: the baselines (z-scored over a library) are left out of the default.
    assert set(out["distances"]) == {"mse", "nlpd", "msssim"}
    for name, value in out["distances"].items():
        assert value == pytest.approx(_direct(a, b, name), abs=1e-6)
    assert out["a"]["path"] == str(a) and out["excerpt"] == "whole" and out["comparison"]["lag_s"] == 0.0
    centre = json.loads(run("distance", a, b, "--json", "--excerpt", "centre", "--library",
                            tmp_path / "none.sqlite").stdout)
    assert centre["excerpt_frames"] == 128
    for name, value in centre["distances"].items():
        assert value == pytest.approx(_direct(a, b, name, whole=False), abs=1e-6)
    same = json.loads(run("distance", a, a, "--json", "--metric", "nlpd", "--library", tmp_path / "n.sqlite").stdout)
    assert same["distances"] == {"nlpd": 0.0}


def test_distance_by_clip_id(lib_path):
    with Library(lib_path) as lib:
        c1, c2 = lib.clips()[:2]
    out = json.loads(run("distance", c1.id, c2.id, "--json", "--no-align", "--library", lib_path).stdout)
    assert out["a"]["id"] == c1.id and out["b"]["label"] == c2.label
    assert set(out["distances"]) == {"mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"}
    assert out["distances"]["mse"] == pytest.approx(_direct(c1.path, c2.path, "mse"), abs=1e-6)


def test_matrix_out_and_json(lib_path, tmp_path):
    npy = tmp_path / "m.npy"
    out = json.loads(run("matrix", "--metric", "nlpd", "--out", npy, "--json", "--library", lib_path).stdout)
    d = np.load(npy)
    assert d.shape == (9, 9) and out["n"] == 9 and len(out["clips"]) == 9
    np.testing.assert_allclose(d, d.T, atol=1e-9)
    assert np.all(np.diag(d) == 0)
    paths = {}
    with Library(lib_path) as lib:
        paths = {c.id: c.path for c in lib.clips()}
    ids = [c["id"] for c in out["clips"]]
    assert d[0, 4] == pytest.approx(_direct(paths[ids[0]], paths[ids[4]], "nlpd"), abs=1e-5)
    inline = json.loads(run("matrix", "--metric", "mse", "--json", "--library", lib_path).stdout)
    assert np.array(inline["matrix"]).shape == (9, 9)


def test_neighbours_equal_the_matrix_ranking(lib_path, tmp_path):
    npy = tmp_path / "m.npy"
    m = json.loads(run("matrix", "--metric", "msssim", "--out", npy, "--json", "--library", lib_path).stdout)
    d = np.load(npy)
    ids = [c["id"] for c in m["clips"]]
    q = ids[3]
    out = json.loads(run("neighbours", q, "--metric", "msssim,mse", "-k", "4", "--json",
                         "--library", lib_path).stdout)
    got = out["neighbours"]["msssim"]
    assert [n["rank"] for n in got] == [1, 2, 3, 4]
    row = d[3].copy()
    row[3] = np.inf
    expected = [ids[i] for i in np.argsort(row, kind="stable")[:4]]
    assert [n["id"] for n in got] == expected
    for n in got:
        assert n["distance"] == pytest.approx(d[3, ids.index(n["id"])], abs=1e-5)
    assert q not in [n["id"] for n in out["neighbours"]["mse"]]


def test_neighbours_of_a_file_outside_the_library(lib_path, tmp_path):
    outside = write_clip(tmp_path / "elsewhere" / "probe.wav", seconds=1.2, freq=222.0)
    out = json.loads(run("neighbours", outside, "-k", "2", "--json", "--library", lib_path).stdout)
    assert out["query"]["id"] is None and out["query"]["name"] == "probe.wav"
    # 222 Hz sits between the 'low' (110 Hz) and 'mid' (220 Hz) tones: closest are the mids.
    assert out["neighbours"]["nlpd"][0]["label"] == "mid"


def test_errors(lib_path, tmp_path):
    out = run("distance", "x.wav", "y.wav", "--library", lib_path, check=False)
    assert out.returncode == 2 and "x.wav: no such file" in out.stderr
    out = run("neighbours", "999", "--library", lib_path, check=False)
    assert out.returncode == 2 and "no clip with id 999" in out.stderr
    out = run("matrix", "--metric", "cosine-magic", "--library", lib_path, check=False)
    assert out.returncode == 2 and "unknown metric 'cosine-magic'" in out.stderr and "nlpd" in out.stderr
    out = run("neighbours", "1", "-k", "0", "--library", lib_path, check=False)
    assert out.returncode == 2 and "-k must be at least 1" in out.stderr
    out = run("matrix", "--out", tmp_path / "m.txt", "--library", lib_path, check=False)
    assert out.returncode == 2 and "must name a .npy file" in out.stderr


def test_metrics_listing():
    out = json.loads(run("metrics", "--json").stdout)
    names = [m["name"] for m in out["metrics"]]
    assert names[:3] == ["mse", "nlpd", "msssim"]
    assert all(m["direction"] == "lower_is_closer" for m in out["metrics"])


def test_neighbours_report_the_rank_agreement_the_panel_shows(lib_path):
    """--rank-agreement gives Kendall's tau from the matrix rows, as the Neighbours panel computes it."""
    from scipy.stats import kendalltau

    from perceptlab.analysis.rankings import rank_all
    from perceptlab.audio.features import FeatureConfig

    m = {name: json.loads(run("matrix", "--metric", name, "--json", "--library", lib_path).stdout)
         for name in ("mse", "msssim")}
    ids = [c["id"] for c in m["mse"]["clips"]]
    q = ids[2]
    out = json.loads(run("neighbours", q, "--metric", "mse,msssim", "-k", "3", "--rank-agreement", "--json",
                         "--library", lib_path).stdout)
    (row,) = out["kendall_tau"]
    others = [i for i in range(len(ids)) if i != 2]
    expected = kendalltau([m["mse"]["matrix"][2][i] for i in others],
                          [m["msssim"]["matrix"][2][i] for i in others]).statistic
    assert (row["a"], row["b"]) == ("mse", "msssim") and row["tau"] == pytest.approx(expected, abs=1e-6)
    with Library(lib_path) as lib:
        query = lib.clip(q)
    panel = rank_all(str(lib_path), query, ["mse", "msssim"], FeatureConfig())
    assert panel["taus"][("mse", "msssim")] == pytest.approx(row["tau"], abs=1e-9)
    plain = json.loads(run("neighbours", q, "--metric", "mse", "--json", "--library", lib_path).stdout)
    assert "kendall_tau" not in plain
