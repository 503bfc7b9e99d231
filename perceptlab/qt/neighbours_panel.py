"""The neighbours panel: "what sounds like this?" under each metric, side by side.

For the clip in slot A it ranks the whole library under every metric of the
library (the perceptual metrics, the log-mel and MFCC statistics baselines,
its encoders; whole clips, the numbers of ``perceptlab neighbours``) and
shows the top k of each in its own column. A neighbour that one metric ranks
in its top k but another ranks far down (beyond 3k) is highlighted: that is
where the metrics disagree and listening settles it. The rank agreement of
each pair of metrics over the whole library, for this query, is Kendall's tau.
"""

from __future__ import annotations

from itertools import combinations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceptlab.analysis.similarity import Query, ranking
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip, Library
from perceptlab.qt.workers import QtTask, QtTaskRunner

DISAGREE = QColor(255, 170, 60, 110)
#: Narrowest a metric's column gets before the table scrolls sideways instead.
MIN_COLUMN_WIDTH = 110
#: Up to this many metric pairs, every Kendall tau is written out under the table.
INLINE_TAUS = 3


def rank_all(library_path: str, query: Clip, metrics: list[str] | None, config: FeatureConfig,
             progress=None, cancel=None) -> dict:
    """Full rankings of the library for one query under each metric (default: all of the library's).

    A metric that cannot rank this library (a baseline in a library of two
    clips, an encoder whose embeddings are gone) is left out with its reason
    in ``errors``; the others are still shown.
    """
    with Library(library_path) as lib:
        from perceptlab.analysis.similarity import register_library_metrics

        available = register_library_metrics(lib)
        q = Query(query.path, query.name, query)
        metrics = metrics or available
        out, errors = {}, {}
        for i, m in enumerate(metrics):
            try:
                out[m] = ranking(lib, q, m, config, cancel=cancel)
            except ValueError as exc:
                errors[m] = str(exc)
            if progress:
                progress(i + 1, len(metrics))
    return {"query": query, "rankings": out, "taus": kendall_taus(out), "errors": errors}


def kendall_taus(rankings: dict[str, list]) -> dict[tuple[str, str], float]:
    """Kendall's tau-b between every two metrics' distances over the same clips."""
    from scipy.stats import kendalltau

    dist = {}
    for m, ranked in rankings.items():
        by_id = {n.clip.id: n.distance for n in ranked}
        dist[m] = by_id
    out = {}
    for a, b in combinations(rankings, 2):
        ids = sorted(set(dist[a]) & set(dist[b]))
        if len(ids) < 3:
            continue
        tau = kendalltau([dist[a][i] for i in ids], [dist[b][i] for i in ids]).statistic
        out[(a, b)] = float(tau)
    return out


class QtNeighboursPanel(QWidget):
    """Top-k neighbours of slot A per metric.

    Signals
    -------
    neighbour_clicked(object)
        A neighbour :class:`Clip` was clicked: load it as B.
    neighbour_activated(object)
        Double-click: load it as B and play it.
    """

    neighbour_clicked = Signal(object)
    neighbour_activated = Signal(object)

    def __init__(self, runner: QtTaskRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.config = FeatureConfig()
        self.library_path: str | None = None
        self.result: dict | None = None
        self._task: QtTask | None = None
        self._query: Clip | None = None

        self.title = QLabel("Select a clip to see its nearest neighbours")
        self.k_box = QSpinBox()
        self.k_box.setRange(1, 50)
        self.k_box.setValue(5)
        self.k_box.setPrefix("k = ")
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.table.setWordWrap(False)
        self.table.setToolTip("Click: load as B. Double-click: load as B and play. "
                              "Orange: another metric ranks this clip far down.")
        self.tau_label = QLabel("")
        self.tau_label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.k_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.tau_label)

        self.k_box.valueChanged.connect(lambda _: self._fill())
        self.table.cellClicked.connect(self._on_cell_clicked)
        self.table.cellDoubleClicked.connect(self._on_cell_double_clicked)

    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self.result = None
        self.table.setRowCount(0)

    def set_query(self, clip: Clip | None) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._query = clip
        if clip is None or not clip.ok or self.library_path is None:
            return
        self.title.setText(f"Neighbours of {clip.name} (computing…)")
        task = QtTask(rank_all, self.library_path, clip, None, self.config)
        task.signals.finished.connect(lambda res, t=task: self._on_result(t, res))
        task.signals.failed.connect(lambda msg, _tb: self.title.setText(f"Cannot rank: {msg}"))
        self._task = task
        self.runner.start(task)

    def refresh(self) -> None:
        """Recompute for the current query (e.g. after a new metric was registered)."""
        self.set_query(self._query)

    def metrics_shown(self) -> list[str]:
        return list(self.result["rankings"]) if self.result else []

    def top(self, metric: str) -> list:
        """The neighbours on display for one metric."""
        return self.result["rankings"][metric][: self.k_box.value()] if self.result else []

    # -- slots ------------------------------------------------------------------------
    def _on_result(self, task: QtTask, result: dict) -> None:
        if task is not self._task:
            return
        self._task = None
        self.result = result
        self._fill()

    def _fill(self) -> None:
        from perceptlab.metrics.registry import get_metric

        if not self.result:
            return
        k = self.k_box.value()
        rankings = self.result["rankings"]
        metrics = list(rankings)
        ranks = _rank_tables(rankings)
        self.title.setText(f"Neighbours of {self.result['query'].name}")
        self.table.clear()
        self.table.setColumnCount(len(metrics))
        self.table.setRowCount(k)
        self.table.setHorizontalHeaderLabels([get_metric(m).display_name for m in metrics])
        self.table.setVerticalHeaderLabels([str(i + 1) for i in range(k)])
        for col, m in enumerate(metrics):
            for row, n in enumerate(rankings[m][:k]):
                item = QTableWidgetItem(f"{n.clip.name}\n{n.clip.label or '-'}  {n.distance:.5g}")
                item.setData(Qt.UserRole, n.clip)
                others = {o: ranks[o].get(n.clip.id) for o in metrics if o != m}
                where = f"{n.clip.name} ({n.clip.label or '-'}): {n.distance:.6g} under {get_metric(m).display_name}"
                item.setToolTip(where + "\nranks: " + ", ".join(f"{get_metric(o).display_name} #{r}"
                                                                for o, r in others.items()))
                if _ranked_far(others, k):
                    item.setBackground(QBrush(DISAGREE))
                    item.setData(Qt.UserRole + 1, True)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()
        self._fit_columns()
        taus = self.result["taus"]
        pairs = {f"{get_metric(a).display_name}–{get_metric(b).display_name}": t for (a, b), t in taus.items()}
        every = "   ".join(f"{name} {t:+.2f}" for name, t in pairs.items())
        if len(pairs) <= INLINE_TAUS:
            text = f"Rank agreement over the library (Kendall τ): {every}"
        else:  # 5 metrics make 10 pairs: the range here, every pair on hover
            lo, hi = min(pairs, key=pairs.get), max(pairs, key=pairs.get)
            text = (f"Rank agreement over the library (Kendall τ, {len(pairs)} pairs; hover for each): "
                    f"from {pairs[lo]:+.2f} ({lo}) to {pairs[hi]:+.2f} ({hi})")
        errors = self.result.get("errors", {})
        if errors:
            text += "\nNot ranked: " + "; ".join(f"{get_metric(m).display_name}: {msg}" for m, msg in errors.items())
        self.tau_label.setText(text)
        self.tau_label.setToolTip("Kendall τ between the metrics' distances from this clip to every other:\n"
                                  + "\n".join(f"{name}  {t:+.2f}" for name, t in pairs.items()))
        self.taus = taus

    def _fit_columns(self) -> None:
        """Share the width among the metrics' columns; below a readable width, scroll sideways."""
        n = self.table.columnCount()
        if not n:
            return
        header = self.table.horizontalHeader()
        room = self.table.viewport().width()
        if room >= n * MIN_COLUMN_WIDTH:
            header.setSectionResizeMode(QHeaderView.Stretch)
        else:
            header.setSectionResizeMode(QHeaderView.Interactive)
            for col in range(n):
                header.resizeSection(col, MIN_COLUMN_WIDTH)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_columns()

    def _clip_at(self, row: int, col: int) -> Clip | None:
        item = self.table.item(row, col)
        return None if item is None else item.data(Qt.UserRole)

    def _on_cell_clicked(self, row: int, col: int) -> None:
        clip = self._clip_at(row, col)
        if clip is not None:
            self.neighbour_clicked.emit(clip)

    def _on_cell_double_clicked(self, row: int, col: int) -> None:
        clip = self._clip_at(row, col)
        if clip is not None:
            self.neighbour_activated.emit(clip)


def _rank_tables(rankings: dict[str, list]) -> dict[str, dict[int, int]]:
    """{metric: {clip id: rank}}."""
    return {m: {n.clip.id: n.rank for n in r} for m, r in rankings.items()}


def _ranked_far(other_ranks: dict[str, int | None], k: int) -> bool:
    """Does another metric rank this top-k neighbour beyond 3k?"""
    return any(r is not None and r > 3 * k for r in other_ranks.values())


def disagreement_ids(result: dict, k: int) -> set[int]:
    """Clip ids in some metric's top k that another metric ranks beyond 3k."""
    rankings = result["rankings"]
    ranks = _rank_tables(rankings)
    return {n.clip.id for m, r in rankings.items() for n in r[:k]
            if _ranked_far({o: ranks[o].get(n.clip.id) for o in rankings if o != m}, k)}
