"""Training from the GUI: a real tiny job launched, watched, cancelled, resumed and used."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import Qt  # noqa: E402

from perceptlab.library.store import Library  # noqa: E402

pytestmark = [pytest.mark.qt, pytest.mark.slow]

# Small enough to run in seconds on two cores, long enough to cancel mid-way.
TINY = ["model.channels=[4, 8, 8]", "model.latent_dim=8", "data.patch_frames=32", "data.patch_hop=16",
        "data.min_clip_frames=8", "data.val_fraction=0.34", "log_every=1", "optim.warmup_steps=0"]


@pytest.fixture
def window(main_window, monkeypatch):
    # The jobs the panel starts inherit this: a tiny model trains fastest on one
    # thread, and two OpenMP threads per job stall badly on a busy 2-core machine.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    main_window.central_tabs.setCurrentWidget(main_window.training_panel)
    return main_window


def test_launch_watch_cancel_resume_and_use_the_encoder(window, qtbot):
    panel = window.training_panel
    panel.config_box.setCurrentText("demo_nlpd")
    panel.name_edit.setText("tiny")
    panel.epochs_box.setValue(40)
    panel.batch_box.setValue(4)
    panel.latent_box.setValue(8)
    panel.device_box.setCurrentText("cpu")
    job = panel.launch(TINY)
    assert job is not None and job.status == "running"
    curves = panel.curves[str(job.out_dir)]
    # The curve receives points while the job runs.
    qtbot.waitUntil(lambda: len(curves.steps) >= 3, timeout=60000)
    assert curves.smooth.getData()[0] is not None and len(curves.smooth.getData()[0]) >= 3
    assert "samples/s" in panel.stats.text()
    # Cancel really stops it, within seconds, and keeps last.pt.
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: job.status != "running", timeout=20000)
    assert job.status == "cancelled", job.error
    assert (job.out_dir / "last.pt").exists()
    with Library(window.library.path) as lib:
        run = next(r for r in lib.runs() if r["name"] == "tiny")
    assert run["status"] == "cancelled"
    steps_before = len(curves.steps)
    # Resume continues to the end.
    assert panel.resume_button.isEnabled()
    qtbot.mouseClick(panel.resume_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: job.status != "running", timeout=180000)
    assert job.status == "completed", job.error
    assert len(curves.steps) > steps_before and curves.val_steps
    assert curves.steps[-1] > curves.steps[steps_before - 1]  # continued, not restarted
    with Library(window.library.path) as lib:
        run = next(r for r in lib.runs() if r["name"] == "tiny")
    assert run["status"] == "completed"
    # Use this encoder: the library is embedded and the metric joins the panels.
    assert panel.use_button.isEnabled()
    qtbot.mouseClick(panel.use_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: getattr(window, "encoder_ready_metric", None) is not None, timeout=60000)
    metric = window.encoder_ready_metric
    assert metric.startswith("embedding:")
    window.library_panel.select_clip(window.library_panel.model.clips()[0].id)
    qtbot.waitUntil(lambda: metric in window.neighbours_panel.metrics_shown(), timeout=30000)
    assert len(window.neighbours_panel.top(metric)) == 5
    assert window.matrix_view.metric_box.findData(metric) >= 0


def test_a_crashing_job_shows_its_error_and_the_gui_stays_usable(window, qtbot):
    panel = window.training_panel
    job = panel.launch(TINY + ["optim.lrr=0.1"])
    qtbot.waitUntil(lambda: job.status != "running", timeout=60000)
    assert job.status == "failed"
    assert "lrr" in job.error
    panel.run_list.setCurrentItem(panel._item_for(job))
    assert "lrr" in panel.stats.text()
    assert "lrr" in panel.log_view.toPlainText()
    # Still usable: the library view still answers.
    window.central_tabs.setCurrentIndex(0)
    window.library_panel.select_clip(window.library_panel.model.clips()[1].id)
    assert window.spectrogram.has_image()


def test_a_killed_job_is_reported_as_failed(window, qtbot):
    panel = window.training_panel
    panel.epochs_box.setValue(500)
    job = panel.launch(TINY)
    qtbot.waitUntil(lambda: len(panel.curves[str(job.out_dir)].steps) >= 1, timeout=60000)
    job.kill()
    qtbot.waitUntil(lambda: job.status != "running", timeout=20000)
    assert job.status == "failed" and "without a final event" in job.error
    with Library(window.library.path) as lib:
        run = next(r for r in lib.runs() if r["out_dir"] == str(job.out_dir))
    assert run["status"] == "failed"


def test_map_has_a_point_per_clip_and_click_selects(window, qtbot):
    view = window.map_view
    window.map_dock.raise_()
    view.source_box.setCurrentIndex(view.source_box.findData("nlpd"))
    qtbot.waitUntil(lambda: view.result is not None, timeout=60000)
    assert view.point_count() == window.library_panel.model.rowCount() == 9
    pts = view.scatter.points()
    target = view.clip_at(pts[4].data())
    view.scatter.sigClicked.emit(view.scatter, [pts[4]], None)
    assert window.library_panel.current_clip().id == target.id
    # A lasso around every point sends them all to the matrix view.
    from PySide6.QtCore import QPointF

    xs = [p.pos().x() for p in pts]
    ys = [p.pos().y() for p in pts]
    pad = 1 + max(max(xs) - min(xs), max(ys) - min(ys))
    box = [QPointF(min(xs) - pad, min(ys) - pad), QPointF(max(xs) + pad, min(ys) - pad),
           QPointF(max(xs) + pad, max(ys) + pad), QPointF(min(xs) - pad, max(ys) + pad)]
    view._on_lasso(box)
    assert len(window.matrix_view.selection) == 9


def test_evaluation_runs_in_the_background_and_shows_its_report(window, qtbot):
    view = window.evaluation_view
    window.central_tabs.setCurrentWidget(view)
    assert view.mode() == "checkpoints"
    view.folds_box.setValue(3)
    assert view.run(["--segment-frames", "32", "--segment-hop", "32", "--bootstrap", "200"])
    assert view.busy()
    qtbot.waitUntil(lambda: not view.busy(), timeout=240000)
    assert view.report is not None, view.status.text() + view.log.toPlainText()[-2000:]
    rows = view.report.table()
    assert view.table.rowCount() == len(rows) > 3
    assert view.table.item(0, 1).text() == rows[0]["method"]
    assert "Verdict" in view.status.text()
    assert view.bars is not None and len(view.bars.opts["width"]) == len(rows)
    assert list(view.bars.opts["width"]) == [r["f1_weighted"] for r in rows]


def test_reconstructions_view_shows_and_plays_what_the_encoder_keeps(window, qtbot):
    from pathlib import Path

    ckpt = Path(__file__).resolve().parents[1] / "assets" / "models" / "demo-nlpd.pt"
    view = window.recon_view
    view.show_checkpoint(str(window.library.path), str(ckpt))
    qtbot.waitUntil(lambda: view.result is not None, timeout=60000)
    res = view.result
    assert res["inputs"].shape == res["recons"].shape and res["inputs"].shape[1:] == (128, 128)
    assert len(res["clips"]) == 3  # one per label of the test library
    assert 0.0 <= res["recons"].min() and res["recons"].max() <= 1.0
    view.play(0, "recons")
    qtbot.waitUntil(lambda: getattr(view, "last_audio", None) is not None, timeout=60000)
    assert view.last_audio.ndim == 1 and len(view.last_audio) > 22050  # about 3 s of audio
    assert view.engine.active_slot == "A" and view.engine.duration() == len(view.last_audio) / res["config"].sample_rate
    qtbot.waitUntil(lambda: not view.engine.is_playing, timeout=30000)  # played to the end


# -- the loss weights: one per trainable metric of the registry ------------------------


def _loss_rows(panel) -> list[tuple[str, str]]:
    return [(key, panel.form.labelForField(box).text()) for key, box in panel.loss_boxes.items()]


def test_the_loss_weights_are_the_registry_s_trainable_metrics(window, qtbot):
    from perceptlab.metrics.registry import loss_names

    panel = window.training_panel
    qtbot.waitUntil(lambda: bool(panel.loss_boxes), timeout=5000)
    assert list(panel.loss_boxes) == loss_names()
    assert _loss_rows(panel) == [("mse", "Loss weight: MSE"), ("nlpd", "NLPD"), ("msssim", "1 - MS-SSIM")]
    assert all(box.isVisible() for box in panel.loss_boxes.values())
    panel.config_box.setCurrentText("demo_nlpd")  # the recipe's weights fill the boxes
    assert {k: b.value() for k, b in panel.loss_boxes.items()} == {"mse": 0.0, "nlpd": 1.0, "msssim": 0.0}
    panel.loss_boxes["msssim"].setValue(0.5)
    assert "loss={nlpd = 1, msssim = 0.5}" in panel.form_overrides()


@pytest.fixture
def trainable_l1():
    """A trainable plugin metric, registered before the window opens and removed after the test."""
    from perceptlab.metrics.registry import Metric, register_metric, unregister_metric

    def l1(x, y, *, validate: bool = True):
        return (x - y).abs().mean(dim=(1, 2, 3))

    metric = register_metric(Metric(name="l1", display_name="L1", fn=l1, trainable=True))
    try:
        yield metric
    finally:
        unregister_metric(metric.name)


def test_a_trainable_plugin_metric_gets_a_loss_weight(trainable_l1, window, qtbot):
    from perceptlab.metrics.registry import unregister_metric

    panel = window.training_panel
    qtbot.waitUntil(lambda: bool(panel.loss_boxes), timeout=5000)
    assert _loss_rows(panel)[-1] == ("l1", "L1") and len(panel.loss_boxes) == 4
    panel.loss_boxes["l1"].setValue(0.25)
    panel.loss_boxes["mse"].setValue(0.0)
    assert "loss={l1 = 0.25}" in panel.form_overrides()
    # Made again without it, the rows keep the weights the user set.
    panel.loss_boxes["nlpd"].setValue(2.0)
    unregister_metric("l1")
    try:
        panel.refresh_losses()
        assert _loss_rows(panel) == [("mse", "Loss weight: MSE"), ("nlpd", "NLPD"), ("msssim", "1 - MS-SSIM")]
        assert panel.loss_boxes["nlpd"].value() == 2.0
        assert panel.form.rowCount() == 10  # recipe, name, 3 weights, epochs, batch, latent, device, launch
    finally:
        from perceptlab.metrics.registry import register_metric

        register_metric(trainable_l1)


def test_a_panel_on_its_own_makes_its_loss_weights_when_shown(qtbot):
    from perceptlab.qt.training_panel import QtTrainingPanel

    panel = QtTrainingPanel()
    qtbot.addWidget(panel)
    assert not panel.loss_boxes  # nothing asked of the registry before it is shown
    with pytest.raises(ValueError, match="the training losses are not known yet"):
        panel.form_overrides()
    panel.show()
    qtbot.waitExposed(panel)
    assert list(panel.loss_boxes) == ["mse", "nlpd", "msssim"]
    assert panel.loss_boxes["mse"].value() == 1.0 and "loss={mse = 1}" in panel.form_overrides()
