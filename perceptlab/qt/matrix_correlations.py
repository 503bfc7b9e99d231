"""The matrix view's table of rank agreement between metrics (Spearman's rho over all pairs).

:class:`MatrixCorrelationsMixin` holds the methods of
:class:`~perceptlab.qt.matrix_view.QtMatrixView` that rank every two metrics'
pair distances in a worker (millions of pairs in a large library) and fill the
foldable table; the view builds the table and its toggle.
"""

from __future__ import annotations

import textwrap
import weakref

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableWidgetItem

from perceptlab.analysis.agreement_stats import matrix_rank_correlations
from perceptlab.qt.workers import QtTask

#: Rows of the metric-vs-metric table shown without scrolling.
CORR_ROWS_SHOWN = 6


class MatrixCorrelationsMixin:
    """Rank agreement between the metrics shown by :class:`~perceptlab.qt.matrix_view.QtMatrixView`."""

    def _fill_correlations(self, src) -> None:
        """Rank the metrics' pair distances against each other in a worker (millions of pairs in a
        large library), then fill the table; the same matrices are not ranked twice."""
        mats = {m: d for m, (clips, d) in src.items()}
        # Weak references: a matrix the library let go is not kept alive here, and a new one is never
        # mistaken for it.
        same = self._corr_key is not None and [m for m, _ in self._corr_key] == list(mats) and all(
            ref() is mats[m] for m, ref in self._corr_key)
        if same:
            if self._corr_task is None:
                self._fill_corr_table(list(mats), self.correlations)
            return
        if self._corr_task is not None:
            self._corr_task.cancel()
        self._corr_key = [(m, weakref.ref(d)) for m, d in mats.items()]
        task = QtTask(matrix_rank_correlations, mats, with_progress=False)
        task.signals.finished.connect(lambda corr, t=task, names=list(mats): self._on_correlations(t, names, corr))
        task.signals.failed.connect(lambda msg, _tb: self.status.setText(f"Cannot rank the metrics: {msg}"))
        self._corr_task = task
        self.runner.start(task)

    def _clear_correlations(self) -> None:
        """Nothing computed for the scope: no metric-vs-metric figures (not another scope's)."""
        if self._corr_task is not None:
            self._corr_task.cancel()
            self._corr_task = None
        self._corr_key = None
        self.correlations = {}
        self.corr_table.setRowCount(0)
        self.corr_table.setColumnCount(0)
        self._fit_corr_height()

    def _on_correlations(self, task: QtTask, names: list[str], corr: dict) -> None:
        if task is not self._corr_task:
            return
        self._corr_task = None
        self.correlations = corr
        self._fill_corr_table(names, corr)

    def _fill_corr_table(self, names: list[str], corr: dict) -> None:
        from perceptlab.metrics.registry import get_metric

        self.corr_table.setRowCount(len(names))
        self.corr_table.setColumnCount(len(names))
        labels = [get_metric(n).display_name for n in names]
        # Column headers on two short lines: five or more metrics share a dock's width.
        self.corr_table.setHorizontalHeaderLabels([textwrap.fill(t, 8, break_long_words=False) for t in labels])
        self.corr_table.setVerticalHeaderLabels(labels)
        for col, text in enumerate(labels):
            self.corr_table.horizontalHeaderItem(col).setToolTip(text)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                v = 1.0 if a == b else corr.get((a, b), corr.get((b, a)))
                self.corr_table.setItem(i, j, QTableWidgetItem("" if v is None else f"{v:.3f}"))
        self._fit_corr_height()
        self.correlations = corr

    def _on_corr_toggled(self, shown: bool) -> None:
        self.corr_table.setVisible(shown)
        self.corr_toggle.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)

    def _fit_corr_height(self) -> None:
        """As tall as its rows, up to :data:`CORR_ROWS_SHOWN` (a library with many encoders scrolls)."""
        rows = min(max(self.corr_table.rowCount(), 3), CORR_ROWS_SHOWN)
        t = self.corr_table
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + rows * t.verticalHeader().defaultSectionSize()
                         + 2 * t.frameWidth() + 2)
