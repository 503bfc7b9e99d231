"""Training curves: the real panel reading a run's JSON-lines progress, as it does from a live job.

Each test writes ``events.jsonl`` with the trainer's own reporter
(:class:`perceptlab.train.progress.JsonLinesReporter`), points the panel at
the run folder and waits for the job's file watcher to deliver the events. A
run that is still "running" has a live process of its own (``sleep``), whose
id is the run's ``job.pid``, as a detached trainer's would be.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402

from perceptlab.train.progress import JsonLinesReporter  # noqa: E402

pytestmark = pytest.mark.qt

EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 15, 400, 20
TOTAL = EPOCHS * STEPS_PER_EPOCH  # 6,000 steps


class Run:
    """A run folder whose events.jsonl the test writes with the trainer's reporter."""

    def __init__(self, folder, alive: bool = True):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.fh = open(folder / "events.jsonl", "a")
        self.rep = JsonLinesReporter(self.fh)
        self.proc = subprocess.Popen(["sleep", "600"]) if alive else None
        if self.proc is not None:
            (folder / "job.pid").write_text(str(self.proc.pid))

    def start(self, epochs=EPOCHS, total_steps=TOTAL):
        self.rep.emit("start", run=self.folder.name, device="cpu", world_size=1, amp=False, n_train=1630,
                      n_val=460, n_train_clips=36, n_val_clips=12, params=50489, steps_per_epoch=STEPS_PER_EPOCH,
                      total_steps=total_steps, epoch=0, step=0, resumed_from=None, out_dir=str(self.folder),
                      library="lib.sqlite", fingerprint="0", skipped=[], config={"epochs": epochs})

    def step(self, step, loss, eta_s=100.0, **extra):
        epoch = (step - 1) // STEPS_PER_EPOCH + 1
        self.rep.emit("step", epoch=epoch, step=step, epoch_step=step - (epoch - 1) * STEPS_PER_EPOCH,
                      steps_per_epoch=STEPS_PER_EPOCH, train_loss=loss, samples_per_s=40.0, eta_s=eta_s, lr=1e-3,
                      **extra)

    def epoch(self, epoch, val):
        self.rep.emit("epoch", epoch=epoch, step=epoch * STEPS_PER_EPOCH, train_loss=val, val_loss=val,
                      val_metrics={}, best=True, checkpoint=None, best_checkpoint=None, elapsed_s=10.0 * epoch)

    def close(self):
        self.fh.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def panel(qtbot):
    from perceptlab.qt.training_panel import QtTrainingPanel

    p = QtTrainingPanel()
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    qtbot.waitExposed(p)
    return p


@pytest.fixture
def run(tmp_path):
    r = Run(tmp_path / "demo-nlpd")
    yield r
    r.close()


def losses_between(lo, hi, n, seed=0):
    return list(np.random.default_rng(seed).uniform(lo, hi, n))


def logged_steps(upto=TOTAL):
    return list(range(LOG_EVERY, upto + 1, LOG_EVERY))


def test_before_the_first_step_there_is_a_line_not_axes(panel, run, qtbot):
    from perceptlab.qt.training_curves import NO_RUN, WAITING

    plot = panel.loss_plot
    assert plot.is_empty() and plot.message.text() == NO_RUN
    assert not plot.plot_widget.isVisible()  # no empty axes
    run.rep.emit("loading", done=12, total=48)
    job = panel.watch(run.folder, "demo-nlpd")
    assert job.status == "running"
    assert plot.is_empty()
    assert plot.message.text().splitlines() == [WAITING, "demo-nlpd: loading clips 12 / 48"]
    run.start()
    qtbot.waitUntil(lambda: "epoch 0 / 15" in plot.message.text(), timeout=5000)
    assert plot.message.text().startswith(WAITING) and not plot.plot_widget.isVisible()
    run.step(20, 0.9)
    qtbot.waitUntil(lambda: not plot.is_empty(), timeout=5000)
    assert plot.plot_widget.isVisible()
    # Unticking the only run leaves the line that says how to get curves back.
    panel._item_for(job).setCheckState(Qt.Unchecked)
    assert plot.is_empty() and plot.message.text().startswith(NO_RUN)


def test_the_y_range_fits_losses_at_0_8_to_0_9_and_leaves_zero_out(panel, run, qtbot):
    steps = logged_steps(4000)
    losses = losses_between(0.8, 0.9, len(steps))
    losses[0] = 6.0  # one wild first step must not flatten the rest
    run.start()
    for s, v in zip(steps, losses):
        run.step(s, v)
    panel.watch(run.folder, "demo-nlpd")
    curves = panel.curves[str(run.folder.resolve())]
    qtbot.waitUntil(lambda: len(curves.steps) == len(steps), timeout=5000)
    assert not curves.band.path().isEmpty()  # the envelope is drawn
    bar = panel.log_view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=2000)  # latest lines
    lo, hi = panel.loss_plot.y_range()
    assert not panel.loss_plot.is_log()
    assert 0.7 < lo < 0.81, (lo, hi)  # 0 is far below the range
    assert 0.89 < hi < 1.0, (lo, hi)  # the spike at 6.0 is above it
    # The range covers the losses' 1st to 99th percentile, with a margin under 10% of it.
    p1, p99 = np.percentile(losses, [1, 99])
    assert lo < p1 and hi > p99
    assert (p1 - lo) < 0.1 * (p99 - p1) + 1e-9 and (hi - p99) < 0.1 * (p99 - p1) + 1e-9


def test_a_run_with_view_agreement_plots_its_reconstruction_loss_beside_validation(panel, run, qtbot):
    # An NLPD run with contrastive_scale = "mse": the objective is in MSE units (~0.01), the
    # reconstruction loss and validation in NLPD's (~0.5). The curve must show the NLPD.
    steps = logged_steps(STEPS_PER_EPOCH)
    run.start()
    for s, v in zip(steps, losses_between(0.5, 0.6, len(steps))):
        run.step(s, 0.012, recon_loss=v)
    run.epoch(1, 0.55)
    panel.watch(run.folder, "demo-nlpd")
    curves = panel.curves[str(run.folder.resolve())]
    qtbot.waitUntil(lambda: len(curves.val_losses) == 1, timeout=5000)
    assert min(curves.losses) >= 0.5 and max(curves.losses) <= 0.6
    lo, hi = panel.loss_plot.y_range()
    assert 0.1 < lo < 0.55 < hi  # one linear range holds both, far above the objective's 0.012
    assert not panel.loss_plot.is_log()
    assert "loss 0.012 (reconstruction 0.5" in panel.log_view.toPlainText()


def test_auto_scale_turns_log_when_the_loss_spans_decades(panel, run, qtbot):
    steps = logged_steps(3000)
    losses = [10.0 * math.exp(-s / 400) + 1e-3 for s in steps]  # 10 down to about 0.0016
    run.start()
    for s, v in zip(steps, losses):
        run.step(s, v)
    panel.watch(run.folder, "demo-nlpd")
    plot = panel.loss_plot
    qtbot.waitUntil(lambda: len(plot.shown_runs()) == 1 and len(plot.shown_runs()[0].steps) == len(steps),
                    timeout=5000)
    assert plot.scale() == "auto" and plot.is_log()
    # The envelope band's edges follow the log axis too (they are not the plot's own items).
    run_curves = plot.shown_runs()[0]
    lo_env, hi_env = (np.asarray(c.curve.getData()[1]) for c in (run_curves.lo, run_curves.hi))
    assert lo_env == pytest.approx(np.log10(np.minimum.accumulate(losses)), rel=1e-9)  # falling losses
    assert hi_env.max() == pytest.approx(math.log10(max(losses)), rel=1e-9)
    assert plot.plot.getAxis("left").labelText == "loss (log scale)"
    lo, hi = plot.y_range()
    assert 1e-3 < lo < 0.01 and 1.0 < hi < 20.0, (lo, hi)
    plot.set_scale("linear")
    assert not plot.is_log() and plot.plot.getAxis("left").labelText == "loss"
    with pytest.raises(ValueError, match="unknown y scale 'cubic'"):
        plot.set_scale("cubic")


def test_the_legend_names_raw_smoothed_envelope_and_validation(panel, run, qtbot):
    from perceptlab.qt.training_numbers import ENVELOPE

    run.start()
    run.step(20, 0.9)
    panel.watch(run.folder, "demo-nlpd")
    qtbot.waitUntil(lambda: not panel.loss_plot.is_empty(), timeout=5000)
    entries = panel.loss_plot.legend_entries()
    assert len(entries) == 4
    for entry, word in zip(entries, ("raw", "smoothed", "envelope", "validation")):
        assert entry.startswith(word)
        assert panel.loss_plot.legend_labels[word].isVisible()
    # The envelope says what it is: min to max over the last steps.
    envelope = panel.loss_plot.legend_labels["envelope"]
    assert f"{ENVELOPE} steps" in envelope.text() and "min" in envelope.text() and "max" in envelope.text()
    assert "highest" in envelope.toolTip() and "lowest" in envelope.toolTip()


def test_hovering_shows_step_epoch_loss_smoothed_and_validation(panel, run, qtbot):
    steps = logged_steps(1900)  # epoch 5 is still running: no validation for it yet
    losses = losses_between(0.8, 0.9, len(steps), seed=3)
    run.start()
    for s, v in zip(steps, losses):
        run.step(s, v)
        if s % STEPS_PER_EPOCH == 0:
            run.epoch(s // STEPS_PER_EPOCH, 0.85 + 0.001 * (s // STEPS_PER_EPOCH))
    panel.watch(run.folder, "demo-nlpd")
    plot = panel.loss_plot
    qtbot.waitUntil(lambda: plot.shown_runs() and len(plot.shown_runs()[0].val_steps) == 4, timeout=5000)
    # The expected smoothed value, computed here by the EMA's definition.
    i = steps.index(1240)
    acc = losses[0]
    for v in losses[1:i + 1]:
        acc = 0.9 * acc + 0.1 * v
    expected = f"step 1,240 · epoch 4 · loss {losses[i]:.4g} (smoothed {acc:.4g}) · val {0.854:.4g}"
    # A real mouse move over the plot, a little off the logged step: the readout snaps to it.
    vb = plot.plot.vb
    scene = vb.mapViewToScene(QPointF(1243, 0.85))
    at = plot.plot_widget.mapFromScene(scene)
    qtbot.mouseMove(plot.plot_widget.viewport(), QPoint(at.x(), at.y()))
    qtbot.waitUntil(lambda: plot.readout != "", timeout=5000)
    assert plot.readout == expected
    assert plot.vline.isVisible() and plot.vline.value() == 1240
    assert plot.hline.value() == pytest.approx(acc, rel=1e-9)
    assert plot.text.isVisible() and "step 1,240 · epoch 4" in plot.text.toPlainText()
    # The readout stays inside the plot.
    shown = plot.text.mapRectToView(plot.text.boundingRect())
    (x0, x1), (y0, y1) = vb.viewRange()
    assert x0 - 1e-6 <= shown.left() and shown.right() <= x1 + 1e-6
    # Before any validation of that epoch there is no val part; off the run's steps, no readout.
    text = plot.hover_at(1885)
    assert text.startswith(f"step 1,880 · epoch 5 · loss {losses[-2]:.4g} (smoothed ") and "val" not in text
    assert plot.hover_at(9000) == "" and not plot.vline.isVisible()


def test_progress_says_epochs_steps_and_time_left(panel, tmp_path, qtbot):
    run = Run(tmp_path / "long", alive=True)
    try:
        run.start(epochs=15, total_steps=6200)
        run.step(1240, 0.0123, eta_s=750.0)
        job = panel.watch(run.folder, "long")
        qtbot.waitUntil(lambda: "step 1,240" in panel.progress_text(), timeout=5000)
        assert panel.progress_text() == "epoch 4 / 15 · step 1,240 / 6,200 · 12:30 left"
        assert panel.progress_row.isVisible() and panel.progress.value() == 200  # 1,240 of 6,200 in 1/1000
        assert "samples/s" in panel.stats.text()
        run.step(1260, 0.0121, eta_s=3725.0)
        qtbot.waitUntil(lambda: "1:02:05 left" in panel.progress_text(), timeout=5000)
        run.rep.emit("done", epochs=15, step=6200, best_val_loss=0.011, best_epoch=14, best="best.pt",
                     last="last.pt", elapsed_s=250.0, stopped=None)
        qtbot.waitUntil(lambda: job.status == "completed", timeout=5000)
        assert panel.progress_text() == "epoch 15 / 15 · step 6,200 / 6,200 · done in 4:10"
        assert panel.progress.value() == 1000
    finally:
        run.close()


def test_progress_and_range_numbers():
    from perceptlab.qt.training_numbers import fmt_duration, progress_text, robust_range, rolling_envelope

    assert fmt_duration(750) == "12:30" and fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "?"
    assert robust_range([]) is None and robust_range([float("nan")]) is None
    lo, hi = robust_range([0.5])
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.05)
    lo, hi = robust_range([0.01, 0.1, 1.0], log=True)
    assert lo < -2 and hi > 0
    assert robust_range([0.0, -1.0], log=True) is None  # nothing a log axis can show
    lo_env, hi_env = rolling_envelope([3, 1, 2, 5, 4], window=2)
    assert list(lo_env) == [3, 1, 1, 2, 4] and list(hi_env) == [3, 3, 2, 5, 5]
    assert progress_text([], "running") == ""
    cancelled = [{"event": "start", "config": {"epochs": 15}, "total_steps": 6200, "epoch": 0, "step": 0},
                 {"event": "step", "epoch": 2, "step": 700, "eta_s": 10.0}]
    assert progress_text(cancelled, "cancelled") == "epoch 2 / 15 · step 700 / 6,200 · cancelled"


def test_a_narrow_panel_wraps_the_legend_and_keeps_the_readout_inside(panel, run, qtbot):
    # At 1280 x 800 the docks leave the Training tab about 570 px: the panel must not need more.
    assert panel.minimumSizeHint().width() <= 540
    steps = logged_steps(2000)
    run.start()
    for s, v in zip(steps, losses_between(0.8, 0.9, len(steps))):
        run.step(s, v)
        if s % STEPS_PER_EPOCH == 0:
            run.epoch(s // STEPS_PER_EPOCH, 0.85)
    panel.watch(run.folder, "demo-nlpd")
    plot = panel.loss_plot
    qtbot.waitUntil(lambda: not plot.is_empty() and len(plot.shown_runs()[0].val_steps) == 5, timeout=5000)
    panel.resize(540, 700)
    qtbot.waitUntil(lambda: panel.width() == 540, timeout=2000)
    qtbot.wait(50)
    page = plot.stack.currentWidget().rect()
    rows = set()
    for key, label in plot.legend_labels.items():
        box = label.rect().translated(label.mapTo(plot.stack.currentWidget(), label.rect().topLeft()))
        assert page.contains(box), (key, box, page)  # nothing cut off at the right
        rows.add(box.top())
    assert len(rows) >= 2  # wrapped
    assert plot.plot_widget.height() > 250  # the plot keeps most of the height

    def inside():
        shown = plot.text.mapRectToView(plot.text.boundingRect())
        (x0, x1), _ = plot.plot.vb.viewRange()
        return x0 - 1e-6 <= shown.left() and shown.right() <= x1 + 1e-6

    for step in (steps[0], 1000, steps[-1]):  # left edge, middle, right edge
        plot.hover_at(step)
        qtbot.wait(100)  # painted, the range brought up to date
        assert inside(), step
    # New steps widen the x range under a readout at the right edge: it stays inside.
    plot.hover_at(steps[-1])
    for s in range(2020, 4001, 20):
        run.step(s, 0.85)
    qtbot.waitUntil(lambda: plot.shown_runs()[0].steps[-1] == 4000, timeout=5000)
    qtbot.wait(100)
    assert plot.text.isVisible() and inside()
