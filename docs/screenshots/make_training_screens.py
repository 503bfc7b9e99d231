"""Regenerate docs/screenshots/training-panel.png.

It comes from real work on the demo library, in the real main window at
1280 x 800: a tiny NLPD run launched from the Training tab's form (a small
model, the demo recipe), caught while it runs, with the hover readout at a
step of its curves. (probe.png, the Agreement tab's "Metric probe" page, is
made by ``docs/screenshots/probe_shots.py``.)

Run it on a display (an X server or Xvfb), from the repository root::

    Xvfb :96 -screen 0 1920x1080x24 &
    DISPLAY=:96 OMP_NUM_THREADS=1 python docs/screenshots/make_training_screens.py

``--library`` reuses a library that holds the demo clips; without it one is
made in ``--work`` from ``assets/demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from shots_common import OUT, demo_library, settle, wait_until  # noqa: E402  (beside this script)


SIZE = (1280, 800)
# A model small enough to train 30 epochs on the demo clips in a couple of minutes on one CPU thread.
TINY_MODEL = ["model.channels=[8, 16, 16, 32, 32]", "log_every=1"]




def training_screen(app, window, out: Path) -> None:
    panel = window.training_panel
    window.central_tabs.setCurrentWidget(panel)
    panel.config_box.setCurrentText("demo_nlpd")
    panel.name_edit.setText("demo-nlpd-small")
    panel.epochs_box.setValue(30)
    panel.batch_box.setValue(16)
    panel.latent_box.setValue(32)
    panel.device_box.setCurrentText("cpu")
    job = panel.launch(TINY_MODEL)
    if job is None:
        raise RuntimeError("the training panel did not launch the run")
    curves = panel.curves[str(job.out_dir)]
    start = lambda: job.last("start")  # noqa: E731
    wait_until(app, lambda: start() is not None or job.status != "running", 300, "the run to start")
    if job.status != "running":
        raise RuntimeError(f"the run stopped: {job.error}\n{job.log_tail(10)}")
    total = start()["total_steps"]
    # Two thirds of the way: the curves have shape and the progress bar a time left.
    wait_until(app, lambda: len(curves.steps) >= 2 * total // 3 or job.status != "running", 900,
               "two thirds of the run")
    if job.status != "running":
        raise RuntimeError(f"the run stopped early: {job.status} {job.error}")
    job._timer.stop()  # hold the picture still while it is taken
    settle(app)
    plot = panel.loss_plot
    step = curves.steps[len(curves.steps) * 3 // 5]
    plot.hover_at(step)
    settle(app)
    window.grab().save(str(out / "training-panel.png"))
    print("training-panel.png:", panel.progress_text(), "|", plot.readout)
    job._timer.start()
    job.cancel()
    wait_until(app, lambda: job.status != "running", 60, "the run to stop")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, help="a library holding the demo clips (default: made in --work)")
    parser.add_argument("--work", type=Path, help="folder for the library and the run (default: a new temp folder)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go (default: docs/screenshots)")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        parser.error("no display: start Xvfb and set DISPLAY (or QT_QPA_PLATFORM=offscreen)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the training job inherits it
    work = args.work or Path(tempfile.mkdtemp(prefix="perceptlab-screens-"))
    work.mkdir(parents=True, exist_ok=True)
    # Window state and settings of this run only, not the user's.
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    library = args.library or demo_library(work)
    if not library.exists():
        parser.error(f"{library}: no such library")

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from perceptlab.qt.main_window import QtMainWindow

    window = QtMainWindow(library_path=str(library))
    window.resize(*SIZE)
    window.show()
    wait_until(app, lambda: window.metrics_loaded, 120, "the metric registry")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        training_screen(app, window, args.out)
    finally:
        for job in window.training_panel.running_jobs():
            job.kill()
        window._close_decided = True  # no "training is running" question
        for runner in (window.tasks, window.matrix_tasks, window.listening_view.runner):
            runner.shutdown(60000)
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
