"""Exporting the matrix view: the shown matrix as CSV, the view as a PNG image.

:class:`MatrixExportMixin` holds the export methods of
:class:`~perceptlab.qt.matrix_view.QtMatrixView`: the CSV is written in a
worker, with the clips' ids, names and labels, or the label means of a large
library (:func:`_write_label_means_csv`).
"""

from __future__ import annotations

import csv

import numpy as np
from PySide6.QtWidgets import QFileDialog

from perceptlab.analysis.matrix_summary import LabelBlocks, write_matrix_csv
from perceptlab.qt.matrix_axis import LABEL_MEANS
from perceptlab.qt.workers import QtTask


class MatrixExportMixin:
    """Export of what :class:`~perceptlab.qt.matrix_view.QtMatrixView` shows."""

    def export_csv(self, path: str) -> QtTask:
        """Write the shown matrix as CSV in a worker: clips with ids, names and labels, or the label means."""
        if self.matrix is None:
            raise ValueError("nothing to export: compute the matrix first")
        if self.mode == LABEL_MEANS:
            b = self.blocks
            task = QtTask(_write_label_means_csv, path, b, with_progress=False)
        else:
            c = self.clips
            task = QtTask(write_matrix_csv, path, [x.id for x in c], [x.name for x in c], [x.label for x in c],
                          np.array(self.matrix), with_progress=False)
        task.signals.finished.connect(lambda _r: self.status.setText(f"Saved {path}"))
        task.signals.failed.connect(lambda msg, _tb: self.status.setText(f"Cannot save {path}: {msg}"))
        self._export_task = task
        self.status.setText(f"Saving {path}…")
        return self.runner.start(task)

    def export_png(self, path: str) -> None:
        """Save the matrix as it is drawn (axis, colour bar) as a PNG image."""
        if self.matrix is None:
            raise ValueError("nothing to export: compute the matrix first")
        if not self.graphics.grab().save(path, "PNG"):
            raise OSError(f"{path}: cannot write the PNG image")
        self.status.setText(f"Saved {path}")

    def _on_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export matrix as CSV", f"{self._file_stem()}.csv",
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def _on_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export matrix view as PNG", f"{self._file_stem()}.png",
                                              "PNG image (*.png)")
        if path:
            try:
                self.export_png(path)
            except OSError as exc:
                self.status.setText(str(exc))

    def _file_stem(self) -> str:
        import re

        stem = f"matrix-{self.metric() or 'metric'}" + (f"-{self.zoom_label}" if self.zoom_label else "")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)


def _write_label_means_csv(path: str, blocks: LabelBlocks) -> None:
    """The label-means matrix as CSV: ``label,clips`` then a column per label (empty: no pair)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "clips"] + list(blocks.labels))
        for lab, n, row in zip(blocks.labels, blocks.sizes, blocks.means):
            w.writerow([lab, int(n)] + ["" if not np.isfinite(v) else repr(float(v)) for v in row])
