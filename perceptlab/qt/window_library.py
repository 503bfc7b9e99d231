"""The main window's library: opening it, its metrics, its status and failures, importing into it.

:class:`WindowLibraryMixin` holds the methods of
:class:`~perceptlab.qt.main_window.QtMainWindow` that open a library file and
hand it to every panel, load the metric registry and the library's own
metrics in a worker (torch is imported there, not at start-up), say in the
status bar what the library holds and what failed, and import files (the
menu, drag and drop) in the background with progress and cancel, then update
the search indexes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QMessageBox

from perceptlab.library.importer import import_files
from perceptlab.library.store import Library, LibraryError
from perceptlab.progress_text import ProgressClock
from perceptlab.qt.dialogs import QtFailuresDialog
from perceptlab.qt.workers import QtTask


class WindowLibraryMixin:
    """The library of :class:`~perceptlab.qt.main_window.QtMainWindow`."""

    # -- library ------------------------------------------------------------
    def open_library(self, path: str | Path) -> bool:
        """Open a library file (created if missing) and show its clips."""
        try:
            lib = Library(path)
        except LibraryError as exc:
            self.show_library_problem(str(exc), "Cannot open library")
            return False
        if self.library is not None:
            self.library.close()
        self.library = lib
        self.slots = {"A": None, "B": None}
        self.import_summary = None  # the last import was into another library
        for panel in (self.analysis, self.compare_panel, self.neighbours_panel, self.training_panel,
                      self.map_view, self.listening_view, self.agreement_view, self.evaluation_view):
            panel.set_library(str(lib.path))
        # After the first paint: the import competes with it for the GIL.
        self.metrics_loaded = False
        self.metric_names: list[str] = []
        self._metrics_library = str(lib.path)
        QTimer.singleShot(300, self, self._load_metrics)  # bound to self: dropped if the window goes
        self.setWindowTitle(f"perceptlab — {lib.path.name}")
        self._remember_recent(str(lib.path))
        self.reload_clips()
        return True

    def _load_metrics(self) -> QtTask:
        """Load the metric registry (torch) and the library's own metrics in the background.

        Importing torch takes over a second; done on the GUI thread it would
        delay the first window. The metric lists fill in when it is done.
        """
        library_path = self._metrics_library

        def work():
            from perceptlab.analysis.library_metrics import register_library_metrics

            with Library(library_path) as lib:
                return register_library_metrics(lib)

        task = QtTask(work, with_progress=False)
        # Bound methods, not lambdas: Qt drops the call if the window is gone.
        task.signals.finished.connect(self._on_metrics_loaded)
        task.signals.failed.connect(self._on_metrics_failed)
        return self.tasks.start(task)

    @Slot(str, str)
    def _on_metrics_failed(self, message: str, _tb: str) -> None:
        from perceptlab.analysis.similarity import DEFAULT_METRICS

        self._on_metrics_loaded(list(DEFAULT_METRICS))
        self.status_label.setText(f"Library metrics unavailable: {message}")

    @Slot(object)
    def _on_metrics_loaded(self, names: list[str]) -> None:
        self.metric_names = list(names)
        self.metrics_loaded = True
        self.matrix_view.refresh_metrics(self.metric_names)
        self.map_view.refresh_sources(self.metric_names)
        self.training_panel.refresh_losses()

    def register_library_metrics(self) -> None:
        """Register the open library's own metrics and list them in the views."""
        from perceptlab.analysis.library_metrics import register_library_metrics

        try:
            self.metric_names = register_library_metrics(self.library)
        except Exception as exc:  # a damaged model row must not stop the app
            self.status_label.setText(f"Encoder metrics unavailable: {exc}")
        self.matrix_view.refresh_metrics(self.metric_names)
        self.map_view.refresh_sources(self.metric_names)

    def reload_clips(self) -> None:
        if self.library is None:
            return
        try:
            clips = self.library.clips(include_failed=True)
        except LibraryError as exc:  # damaged since it was opened
            self.show_library_problem(str(exc))
            return
        self.library_panel.set_clips(clips)
        self._show_library_status()

    def show_library_problem(self, message: str, title: str = "Library problem") -> None:
        """Tell the user why the library cannot be used: the status bar, and a box that does not block."""
        self.status_label.setText(f"{title}: {message}")
        self.status_label.setToolTip(message)
        box = getattr(self, "library_problem_box", None)
        if box is None:
            box = self.library_problem_box = QMessageBox(QMessageBox.Warning, title, "", QMessageBox.Ok, self)
            box.setModal(False)
        box.setWindowTitle(title)
        box.setText(message)
        box.show()

    @Slot(bool, str)
    def _on_audio_availability(self, ok: bool, why: str) -> None:
        checking = not ok and not self.player.audio_checked
        self.audio_status_label.setText("" if ok else "Checking audio…" if checking else "Playback off")
        self.audio_status_label.setToolTip("" if ok else f"Playback is off: {why}")

    def _show_library_status(self) -> None:
        """How many clips the library holds, and how many of them the list shows while filtered."""
        if self.library is None:
            return
        panel = self.library_panel
        clips = panel.model.clips()
        ok = sum(c.ok for c in clips)
        failed = len(clips) - ok
        if panel.is_filtered():
            shown = panel.visible_clips()
            shown_ok = sum(c.ok for c in shown)
            text = f"{shown_ok:,} of {ok:,} clips in {self.library.path}"
            if len(shown) > shown_ok:
                text += f" and {len(shown) - shown_ok:,} of {failed:,} that failed to import"
        else:
            text = f"{ok:,} clips in {self.library.path}" + (f" ({failed:,} failed to import)" if failed else "")
        self.status_label.setText(text)
        self.status_label.setToolTip(self.import_summary.text() if self.import_summary is not None else "")
        self._show_failed_button()

    # -- failures ---------------------------------------------------------------
    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that failed: the last import's and the library's failed clips."""
        found: dict[str, str] = {}
        if self.import_summary is not None:
            found.update({str(p): r for p, r in self.import_summary.failed})
        for c in self.library_panel.failed_clips():
            found.setdefault(str(c.path), c.error or "unknown reason")
        return list(found.items())

    def _show_failed_button(self) -> None:
        n = len(self.failures())
        self.failed_button.setText(f"{n:,} failed – details")
        self.failed_button.setVisible(n > 0)
        if self.failures_dialog is not None and self.failures_dialog.isVisible():
            self._fill_failures()

    def _fill_failures(self) -> None:
        failures = self.failures()
        head = (self.import_summary.text().splitlines()[0] + ". " if self.import_summary is not None else "")
        self.failures_dialog.set_failures(
            failures, f"{head}{len(failures):,} file(s) could not be imported; they are listed in the library "
                      "in red, and the ⚠ button beside its label filter shows only them.")

    def show_failures(self) -> QtFailuresDialog:
        """Open the list of files that failed to import, with the reasons."""
        if self.failures_dialog is None:
            self.failures_dialog = QtFailuresDialog(self)
        self._fill_failures()
        self.failures_dialog.show()
        self.failures_dialog.raise_()
        return self.failures_dialog

    def import_paths(self, paths: list[str]) -> QtTask | None:
        """Import files/folders in the background, with progress and cancel."""
        if self.library is None or not paths:
            return None
        if self._import_task is not None:
            self.status_label.setText("An import is already running")
            return None
        lib_path = str(self.library.path)

        def work(progress=None, cancel=None):
            with Library(lib_path) as lib:
                return import_files(lib, paths, config=self.config, progress=progress, cancel=cancel)

        task = QtTask(work)
        task.signals.progress.connect(self._on_task_progress)
        task.signals.finished.connect(self._on_import_finished)
        task.signals.failed.connect(self._on_import_failed)
        task.signals.cancelled.connect(self._on_import_cancelled)
        self._import_task = task
        self._progress_clock = ProgressClock("importing", "files")
        self._show_progress("importing: scanning…")
        return self.tasks.start(task)

    # -- progress -------------------------------------------------------------
    def _show_progress(self, text: str) -> None:
        self.progress_label.setText(text)
        self.progress_label.show()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()

    def _hide_progress(self) -> None:
        self._progress_clock = None
        self.progress.hide()
        self.cancel_button.hide()
        self.progress_label.setText("")
        if self._analysis_clock is not None and self.analysis.busy():
            self._show_analysis_progress()

    @Slot(int, int)
    def _on_task_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if self._progress_clock is not None:
            self.progress_label.setText(self._progress_clock.update(done, total))

    @Slot()
    def _on_cancel_clicked(self) -> None:
        if self._import_task is not None:
            self._import_task.cancel()

    @Slot(object)
    def _on_import_finished(self, summary) -> None:
        self._import_task = None
        self._hide_progress()
        self.import_summary = summary
        self.analysis.invalidate()
        self.reload_clips()
        # The summary stays until the library's status changes (a search);
        # the failures stay behind the "failed – details" button.
        self.status_label.setText(summary.text().splitlines()[0])
        self.status_label.setToolTip(summary.text())
        self._show_failed_button()
        self.update_search_indexes()

    def update_search_indexes(self) -> QtTask | None:
        """Update the library's persistent search indexes in the background (after an import).

        Neighbours would update a stale index themselves on the next query;
        doing it now keeps that query fast. A failure only says so: the next
        query rebuilds what it needs.
        """
        from perceptlab.analysis.indexing import update_library_indexes

        if self.library is None:
            return None
        if self.index_task is not None:
            self.index_task.cancel()
        task = QtTask(update_library_indexes, str(self.library.path), self.config)
        task.signals.finished.connect(lambda _status, t=task: self._on_indexes_done(t))
        task.signals.failed.connect(
            lambda msg, _tb, t=task: (self._on_indexes_done(t),
                                      self.status_label.setToolTip(f"search indexes not updated: {msg}")))
        self.index_task = task
        self.index_tasks.start(task)
        return task

    def _on_indexes_done(self, task: QtTask) -> None:
        if task is self.index_task:
            self.index_task = None

    @Slot(str, str)
    def _on_import_failed(self, message: str, _tb: str) -> None:
        self._import_task = None
        self._hide_progress()
        self.reload_clips()
        QMessageBox.warning(self, "Import failed", message)

    @Slot()
    def _on_import_cancelled(self) -> None:
        self._import_task = None
        self._hide_progress()
        self.reload_clips()
        self.status_label.setText("Import cancelled; the files imported so far are kept")

    # -- drag and drop ----------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.import_paths(paths)
            event.acceptProposedAction()
