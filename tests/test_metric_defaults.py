"""The commands' default metric lists are the registry's: a metric registered by a plugin is in them.

A command given no ``--metric`` passes nothing, and the function it calls
takes its own default from the registry; the help texts say what that
default is in words, not as a list spelled out by hand.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from perceptlab.metrics.registry import Metric, register_metric, unregister_metric
from perceptlab.metrics.validation import check_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def l1(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """Mean absolute difference per image: (B, 1, F, T) x2 -> (B,)."""
    if validate:
        check_inputs(x, y, metric="l1")
    return (x - y).abs().mean(dim=(1, 2, 3))


L1 = Metric(name="l1", display_name="L1", fn=l1, description="Mean absolute difference (a test plugin).")


@pytest.fixture
def plugin():
    metric = register_metric(L1)
    try:
        yield metric
    finally:
        unregister_metric(metric.name)


def test_evaluate_without_metrics_measures_every_built_in_one_a_plugin_too(plugin, clip_library, tmp_path, capsys):
    from perceptlab.cli import main

    out = tmp_path / "report"
    assert main(["evaluate", "--library", str(clip_library), "--folds", "3", "--inner-folds", "2",
                 "--segment-frames", "32", "--segment-hop", "16", "--k", "1", "--k-grid", "1", "--c-grid", "1",
                 "--bootstrap", "200", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["metrics"] == ["mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]
    knn = {m["representation"] for m in report["methods"] if m["kind"] == "knn"}
    assert knn == {"mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"}


def test_listen_create_active_without_metric_compares_the_registry_s_image_metrics(plugin, clip_library, capsys):
    from perceptlab.cli import main

    assert main(["listen", "create", "--library", str(clip_library), "--design", "triplet", "--listener", "ann",
                 "--active", "--n-trials", "3", "--catch", "0", "--json"]) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert config["metrics"] == ["mse", "nlpd", "msssim", "l1"]
    assert main(["listen", "create", "--library", str(clip_library), "--design", "triplet", "--listener", "bo",
                 "--active", "--n-trials", "3", "--catch", "0", "--metric", "nlpd, l1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["metrics"] == ["nlpd", "l1"]


@pytest.mark.parametrize("command, option", [
    (["distance"], "--metric"), (["neighbours"], "--metric"), (["agreement"], "--metric"),
    (["listen", "create"], "--metric"), (["evaluate"], "--metrics"),
])
def test_help_says_the_default_metrics_in_words(command, option, capsys):
    from perceptlab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    start = text.index(f"{option} {option.lstrip('-').upper()} ")
    entry = text[start:start + 320]
    assert "mse,nlpd" not in entry.replace(" ", "") and "(default: " in entry, entry
    assert "built-in metric" in entry, entry


def test_distance_without_metric_measures_what_its_help_says(plugin, clip_tree, clip_library, capsys):
    """Every built-in metric; the baselines only with a library."""
    from perceptlab.cli import main

    a, b = sorted((clip_tree / "low").glob("*.wav"))[:2]
    assert main(["distance", str(a), str(b), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["distances"]) == ["mse", "nlpd", "msssim", "l1"]
    assert main(["distance", str(a), str(b), "--library", str(clip_library), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["distances"]) == [
        "mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]


def test_the_matrix_gpu_check_covers_every_metric_but_a_library_s_own(clip_library):
    """A plugin's name may hold a colon; only an encoder or a calibrated variant is left out."""
    from perceptlab.analysis.calibration import CalibratedVariant, register_variant
    from perceptlab.analysis.matrix_gpu_check import run_checks
    from perceptlab.metrics.pyramid import NLPDParams

    named = register_metric(replace(L1, name="lab:l1"))
    variant = register_variant(CalibratedVariant("gpu-check", NLPDParams.default()))
    try:
        report = run_checks(clip_library, device="cpu", sharded=False, out=lambda _line: None)
    finally:
        unregister_metric(named.name)
        unregister_metric(variant.name)
    engines = [c["name"] for c in report["checks"] if c["name"].startswith("engine ")]
    # In registration order.
    assert engines == [f"engine {m}" for m in ("mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats", "lab:l1")]
    assert report["ok"]


def test_a_baseline_method_is_one_the_registry_calls_a_baseline(plugin):
    from perceptlab.analysis.evaluate.claim import is_baseline_method

    stats = register_metric(replace(L1, name="l1-stats", params={"baseline": True}))
    try:
        assert is_baseline_method({"kind": "knn", "representation": "l1-stats"})
        assert is_baseline_method({"kind": "knn-cv", "representation": "mfcc-stats"})
    finally:
        unregister_metric(stats.name)
    assert not is_baseline_method({"kind": "knn", "representation": "l1"})
    assert not is_baseline_method({"kind": "knn", "representation": "nlpd"})
    assert not is_baseline_method({"kind": "knn", "representation": "l1-stats"})  # no longer registered
    assert is_baseline_method({"kind": "majority", "representation": None})
