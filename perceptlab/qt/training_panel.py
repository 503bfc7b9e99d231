"""The training panel: launch, watch, cancel and resume encoder training runs.

Pick a recipe from ``training/configs`` and adjust it (loss mix, epochs,
batch size, latent size, device), then Launch. Each run is a separate
``perceptlab train`` process (see :mod:`perceptlab.qt.training_jobs`); its
JSON-lines progress becomes live curves (:mod:`perceptlab.qt.training_curves`):
the raw training loss (faint), its exponential moving average with the
min/max envelope of the recent steps, and the validation loss per epoch, with
a legend, a y range fitted to the losses, a hover readout and, before the
first step, a line saying what the plot waits for. Several runs overlay. A
progress bar says where the selected run stands, in epochs, steps and time
left. The run history is the library's ``runs`` table.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from perceptlab.qt.training_curves import NO_RUN, WAITING, QtLossPlot, RunCurves
from perceptlab.qt.training_jobs import QtTrainingJob
from perceptlab.qt.training_numbers import fmt_duration, progress_fraction, progress_text

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def list_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.is_dir() else []


def read_config(path: Path) -> dict:
    import tomllib

    with open(path, "rb") as fh:
        return tomllib.load(fh)


class QtTrainingPanel(QWidget):
    """Launch and watch training runs.

    Signals
    -------
    use_encoder(str, str)
        (checkpoint path, run name): embed the library with this encoder.
    """

    use_encoder = Signal(str, str)
    reconstruct = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.library_path: str | None = None
        self.jobs: dict[str, QtTrainingJob] = {}  # keyed by out_dir
        self.curves: dict[str, RunCurves] = {}
        self._colour = 0

        # -- the form --------------------------------------------------------
        self.config_box = QComboBox()
        # Sized to the names, not the longest one: the form must leave the curves their width.
        self.config_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.config_box.setMinimumContentsLength(6)
        for p in list_configs():
            self.config_box.addItem(p.stem, str(p))
        self.name_edit = QLineEdit()
        # One weight per trainable metric of the registry, made once the window has loaded it
        # (refresh_losses): asking the registry here would load torch before the first window.
        self.loss_boxes: dict[str, QDoubleSpinBox] = {}
        self._recipe_loss: dict = {}  # the chosen recipe's loss weights, for boxes made later
        self._losses_pending = QLabel("loading the metrics...")
        self._losses_pending.setEnabled(False)
        self.epochs_box = QSpinBox()
        self.epochs_box.setRange(1, 10000)
        self.batch_box = QSpinBox()
        self.batch_box.setRange(1, 4096)
        self.latent_box = QSpinBox()
        self.latent_box.setRange(2, 4096)
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cpu", "cuda"])
        self.device_box.setToolTip("auto picks CUDA when the job finds a GPU")
        self.launch_button = QPushButton("Launch")
        form = QFormLayout()
        form.addRow("Recipe", self.config_box)
        form.addRow("Run name", self.name_edit)
        form.addRow("Loss weight", self._losses_pending)
        form.addRow("Epochs", self.epochs_box)
        form.addRow("Batch size", self.batch_box)
        form.addRow("Latent size", self.latent_box)
        form.addRow("Device", self.device_box)
        form.addRow(self.launch_button)
        form_box = QGroupBox("New run")
        form_box.setLayout(form)
        self.form = form

        # -- runs ----------------------------------------------------------------
        self.run_list = QListWidget()
        self.run_list.setToolTip("Tick to overlay a run's curves")
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use this encoder")
        self.recon_button = QPushButton("Reconstructions")
        buttons = QGridLayout()
        for i, b in enumerate((self.cancel_button, self.resume_button, self.use_button, self.recon_button)):
            buttons.addWidget(b, i // 2, i % 2)
        runs_box = QGroupBox("Runs")
        rl = QVBoxLayout(runs_box)
        rl.addWidget(self.run_list)
        rl.addLayout(buttons)

        left = QWidget()
        left.setMaximumWidth(360)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(form_box)
        ll.addWidget(runs_box, 1)

        # -- curves and log -------------------------------------------------------------
        self.loss_plot = QtLossPlot()
        self.plot_widget = self.loss_plot.plot_widget
        self.plot = self.loss_plot.plot
        self.stats = QLabel("No run selected")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextSelectableByMouse)
        # The words beside a thin bar: text drawn across a bar's edge is hard to read.
        self.progress_label = QLabel()
        self.progress_label.setToolTip("Where the selected run stands: epochs, steps and the time left")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress.setToolTip(self.progress_label.toolTip())
        self.progress_label.setWordWrap(True)
        self.progress_row = QWidget()
        pr = QVBoxLayout(self.progress_row)
        pr.setContentsMargins(0, 0, 0, 0)
        pr.setSpacing(2)
        pr.addWidget(self.progress_label)
        pr.addWidget(self.progress)
        self.progress_row.hide()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText("The selected run's log: one line per logged step and per epoch")
        right = QWidget()
        rr = QVBoxLayout(right)
        rr.setContentsMargins(0, 0, 0, 0)
        rr.addWidget(self.stats)
        rr.addWidget(self.progress_row)
        rr.addWidget(self.loss_plot, 3)
        rr.addWidget(self.log_view, 1)

        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([1, 10_000])  # the form at its narrowest, the rest to the curves
        self.splitter = split
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.config_box.currentIndexChanged.connect(self._on_config_changed)
        self.launch_button.clicked.connect(self.launch)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.resume_button.clicked.connect(self._on_resume_clicked)
        self.use_button.clicked.connect(self._on_use_clicked)
        self.recon_button.clicked.connect(self._on_recon_clicked)
        self.run_list.currentItemChanged.connect(lambda *_: self._show_selected())
        self.run_list.itemChanged.connect(self._on_item_changed)
        self._on_config_changed()
        self._update_buttons()
        self._refresh_plot()

    # -- the losses ----------------------------------------------------------------------
    def refresh_losses(self) -> None:
        """One weight box per metric an encoder can be trained with, from the registry.

        The rows follow :func:`perceptlab.metrics.registry.loss_names`, each
        labelled with its metric's ``display_name``; a box keeps its weight
        when the rows are made again, and a new one starts at the recipe's.
        This reads the registry (torch): the main window calls it once it has
        loaded the metrics; a panel on its own calls it when first shown.
        """
        from perceptlab.metrics.registry import get_metric, loss_names

        names = loss_names()
        if names == list(self.loss_boxes):
            return
        values = {**self._recipe_loss, **{k: b.value() for k, b in self.loss_boxes.items()}}
        for box in self.loss_boxes.values():
            self.form.removeRow(box)
        if self._losses_pending is not None:
            self.form.removeRow(self._losses_pending)
            self._losses_pending = None
        self.loss_boxes = {}
        first = 2  # below the recipe and the run name
        for i, key in enumerate(names):
            label = get_metric(key).display_name
            box = QDoubleSpinBox()
            box.setRange(0.0, 100.0)
            box.setSingleStep(0.1)
            box.setDecimals(2)
            box.setValue(float(values.get(key, 0.0)))
            box.setToolTip(f"weight of the {label} term (0 = off); several non-zero weights make a mix")
            self.form.insertRow(first + i, f"Loss weight: {label}" if i == 0 else label, box)
            self.loss_boxes[key] = box

    def showEvent(self, event) -> None:
        super().showEvent(event)
        window = self.window()
        if not self.loss_boxes and (window is self or getattr(window, "metrics_loaded", False)):
            self.refresh_losses()

    # -- library -----------------------------------------------------------------------
    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.reload_history()

    def reload_history(self) -> None:
        """List the library's runs; re-attach to runs whose output folder has events."""
        if self.library_path is None:
            return
        from perceptlab.library.store import Library

        with Library(self.library_path) as lib:
            runs = lib.runs()
        for run in reversed(runs):  # oldest first, so colours are stable
            out_dir = str(Path(run["out_dir"]).resolve())
            if out_dir in self.jobs:
                continue
            job = QtTrainingJob.attach(out_dir, run["name"], self) if (Path(out_dir) / "events.jsonl").exists() \
                else None
            if job is None:
                job = QtTrainingJob(out_dir, run["name"], self)
                job.status = run["status"] if run["status"] != "running" else "failed"
                job.error = run.get("error")
            self._add_job(job, visible=False)

    # -- launching --------------------------------------------------------------------------
    def form_overrides(self) -> list[str]:
        """``--set`` overrides that turn the chosen recipe into what the form shows."""
        sets = [f"epochs={self.epochs_box.value()}", f"batch_size={self.batch_box.value()}",
                f"model.latent_dim={self.latent_box.value()}", f'device="{self.device_box.currentText()}"']
        if not self.loss_boxes:
            raise ValueError("the training losses are not known yet: the metrics are still loading")
        weights = {k: b.value() for k, b in self.loss_boxes.items() if b.value() > 0}
        if not weights:
            raise ValueError("give at least one loss a weight above 0")
        sets.append("loss={" + ", ".join(f"{k} = {v:g}" for k, v in weights.items()) + "}")
        name = self.name_edit.text().strip()
        if name:
            sets.append(f'name="{name}"')
        return sets

    def launch(self, extra_sets: list[str] | None = None) -> QtTrainingJob | None:
        """Start a run from the form (``extra_sets`` for tests and power users)."""
        if self.library_path is None:
            QMessageBox.warning(self, "No library", "Open a library first")
            return None
        config = self.config_box.currentData()
        try:
            sets = self.form_overrides() + list(extra_sets or [])
        except ValueError as exc:
            QMessageBox.warning(self, "Cannot launch", str(exc))
            return None
        name = self.name_edit.text().strip() or Path(config).stem
        out_dir = Path(self.library_path).parent / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while out_dir.exists():
            out_dir = out_dir.with_name(f"{out_dir.name}-{n}")
            n += 1
        args = ["--config", str(Path(config).resolve()), "--library", str(Path(self.library_path).resolve())]
        for s in sets + [f'out_dir="{out_dir.resolve()}"']:
            args += ["--set", s]
        job = QtTrainingJob(out_dir.resolve(), name, self)
        self._add_job(job, visible=True)
        job.start(args)
        item = self._item_for(job)
        self._label_item(item, job)
        self.run_list.setCurrentItem(item)
        return job

    def _add_job(self, job: QtTrainingJob, visible: bool) -> None:
        key = str(job.out_dir)
        self.jobs[key] = job
        curves = self.loss_plot.add_run(job.name, COLOURS[self._colour % len(COLOURS)])
        self._colour += 1
        self.curves[key] = curves
        for ev in job.events:
            curves.add_event(ev)
        curves.redraw()
        curves.set_visible(visible)
        item = QListWidgetItem()
        item.setData(Qt.UserRole, key)
        item.setForeground(curves.colour)  # the run's colour on the plot
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked if visible else Qt.Unchecked)
        self.run_list.insertItem(0, item)
        self._label_item(item, job)
        job.event.connect(lambda ev, k=key: self._on_event(k, ev))
        job.finished.connect(lambda status, k=key: self._on_finished(k, status))
        self._refresh_plot()

    def watch(self, out_dir: str | Path, name: str | None = None) -> QtTrainingJob:
        """Show a run started elsewhere (``perceptlab train`` in a terminal, another session).

        ``out_dir`` must hold the run's ``events.jsonl``; the run is ticked and
        selected, and followed while its process lives.
        """
        out_dir = Path(out_dir).resolve()
        if not (out_dir / "events.jsonl").is_file():
            raise ValueError(f"{out_dir}: not a training run folder (it has no events.jsonl)")
        key = str(out_dir)
        if key in self.jobs:
            job = self.jobs[key]
        else:
            job = QtTrainingJob.attach(out_dir, name or out_dir.name, self)
            self._add_job(job, visible=True)
        item = self._item_for(job)
        item.setCheckState(Qt.Checked)
        self.run_list.setCurrentItem(item)
        return job

    def _item_for(self, job: QtTrainingJob) -> QListWidgetItem | None:
        for i in range(self.run_list.count()):
            it = self.run_list.item(i)
            if it.data(Qt.UserRole) == str(job.out_dir):
                return it
        return None

    def _label_item(self, item: QListWidgetItem, job: QtTrainingJob) -> None:
        # Two lines, so a narrow list shows both the name and the state.
        done = job.last("done")
        best = done.get("best_val_loss") if done else None
        text = f"{job.name}\n{job.status}"
        if best is not None:
            text += f" · best validation {best:.4g}"
        self.run_list.blockSignals(True)
        item.setText(text)
        item.setToolTip(f"{job.out_dir}\n{job.error or ''}".strip())
        self.run_list.blockSignals(False)

    def selected_job(self) -> QtTrainingJob | None:
        it = self.run_list.currentItem()
        return None if it is None else self.jobs.get(it.data(Qt.UserRole))

    def running_jobs(self) -> list[QtTrainingJob]:
        return [j for j in self.jobs.values() if j.status == "running"]

    # -- events ------------------------------------------------------------------------------
    def _on_event(self, key: str, ev: dict) -> None:
        curves = self.curves[key]
        curves.add_event(ev)
        if ev.get("event") in ("step", "epoch"):
            curves.redraw()
            if curves.visible:
                self._refresh_plot()
        elif ev.get("event") in ("loading", "start") and curves.visible and not curves.steps:
            self._refresh_plot()  # the waiting line says how far loading got
        job = self.jobs[key]
        if job is self.selected_job():
            self._append_log(ev)
            self._show_stats(job)

    def _refresh_plot(self) -> None:
        """The curves of the ticked runs, or the line saying why there are none yet."""
        if self.loss_plot.shown_runs():
            self.loss_plot.refresh()
            return
        waiting = [j for k, j in self.jobs.items() if j.status == "running" and self.curves[k].visible]
        if waiting:
            lines = [WAITING]
            for job in waiting:
                where = progress_text(job.events, job.status)
                lines.append(f"{job.name}: {where or 'starting'}")
            self.loss_plot.show_message("\n".join(lines))
        elif self.jobs:
            self.loss_plot.show_message(NO_RUN + "\n(launch one from the form, or tick a run in the list)")
        else:
            self.loss_plot.show_message(NO_RUN)

    def _on_finished(self, key: str, status: str) -> None:
        job = self.jobs[key]
        item = self._item_for(job)
        if item is not None:
            self._label_item(item, job)
        self._update_buttons()
        if job is self.selected_job():
            self._show_selected()
        self._refresh_plot()
        if status == "failed" and self.library_path is not None:
            self._record_failure(job)

    def _record_failure(self, job: QtTrainingJob) -> None:
        # A killed job cannot record its own end; make the history say so.
        from perceptlab.library.store import Library

        with Library(self.library_path) as lib:
            for run in lib.runs():
                if Path(run["out_dir"]).resolve() == job.out_dir.resolve() and run["status"] == "running":
                    lib.update_run(run["id"], status="failed", ended_at=time.time(), error=job.error)

    def _append_log(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "step":
            recon = ev.get("recon_loss")
            line = (f"epoch {ev.get('epoch')} step {ev.get('step')}: loss {ev.get('train_loss'):.5g}"
                    + (f" (reconstruction {recon:.5g})" if recon is not None else "")
                    + f", {ev.get('samples_per_s', 0):.0f} samples/s")
        elif kind == "epoch":
            val = ev.get("val_loss")
            recon = ev.get("train_recon_loss")
            line = f"epoch {ev.get('epoch')} done: train {ev.get('train_loss'):.5g}" + (
                f" (reconstruction {recon:.5g})" if recon is not None else "") + (
                f", validation {val:.5g}" if val is not None else "") + (" (best)" if ev.get("best") else "")
        elif kind == "error":
            line = f"ERROR ({ev.get('kind')}): {ev.get('message')}"
        elif kind == "start":
            line = (f"{'resumed' if ev.get('resumed_from') else 'started'} on {ev.get('device')}: "
                    f"{ev.get('n_train', 0):,} / {ev.get('n_val', 0):,} train / validation patches from "
                    f"{ev.get('n_train_clips', 0):,} / {ev.get('n_val_clips', 0):,} clips, "
                    f"{ev.get('params', 0):,} parameters, {ev.get('total_steps', 0):,} steps")
        elif kind == "done":
            best = ev.get("best_val_loss")
            line = (f"done in {fmt_duration(ev.get('elapsed_s'))}: best validation "
                    f"{'-' if best is None else format(best, '.5g')} at epoch {ev.get('best_epoch')}"
                    + (f" ({ev['stopped']})" if ev.get("stopped") else "") + f" -> {ev.get('best')}")
        elif kind == "interrupted":
            line = f"stopped at step {ev.get('step') or 0:,} ({ev.get('signal')})" + (
                f"; kept {ev['checkpoint']} (Resume continues from it)" if ev.get("checkpoint") else "")
        elif kind == "loading":
            if ev.get("done") != ev.get("total"):
                return  # one line when loading is complete is enough
            line = f"loaded {ev.get('total', 0):,} clips"
        else:
            line = f"{kind}: " + ", ".join(f"{k}={v}" for k, v in ev.items()
                                           if k not in ("event", "time", "config", "skipped"))
        bar = self.log_view.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 1  # at the end: keep following; scrolled up: stay
        self.log_view.appendPlainText(line)
        if follow:  # after the new lines are laid out (wrapped lines add to the range late)
            QTimer.singleShot(0, self.log_view, lambda: bar.setValue(bar.maximum()))

    def _show_stats(self, job: QtTrainingJob) -> None:
        start, step = job.last("start"), job.last("step")
        head = f"<b>{job.name}</b> — {job.status}"
        if start:
            head += (f" · {start.get('device')} · {start.get('params', 0):,} parameters · "
                     f"{start.get('n_train'):,} / {start.get('n_val'):,} train / validation patches")
        if step and job.status == "running" and step.get("samples_per_s") is not None:
            head += f" · {step['samples_per_s']:.0f} samples/s"
        parts = [head]
        if job.error:
            parts.append(f"<span style='color:#c0392b'>{job.error}</span>")
        self.stats.setText("<br>".join(parts))
        self._show_progress(job)

    def _show_progress(self, job: QtTrainingJob | None) -> None:
        text = progress_text(job.events, job.status) if job is not None else ""
        if not text:
            self.progress_row.hide()
            return
        frac = progress_fraction(job.events)
        self.progress.setValue(int(round(1000 * (frac or 0.0))))
        self.progress_label.setText(text)
        self.progress_row.show()

    def progress_text(self) -> str:
        """The selected run's progress line ("epoch 3 / 15 · step 1,240 / 6,200 · 12:30 left"), or ""."""
        return "" if self.progress_row.isHidden() else self.progress_label.text()

    def _show_selected(self) -> None:
        job = self.selected_job()
        self.log_view.clear()
        self._update_buttons()
        if job is None:
            self.stats.setText("No run selected")
            self._show_progress(None)
            return
        for ev in job.events:
            self._append_log(ev)
        if job.status == "failed":
            tail = job.log_tail(15)
            if tail:
                self.log_view.appendPlainText("--- last lines of the job's log ---\n" + tail)
        self._show_stats(job)

    def _update_buttons(self) -> None:
        job = self.selected_job()
        running = job is not None and job.status == "running"
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(job is not None and not running and job.status != "completed"
                                      and job.checkpoint("last") is not None and job.launch_args() is not None)
        has_best = job is not None and not running and job.checkpoint("best") is not None
        self.use_button.setEnabled(has_best)
        self.recon_button.setEnabled(has_best)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        key = item.data(Qt.UserRole)
        if key in self.curves:
            self.curves[key].set_visible(item.checkState() == Qt.Checked)
            self._refresh_plot()

    def _on_config_changed(self, *_):
        path = self.config_box.currentData()
        if not path:
            return
        try:
            cfg = read_config(Path(path))
        except (OSError, ValueError) as exc:
            self.stats.setText(f"{path}: {exc}")
            return
        self.name_edit.setText(str(cfg.get("name", Path(path).stem)))
        self.epochs_box.setValue(int(cfg.get("epochs", 10)))
        self.batch_box.setValue(int(cfg.get("batch_size", 32)))
        self.latent_box.setValue(int(cfg.get("model", {}).get("latent_dim", 128)))
        self.device_box.setCurrentText(str(cfg.get("device", "auto")))
        loss = cfg.get("loss", {"mse": 1.0})
        if isinstance(loss, str):
            loss = {loss: 1.0}
        self._recipe_loss = dict(loss)
        for k, box in self.loss_boxes.items():
            box.setValue(float(loss.get(k, 0.0)))

    def _on_cancel_clicked(self) -> None:
        job = self.selected_job()
        if job is not None:
            job.cancel()
            self.log_view.appendPlainText("cancelling: the job finishes its step and writes last.pt…")

    def resume(self, job: QtTrainingJob) -> bool:
        args = job.launch_args()
        if args is None:
            return False
        item = self._item_for(job)
        if item is not None:
            item.setCheckState(Qt.Checked)
        ok = job.start(args, resume=True)
        if item is not None:
            self._label_item(item, job)
        self._update_buttons()
        return ok

    def _on_resume_clicked(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.resume(job)

    def _on_use_clicked(self) -> None:
        job = self.selected_job()
        if job is not None and job.checkpoint("best") is not None:
            self.use_encoder.emit(str(job.checkpoint("best")), job.name)

    def _on_recon_clicked(self) -> None:
        job = self.selected_job()
        if job is not None and job.checkpoint("best") is not None:
            self.reconstruct.emit(str(job.checkpoint("best")))

