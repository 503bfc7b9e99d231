"""A new metric is one definition and one registration: every list a user sees then offers it.

The metric below (mean absolute difference of the log-mel images) is
registered through :func:`perceptlab.metrics.registry.register_metric` and
nothing else; the tests check that it is then in the similarity defaults
and neighbour search, the evaluation's default metrics, the listening
session's defaults, the benchmarks, the session dialog, and among the
training losses only when it says it is trainable. The fixture removes it
again, so no other test sees it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from perceptlab.metrics.registry import (
    Metric,
    baseline_names,
    builtin_names,
    get_metric,
    image_metric_names,
    list_metrics,
    loss_names,
    perceptual_loss_names,
    register_metric,
    unregister_metric,
)
from perceptlab.metrics.validation import check_inputs

BUILTINS = ["mse", "nlpd", "msssim", "logmel-stats", "mfcc-stats"]


def l1(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """Mean absolute difference per image: (B, 1, F, T) x2 -> (B,)."""
    if validate:
        check_inputs(x, y, metric="l1")
    return (x - y).abs().mean(dim=(1, 2, 3))


L1 = Metric(name="l1", display_name="L1", fn=l1,
            description="Mean absolute difference of the log-mel images (a test plugin).")


@pytest.fixture(params=[False, True], ids=["not-trainable", "trainable"])
def plugin(request):
    """The L1 metric registered (trainable or not) for the test, removed afterwards."""
    metric = replace(L1, trainable=request.param)
    register_metric(metric)  # no replace=True: a leftover from another test would fail here
    try:
        yield metric
    finally:
        unregister_metric(metric.name)
    assert "l1" not in [m.name for m in list_metrics()]


@pytest.fixture
def trainable_plugin():
    metric = register_metric(replace(L1, trainable=True))
    try:
        yield metric
    finally:
        unregister_metric(metric.name)


def test_the_builtin_lists_are_what_they_were():
    """Without the plugin, every derived list holds the names it always held, in the same order."""
    from perceptlab.analysis.evaluate import PERCEPTUAL_LOSSES, TRAIN_LOSSES, EvaluateConfig
    from perceptlab.analysis.similarity import DEFAULT_METRICS, metric_names
    from perceptlab.listening.create import TripletPlan
    from perceptlab.metrics.bench_neighbours import BENCH_METRICS

    assert builtin_names() == BUILTINS
    assert image_metric_names() == ["mse", "nlpd", "msssim"]
    assert baseline_names() == ["logmel-stats", "mfcc-stats"]
    assert loss_names() == ["mse", "nlpd", "msssim"] and perceptual_loss_names() == ["nlpd", "msssim"]
    assert list(DEFAULT_METRICS) == BUILTINS and metric_names(None) == BUILTINS
    assert EvaluateConfig().to_dict()["metrics"] == BUILTINS
    assert tuple(TRAIN_LOSSES) == ("mse", "nlpd", "msssim") and tuple(PERCEPTUAL_LOSSES) == ("nlpd", "msssim")
    assert TripletPlan().metrics == ("mse", "nlpd", "msssim")
    assert list(BENCH_METRICS) == BUILTINS


def test_modules_that_name_default_metrics_do_not_load_torch_on_import():
    """The defaults are asked of the registry when read: the GUI's first window does not wait for torch."""
    code = ("import sys; import perceptlab.analysis.similarity, perceptlab.analysis.evaluate, "
            "perceptlab.listening.create, perceptlab.analysis.bench, perceptlab.metric_names; "
            "from perceptlab.analysis.evaluate import EvaluateConfig; EvaluateConfig(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_live_list_reads_the_registry_when_used(plugin):
    from perceptlab.metric_names import BUILTIN_METRICS, IMAGE_METRICS, MetricNames

    assert IMAGE_METRICS == ("mse", "nlpd", "msssim", "l1") and IMAGE_METRICS == ["mse", "nlpd", "msssim", "l1"]
    assert "l1" in IMAGE_METRICS and IMAGE_METRICS[-1] == "l1" and len(IMAGE_METRICS) == 4
    assert ", ".join(BUILTIN_METRICS) == "mse, nlpd, msssim, l1, logmel-stats, mfcc-stats"
    assert hash(IMAGE_METRICS) == hash(("mse", "nlpd", "msssim", "l1"))
    unregister_metric("l1")
    try:
        assert "l1" not in IMAGE_METRICS and IMAGE_METRICS.names() == ("mse", "nlpd", "msssim")
    finally:
        register_metric(plugin)
    with pytest.raises(AttributeError):
        MetricNames("no_such_query").names()


def test_registry_queries_place_a_new_metric(plugin):
    assert builtin_names() == ["mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]
    assert image_metric_names() == ["mse", "nlpd", "msssim", "l1"]
    assert baseline_names() == ["logmel-stats", "mfcc-stats"]
    assert get_metric("l1").compares_images and not get_metric("l1").of_library
    # A library's own metrics (encoders, calibrated variants) are not built-ins.
    own = register_metric(replace(L1, name="embedding:plugin-test"))
    try:
        assert own.of_library and "embedding:plugin-test" not in builtin_names() + image_metric_names()
    finally:
        unregister_metric(own.name)


def test_similarity_defaults_and_neighbours_use_the_new_metric(plugin, clip_library, one_torch_thread):
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.analysis.neighbours import neighbours
    from perceptlab.analysis.similarity import DEFAULT_METRICS, metric_names, query_full_image, resolve
    from perceptlab.audio.features import compared_width, pad_frames
    from perceptlab.library.store import Library

    assert "l1" in DEFAULT_METRICS
    assert metric_names(None) == ["mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]
    assert metric_names(None, with_baselines=False) == ["mse", "nlpd", "msssim", "l1"]
    assert metric_names("l1,nlpd") == ["l1", "nlpd"]
    with Library(clip_library) as lib:
        assert "l1" in register_library_metrics(lib)  # what the GUI's metric menus and the CLI list
        clips = lib.clips()
        q = resolve(lib, clips[0].id)
        found = neighbours(lib, q, "l1", k=3)
        assert len(found) == 3 and all(n.clip.id != clips[0].id for n in found)
        qi = query_full_image(lib, q)
        expected = {}
        for c in clips[1:]:
            ci = query_full_image(lib, resolve(lib, c.id))
            w = compared_width(max(qi.shape[1], ci.shape[1]))
            a = torch.from_numpy(pad_frames(qi, w))[None, None]
            b = torch.from_numpy(pad_frames(ci, w))[None, None]
            expected[c.id] = float(l1(a, b)[0])
        best = sorted(expected, key=expected.get)[:3]
        assert [n.clip.id for n in found] == best
        for n in found:
            assert n.distance == pytest.approx(expected[n.clip.id], rel=1e-5, abs=1e-7)


def test_evaluation_defaults_include_the_new_metric_and_losses_follow_trainable(plugin, tmp_path):
    from perceptlab.analysis.evaluate import PERCEPTUAL_LOSSES, TRAIN_LOSSES, EvaluateConfig

    cfg = EvaluateConfig()
    assert list(cfg.metrics) == ["mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]
    assert cfg.to_dict()["metrics"] == list(cfg.metrics)
    assert "l1" not in PERCEPTUAL_LOSSES  # not marked perceptual: the claim does not count it
    toml = str(tmp_path / "train.toml")
    if plugin.trainable:
        assert "l1" in TRAIN_LOSSES
        assert EvaluateConfig(train_config=toml, losses=("l1",)).train_losses == ["l1"]
        assert "l1" in EvaluateConfig(train_config=toml).train_losses
    else:
        assert "l1" not in TRAIN_LOSSES
        with pytest.raises(ValueError, match=r"--losses: unknown \['l1'\]; choose from mse, nlpd, msssim"):
            EvaluateConfig(train_config=toml, losses=("l1",))
        assert EvaluateConfig(train_config=toml).train_losses == ["mse", "nlpd", "msssim"]


def test_training_offers_the_metric_as_a_loss_only_when_trainable(plugin):
    from perceptlab.train.config import ConfigError, _parse_loss
    from perceptlab.train.losses import ReconstructionLoss, all_metrics

    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    if not plugin.trainable:
        assert "l1" not in loss_names()
        with pytest.raises(ConfigError, match="loss.l1: unknown loss 'l1'; choose from mse, nlpd, msssim"):
            _parse_loss({"l1": 1.0})
        with pytest.raises(ValueError, match="unknown loss 'l1'"):
            ReconstructionLoss({"l1": 1.0})
        assert "l1" not in all_metrics(x, y)
        return
    assert loss_names() == ["mse", "nlpd", "msssim", "l1"]
    assert _parse_loss({"l1": 1.0, "nlpd": 0.5}) == {"l1": 1.0, "nlpd": 0.5}
    recon = x.clone().requires_grad_(True)
    loss = ReconstructionLoss({"l1": 1.0})(recon, y)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float((x - y).abs().mean()), rel=1e-6)
    assert torch.isfinite(recon.grad).all() and float(recon.grad.abs().sum()) > 0
    assert float(all_metrics(x, y)["l1"].mean()) == pytest.approx(float(loss.detach()), rel=1e-6)


def test_listening_session_defaults_compare_the_new_metric(plugin, clip_library, one_torch_thread):
    from perceptlab.library.store import Library
    from perceptlab.listening.create import TripletPlan, create_triplet_session

    plan = TripletPlan(n_trials=3, active=True, pool_factor=2, n_catch=0, seed=1)
    assert plan.metrics == ("mse", "nlpd", "msssim", "l1")
    with Library(clip_library) as lib:
        session = create_triplet_session(lib, "ann", plan)
        assert session.config["metrics"] == ["mse", "nlpd", "msssim", "l1"]
        assert session.config["plan"]["metrics"] == ["mse", "nlpd", "msssim", "l1"]


def test_benchmarks_measure_the_new_metric(plugin, one_torch_thread):
    from perceptlab.metrics.bench import run_metrics_bench
    from perceptlab.metrics.bench_neighbours import BENCH_METRICS, _on_images

    assert list(BENCH_METRICS) == ["mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]
    assert _on_images("l1") and _on_images("nlpd") and not _on_images("logmel-stats")
    lines: list[str] = []
    res = run_metrics_bench(n=4, frames=32, mels=32, naive_pairs=3, index_size=0, out=lines.append)
    assert list(res["metrics"]) == ["mse", "nlpd", "msssim", "l1"]
    assert res["metrics"]["l1"]["max_abs_diff"] < 1e-6
    assert any(line.startswith("l1 ") for line in lines)


def test_whole_clip_bench_defaults_to_the_image_metrics(plugin, one_torch_thread):
    from perceptlab.analysis.bench import run_whole_clip_bench

    res = run_whole_clip_bench(n=4, frames=40, naive_pairs=2, queries=1, out=lambda _line: None)
    assert list(res["metrics"]) == ["mse", "nlpd", "msssim", "l1"]
    assert res["metrics"]["l1"]["max_abs_diff"] < 1e-6
    assert np.isfinite(res["metrics"]["l1"]["neighbours_warm_s"])


@pytest.mark.qt
def test_session_dialog_offers_and_checks_the_new_metric(qtbot, clip_library, trainable_plugin):
    pytest.importorskip("PySide6.QtWidgets")
    from perceptlab.library.store import Library
    from perceptlab.qt.session_dialog import QtSessionDialog

    with Library(clip_library) as lib:
        dlg = QtSessionDialog(lib)  # no list from a window: the fallback, from the registry
        qtbot.addWidget(dlg)
        items = [dlg.metric_list.item(i) for i in range(dlg.metric_list.count())]
        assert [it.text() for it in items] == ["mse", "nlpd", "msssim", "l1"]
        assert dlg.checked_metrics() == ("mse", "nlpd", "msssim", "l1")
        dlg.active_check.setChecked(True)
        assert dlg.plan().metrics == ("mse", "nlpd", "msssim", "l1")
        dlg.done(0)


@pytest.mark.qt
@pytest.mark.slow
def test_main_window_lists_the_new_metric_and_the_session_dialog_checks_it(trainable_plugin, main_window):
    w = main_window
    assert w.metric_names[:6] == ["mse", "nlpd", "msssim", "l1", "logmel-stats", "mfcc-stats"]
    w.central_tabs.setCurrentWidget(w.listening_view)
    dlg = w.listening_view.new_session_dialog()
    try:
        offered = [dlg.metric_list.item(i).text() for i in range(dlg.metric_list.count())]
        assert offered == w.metric_names
        assert dlg.checked_metrics() == ("mse", "nlpd", "msssim", "l1")
    finally:
        dlg.reject()
