"""The metric probe: near-inaudible vs clearly audible copies, and whether each metric orders them as a listener."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from perceptlab.analysis.probe import (
    DEFAULT_CLIPS,
    FAR_VARIANTS,
    NEAR_VARIANTS,
    Variant,
    report_text,
    run_probe,
    sample_clips,
    write_chart,
)
from perceptlab.audio.distort import Recipe, apply
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.tasks import Cancelled

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
N_NEAR, N_FAR = len(NEAR_VARIANTS), len(FAR_VARIANTS)


def _row(rep, metric, near, far):
    (row,) = [r for r in rep["rows"] if (r["metric"], r["near"], r["far"]) == (metric, near, far)]
    return row


def test_probe_on_the_demo_library_is_quick_complete_and_has_teeth(tmp_path):
    with Library(tmp_path / "demo.sqlite") as lib:
        import_files(lib, [DEMO])
        t0 = time.perf_counter()
        rep = run_probe(lib, out_dir=tmp_path / "copies")
        seconds = time.perf_counter() - t0
    # Measured on a shared 2-core machine: 15-45 s for the default 12 clips,
    # 10 copies each and the five built-in metrics.
    assert seconds < 120, f"the default probe took {seconds:.0f} s"
    assert rep["n_clips"] == DEFAULT_CLIPS == len(rep["clips"])
    metrics = rep["metrics"]
    assert metrics == ["mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"]
    assert sorted(rep["ranking"]) == sorted(metrics)
    assert [v["name"] for v in rep["variants"]["near"]] == [v.name for v in NEAR_VARIANTS]
    assert [v["name"] for v in rep["variants"]["far"]] == [v.name for v in FAR_VARIANTS]
    assert rep["skipped"] == [] and rep["failures"] == []
    # One row per metric and (near, far) pair, each over every clip.
    assert len(rep["rows"]) == len(metrics) * N_NEAR * N_FAR
    assert {(r["metric"], r["near"], r["far"]) for r in rep["rows"]} == {
        (m, n.name, f.name) for m in metrics for n in NEAR_VARIANTS for f in FAR_VARIANTS}
    for r in rep["rows"]:
        assert 0 <= r["ci"][0] <= r["share"] <= r["ci"][1] <= 1 and r["n"] == DEFAULT_CLIPS
    for m in metrics:
        s = rep["summary"][m]
        assert s["overall"]["n"] == DEFAULT_CLIPS * N_NEAR * N_FAR
        assert 0 <= s["overall"]["ci"][0] <= s["overall"]["share"] <= s["overall"]["ci"][1] <= 1
        assert set(s["by_near"]) == {v.name for v in NEAR_VARIANTS}
        assert set(s["by_far"]) == {v.name for v in FAR_VARIANTS}
        assert set(s["median_distance"]) == {v.name for v in NEAR_VARIANTS + FAR_VARIANTS}
    json.dumps(rep, allow_nan=False)  # plain JSON, no NaN
    # Every copy was written and can be heard.
    wavs = sorted((tmp_path / "copies").glob("*.wav"))
    assert len(wavs) == DEFAULT_CLIPS * (N_NEAR + N_FAR)
    assert sf.info(str(wavs[0])).samplerate == 22050
    # Teeth. Measured: MSE puts the -3 dB copy nearer than 10 dB SNR noise on
    # all 12 clips; loudness alignment makes it nearly identical.
    assert _row(rep, "mse", "gain -3 dB", "noise 10 dB SNR")["share"] >= 11 / 12
    assert rep["summary"]["mse"]["median_distance"]["gain -3 dB"] < 1e-6
    # Measured overall shares 0.98-0.99 for the spectrogram metrics, 0.89 for the baselines.
    best = rep["summary"][rep["ranking"][0]]["overall"]["share"]
    assert best > 0.8
    # And it separates: whole-clip statistics cannot hear a clip played
    # backwards (measured 0.43-0.47), every spectrogram metric can (1.0).
    for m in ("logmel-stats", "mfcc-stats"):
        assert rep["summary"][m]["by_far"]["reversed"]["share"] < 0.7
    for m in ("mse", "nlpd", "msssim"):
        assert rep["summary"][m]["by_far"]["reversed"]["share"] > 0.9
    assert rep["ranking"][-1] in ("logmel-stats", "mfcc-stats")
    text = report_text(rep)
    for m in metrics:
        assert m in text
    assert rep["headline"] in text and rep["ranking"][0] in rep["headline"]


@pytest.fixture
def inverted_mse():
    """A metric that gets everything backwards: the probe must catch it."""
    from perceptlab.metrics.pixel import mse
    from perceptlab.metrics.registry import Metric, register_metric, unregister_metric

    def fn(x, y):
        return 1.0 / (mse(x, y) + 1e-6)

    register_metric(Metric("test-inverted-mse", "1 / MSE", fn, description="backwards"), replace=True)
    yield "test-inverted-mse"
    unregister_metric("test-inverted-mse")


def test_a_metric_that_gets_things_backwards_fails_the_probe(clip_library, tmp_path, inverted_mse,
                                                             one_torch_thread):
    # The library holds steady tones, which a low-pass at 2 kHz, a tempo
    # change or playing backwards hardly change: probe them with level and noise.
    near = [v for v in NEAR_VARIANTS if v.recipe.kind in ("gain", "white_noise")]
    far = [v for v in FAR_VARIANTS if v.recipe.kind in ("white_noise", "clip")]
    with Library(clip_library) as lib:
        rep = run_probe(lib, metrics=["mse", inverted_mse], n_clips=3, near=near, far=far,
                        out_dir=tmp_path / "out", bootstrap=200)
    assert rep["summary"][inverted_mse]["overall"]["share"] < 0.1
    assert rep["summary"]["mse"]["overall"]["share"] > 0.9
    assert rep["ranking"] == ["mse", inverted_mse]
    assert rep["headline"].startswith("mse ")


def test_sample_spreads_over_labels_and_follows_the_seed(clip_library):
    with Library(clip_library) as lib:
        a = sample_clips(lib, 6, seed=0)
        assert sorted(c.label for c in a) == ["high", "high", "low", "low", "mid", "mid"]
        assert [c.id for c in sample_clips(lib, 6, seed=0)] == [c.id for c in a]
        others = {tuple(c.id for c in sample_clips(lib, 6, seed=s)) for s in range(1, 6)}
        assert len(others | {tuple(c.id for c in a)}) > 1
        assert len(sample_clips(lib, 100)) == 9  # no more than the library holds
        with pytest.raises(ValueError):
            sample_clips(lib, 0)


def test_copies_that_cannot_be_rendered_are_left_out_not_fatal(clip_library, tmp_path, one_torch_thread):
    # An echo 1.1 s late does not fit in the 1.0 s clips (it does in the 1.25 and 1.5 s ones).
    far = [Variant("late echo", Recipe("echo", {"delay_s": 1.1})), FAR_VARIANTS[0]]
    near = [NEAR_VARIANTS[0], Variant("never", Recipe("echo", {"delay_s": 5.0}))]
    with Library(clip_library) as lib:
        rep = run_probe(lib, metrics=["mse"], n_clips=9, near=near, far=far, out_dir=tmp_path, bootstrap=200)
    assert [v["name"] for v in rep["variants"]["near"]] == ["gain -3 dB"]
    assert [s["name"] for s in rep["skipped"]] == ["never"]
    assert "shorter than the signal" in rep["skipped"][0]["reason"]
    late = [f for f in rep["failures"] if f["variant"] == "late echo"]
    assert len(late) == 3  # one 1.0 s clip per label
    assert _row(rep, "mse", "gain -3 dB", "late echo")["n"] == 6
    assert _row(rep, "mse", "gain -3 dB", "noise 10 dB SNR")["n"] == 9
    assert None in rep["distances"]["mse"]["late echo"]
    json.dumps(rep, allow_nan=False)
    assert "could not be rendered" in report_text(rep)


def test_cancel_stops_the_probe(clip_library, tmp_path):
    steps = []

    def progress(done, total):
        steps.append((done, total))

    with Library(clip_library) as lib:
        with pytest.raises(Cancelled):
            run_probe(lib, metrics=["mse"], n_clips=2, out_dir=tmp_path, progress=progress,
                      cancel=lambda: len(steps) > 2)
    assert steps[0] == (0, 2 * (N_NEAR + N_FAR))


def test_echo_and_reverse_recipes():
    rate = 1000
    x = np.random.default_rng(0).standard_normal(2000)
    e = Recipe.parse("echo:delay_s=0.3")
    assert e.params == {"delay_s": 0.3, "level_db": -6.0} and e.label == "echo:delay_s=0.3,level_db=-6"
    y = apply(e, x, rate)
    assert y.size == x.size and y.dtype == np.float32
    np.testing.assert_allclose(y[:300], x[:300], atol=1e-6)
    np.testing.assert_allclose(y[300:], x[300:] + 10 ** (-6 / 20) * x[:-300], atol=1e-5)
    assert apply(e, x, rate).tobytes() == y.tobytes()
    with pytest.raises(ValueError, match="shorter than the signal"):
        apply(Recipe.parse("echo:delay_s=2"), x, rate)
    with pytest.raises(ValueError, match="level_db"):
        Recipe.parse("echo:delay_s=0.1,level_db=3")
    r = apply(Recipe.parse("reverse"), x, rate)
    np.testing.assert_allclose(r, x[::-1], atol=1e-6)


def _probe_cli(argv):
    from perceptlab import cli
    from perceptlab.cli.probe import add_parsers as add_probe_parser

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", default=None)
    parser = argparse.ArgumentParser(prog="perceptlab")
    add_probe_parser(parser.add_subparsers(dest="command"), common)
    return cli._run(parser.parse_args(argv))


def test_cli_prints_the_table_or_json_and_errors_in_one_line(clip_library, tmp_path, capsys, one_torch_thread):
    from perceptlab.cli import probe as probe_cli

    assert probe_cli.DEFAULT_CLIPS == DEFAULT_CLIPS
    out = tmp_path / "probe"
    assert _probe_cli(["probe", "--library", str(clip_library), "--metric", "mse,nlpd", "--clips", "2",
                       "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Near copy" in text and "Ranking: 1." in text and "probe.json" in text
    assert ("no chart (matplotlib is not installed)" in text) != (out / "probe.png").exists()
    assert json.loads((out / "probe.json").read_text())["metrics"] == ["mse", "nlpd"]
    assert _probe_cli(["probe", "--library", str(clip_library), "--metric", "mse", "--clips", "2",
                       "--seed", "3", "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["seed"] == 3 and len(rep["rows"]) == N_NEAR * N_FAR and rep["metrics"] == ["mse"]
    for argv, needle in [
        (["--metric", "nope"], "--metric: unknown metric"),
        (["--clips", "1"], "--clips must be at least 2"),
    ]:
        assert _probe_cli(["probe", "--library", str(clip_library), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("perceptlab: error: ") and needle in err[0]
    assert _probe_cli(["probe", "--library", str(tmp_path / "missing.sqlite")]) == 2
    assert "no library here yet" in capsys.readouterr().err


def test_chart_is_optional(tmp_path):
    rep = {"ranking": ["mse"], "baselines": [], "n_clips": 2,
           "variants": {"near": [{"name": "a"}], "far": [{"name": "b"}]},
           "summary": {"mse": {"overall": {"share": 1.0, "ci": [1.0, 1.0]},
                               "by_near": {"a": {"share": 1.0, "ci": [1.0, 1.0]}}}}}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert write_chart(rep, tmp_path / "c.png") is None
        assert not (tmp_path / "c.png").exists()
    else:
        assert write_chart(rep, tmp_path / "c.png").stat().st_size > 1000


def test_probe_core_needs_no_torch_to_import():
    import subprocess
    import sys

    code = ("import sys, perceptlab.analysis.probe, perceptlab.cli.probe; "
            "print('torch' in sys.modules, 'PySide6' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
