"""The neighbours panel: "what sounds like this?" under one metric at a time.

For the clip in slot A it ranks the whole library under every metric of the
library (the perceptual metrics, the log-mel and MFCC statistics baselines,
its encoders; whole clips, the numbers of ``perceptlab neighbours``). A combo
box chooses the metric on display; the table lists its top k as rank, clip,
label and distance (in the metric's own unit, said above the table), and
for each neighbour how many of the other metrics also rank it in their top
k. A neighbour that another metric ranks far down (beyond 3k) is marked
orange, with a legend under the table: that is where the metrics disagree
and listening settles it. The rank agreement of the shown metric with each
other metric over the whole library, for this query, is Kendall's tau.

The metric on display is ranked first and shown as soon as it is ready; the
others follow. A new query empties the table at once, and the answers of an
older query (late results, late failures) are dropped.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from perceptlab.analysis.neighbours import prepare_search
from perceptlab.analysis.rankings import QUICK_DEPTH, rank_all
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.store import Clip
from perceptlab.qt.workers import QtTask, QtTaskRunner

DISAGREE = QColor(255, 170, 60, 110)
#: The table's columns; the distance column's header is the metric's name.
COLUMNS = ("#", "Clip", "Label", "Distance", "Agree")
RANK_COL, NAME_COL, LABEL_COL, DIST_COL, AGREE_COL = range(len(COLUMNS))
#: A top-k neighbour that another metric ranks beyond FAR_FACTOR * k is marked.
FAR_FACTOR = 3
#: The table asks for room for this many rows (more scroll), so a short dock still shows a top 10.
ROWS_IN_VIEW = 10


def term(display_name: str) -> str:
    """A metric's name as one term of a phrase: "1 - MS-SSIM" becomes "(1 - MS-SSIM)"."""
    return f"({display_name})" if " - " in display_name or " + " in display_name else display_name


def distance_unit(metric_name: str, config: FeatureConfig = FeatureConfig()) -> str:
    """What a distance of this metric measures and in what unit, in one line."""
    from perceptlab.metrics.registry import get_metric

    m = get_metric(metric_name)
    if metric_name == "mse":
        return (f"mean squared difference of the log-mel images, levels scaled to 0-1 over "
                f"{config.db_floor:g} to {config.db_ceiling:+g} dB")
    if metric_name == "msssim":
        return "one minus multi-scale SSIM of the log-mel images: 0 identical, 1 no structure in common"
    if metric_name.startswith("nlpd"):
        return "normalised Laplacian pyramid distance of the log-mel images, no unit"
    if m.input_kind == "vector":
        kind = "statistics" if m.params.get("baseline", False) else "embeddings"
        distance = m.params.get("distance", "cosine")
        if distance == "cosine":
            return f"cosine distance of z-scored {kind}: 0 same direction, 1 unrelated, 2 opposite"
        return f"{distance} distance of z-scored {kind}, in standard deviations"
    return m.description or m.display_name


class QtNeighboursPanel(QWidget):
    """Top-k neighbours of slot A under the chosen metric.

    Signals
    -------
    neighbour_clicked(object)
        A neighbour :class:`Clip` was clicked: load it as B.
    neighbour_activated(object)
        Double-click: load it as B and play it.
    """

    neighbour_clicked = Signal(object)
    neighbour_activated = Signal(object)
    # Emitted from the worker thread, delivered on the GUI thread: (query number, payload).
    _planned = Signal(int, object)
    _ranked = Signal(int, str, object)

    def __init__(self, runner: QtTaskRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.config = FeatureConfig()
        self.library_path: str | None = None
        #: The complete answer for the current query (every metric, taus), or None.
        self.result: dict | None = None
        self.taus: dict = {}
        self._task: QtTask | None = None
        self._query: Clip | None = None
        self._generation = 0  # numbers the queries; an answer for an older number is dropped
        self._partial: dict[str, list] = {}  # rankings of the current query that came in so far
        self._done, self._total = 0, 0  # metrics ranked so far, of how many

        self.title = QLabel("Select a clip to see its nearest neighbours")
        self.title.setWordWrap(True)
        self.metric_box = QComboBox()
        # Long names (an encoder's) are cut short in the closed box, never in its list.
        self.metric_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.metric_box.setMinimumContentsLength(12)
        self.metric_box.setToolTip("The metric whose nearest neighbours the table lists")
        self.metric_box.setPlaceholderText("select a clip")
        self.k_box = QSpinBox()
        # No more than the quick top list a large library shows first holds.
        self.k_box.setRange(1, QUICK_DEPTH)
        self.k_box.setValue(5)
        self.k_box.setPrefix("k = ")
        self.k_box.setToolTip("How many neighbours to list")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.ElideMiddle)  # a long name keeps its start and its extension
        self.table.verticalHeader().hide()
        # Compact rows (a text line and a little air), so a top 10 fits a dock a third of the window high.
        self.table.verticalHeader().setMinimumSectionSize(self.fontMetrics().height() + 2)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 2)
        self.table.setToolTip("Click: load as B. Double-click: load as B and play.")
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(NAME_COL, QHeaderView.Stretch)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.tau_label = QLabel("")
        self.tau_label.setWordWrap(True)
        top = QHBoxLayout()
        top.setSpacing(4)
        top.addWidget(QLabel("Ranked by"))
        top.addWidget(self.metric_box)
        top.addWidget(self.k_box)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.legend)
        lay.addWidget(self.tau_label)
        self._set_headers(None)
        self._fit_height()

        self.k_box.valueChanged.connect(lambda _: self._fill())
        self.metric_box.currentIndexChanged.connect(lambda _: self._fill())
        self.table.cellClicked.connect(self._on_cell_clicked)
        self.table.cellDoubleClicked.connect(self._on_cell_double_clicked)
        self._planned.connect(self._on_planned)
        self._ranked.connect(self._on_ranked)

    # -- public -----------------------------------------------------------------------
    def set_library(self, path: str | None) -> None:
        self.library_path = path
        self._clear("Select a clip to see its nearest neighbours")
        if path is not None:
            # The search index opened in the background now: the first selection's neighbours come sooner.
            self.runner.start(QtTask(prepare_search, path, self.config))

    def set_query(self, clip: Clip | None) -> None:
        """Rank the library for ``clip``; the previous clip's rows go at once."""
        self._query = clip
        if clip is None:
            self._clear("Select a clip to see its nearest neighbours")
            return
        if not clip.ok:
            self._clear(f"{clip.name} could not be decoded: {clip.failure}")
            return
        if self.library_path is None:
            self._clear("Open a library to see neighbours")
            return
        self._clear(f"Computing neighbours of {clip.name}…")
        generation = self._generation

        def planned(metrics, g=generation):
            self._planned.emit(g, metrics)

        def ranked(metric, rows, g=generation):
            self._ranked.emit(g, metric, rows)

        task = QtTask(rank_all, self.library_path, clip, None, self.config, first=self.metric(),
                      on_planned=planned, on_metric=ranked)
        task.signals.progress.connect(lambda done, total, g=generation: self._on_progress(g, done, total))
        task.signals.finished.connect(lambda res, g=generation: self._on_result(g, res))
        task.signals.failed.connect(lambda msg, _tb, g=generation: self._on_failed(g, msg))
        self._task = task
        self.runner.start(task)

    def refresh(self) -> None:
        """Recompute for the current query (e.g. after a new metric was registered)."""
        self.set_query(self._query)

    def query(self) -> Clip | None:
        """The clip whose neighbours are shown or being computed."""
        return self._query

    def metric(self) -> str | None:
        """The metric on display."""
        return self.metric_box.currentData()

    def set_metric(self, name: str) -> None:
        """Show this metric's neighbours (ValueError if it is not in the list)."""
        i = self.metric_box.findData(name)
        if i < 0:
            shown = [self.metric_box.itemData(j) for j in range(self.metric_box.count())]
            raise ValueError(f"metric {name!r} is not in the neighbours panel; "
                             f"it lists {', '.join(shown) or 'none yet'}")
        self.metric_box.setCurrentIndex(i)

    def metrics_shown(self) -> list[str]:
        return list(self.result["rankings"]) if self.result else []

    def top(self, metric: str) -> list:
        """The top k of one metric for the current query (empty until it is ranked)."""
        rows = self.result["rankings"].get(metric) if self.result else self._partial.get(metric)
        return list(rows or [])[: self.k_box.value()]

    # -- slots ------------------------------------------------------------------------
    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _on_progress(self, generation: int, done: int, total: int) -> None:
        if self._current(generation):
            self._done, self._total = done, total
            self._show_title()

    @Slot(int, object)
    def _on_planned(self, generation: int, metrics: list) -> None:
        if not self._current(generation):
            return
        self._set_metric_list(metrics)
        self._total = len(metrics)
        self._show_title()

    @Slot(int, str, object)
    def _on_ranked(self, generation: int, metric: str, rows: list) -> None:
        if not self._current(generation):
            return
        self._partial[metric] = rows
        if metric == self.metric():
            self._fill()

    def _on_result(self, generation: int, result: dict) -> None:
        if not self._current(generation):
            return
        self._task = None
        self.result = result
        self._partial = dict(result["rankings"])
        self.taus = result["taus"]
        self._set_metric_list(list(result["rankings"]))
        self._fill()

    def _on_failed(self, generation: int, message: str) -> None:
        if not self._current(generation):
            return
        self._task = None
        name = self._query.name if self._query is not None else "this clip"
        self.title.setText(f"Cannot rank the library for {name}: {message}")
        self._fit_height()

    # -- drawing ----------------------------------------------------------------------
    def _show_title(self) -> None:
        """The query, and while it is being ranked how far that is, in metrics."""
        if self._query is None:
            return
        if self._task is None:
            self.title.setText(f"Neighbours of {self._query.name}")
        else:
            counted = f" {self._done} of {self._total} metrics ranked" if self._total else ""
            self.title.setText(f"Computing neighbours of {self._query.name}…{counted}")
        self._fit_height()

    def _clear(self, title: str) -> None:
        """Forget the current answer (an older query's late answers are dropped) and say why."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._generation += 1
        self.result = None
        self.taus = {}
        self._partial = {}
        self._done, self._total = 0, 0
        self.title.setText(title)
        self.table.setRowCount(0)
        self.legend.setText("")
        self.tau_label.setText("")
        self.tau_label.setToolTip("")
        self._fit_height()

    def _set_metric_list(self, metrics: list[str]) -> None:
        from perceptlab.metrics.registry import get_metric

        current = self.metric()
        names = [self.metric_box.itemData(i) for i in range(self.metric_box.count())]
        if names == list(metrics):
            return
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        for m in metrics:
            metric = get_metric(m)
            self.metric_box.addItem(metric.display_name, m)
            self.metric_box.setItemData(self.metric_box.count() - 1, self._metric_tooltip(m), Qt.ToolTipRole)
        self.metric_box.setCurrentIndex(max(self.metric_box.findData(current), 0))
        self.metric_box.blockSignals(False)
        if self.metric() != current:
            self._fill()

    def _metric_tooltip(self, metric_name: str) -> str:
        from perceptlab.metrics.registry import get_metric

        m = get_metric(metric_name)
        return f"{m.display_name}: {m.description}\nDistance: {distance_unit(metric_name, self.config)}. " \
               "Lower is closer."

    def _set_headers(self, metric_name: str | None) -> None:
        k = self.k_box.value()
        texts = list(COLUMNS)
        tips = ["Rank under the chosen metric (1 = closest)", "The neighbour's file name",
                "The neighbour's label", "Distance to the selected clip; lower is closer",
                f"Agreement across metrics: how many of the other metrics also rank this clip in their top {k}"]
        if metric_name is not None:
            # Only here: the registry imports torch, which the window leaves to a worker at start-up.
            from perceptlab.metrics.registry import get_metric

            name = get_metric(metric_name).display_name
            # A name longer than a number (an encoder's) would squeeze the clip names: "Distance" then.
            fits = self.fontMetrics().horizontalAdvance(name) <= self.fontMetrics().horizontalAdvance("0" * 14)
            texts[DIST_COL] = name if fits else "Distance"
            tips[DIST_COL] = self._metric_tooltip(metric_name)
        for col, (text, tip) in enumerate(zip(texts, tips)):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(col, item)

    def _fit_height(self) -> None:
        """Room for the top k (up to :data:`ROWS_IN_VIEW` rows) without scrolling, and for every
        line of the wrapped texts at the panel's width (a dock gives its widget the minimum it
        asks for, and a wrapped label alone asks for too little)."""
        t = self.table
        rows = min(self.k_box.value(), ROWS_IN_VIEW) if t.rowCount() else 0
        t.setMinimumHeight(t.horizontalHeader().sizeHint().height() + rows * t.verticalHeader().defaultSectionSize()
                           + 2 * t.frameWidth() + 2)
        margins = self.layout().contentsMargins()
        width = max(self.width() - margins.left() - margins.right(), 50)  # the labels span the panel
        for label in (self.title, self.legend, self.tau_label):
            label.setMinimumHeight(0)  # heightForWidth never answers below the minimum
            label.setMinimumHeight(label.heightForWidth(width) if label.text() else 0)

    def _fill(self) -> None:
        from perceptlab.metrics.registry import get_metric

        metric = self.metric()
        self._set_headers(metric)
        if self._query is None or metric is None or metric not in self._partial:
            self.table.setRowCount(0)
            self._fit_height()
            if metric is not None and self._query is not None and self._task is not None:
                self.legend.setText(f"Ranking the library under {get_metric(metric).display_name}…")
            self._show_taus(metric)
            return
        k = self.k_box.value()
        rows = self._partial[metric][:k]
        others = [o for o in self._partial if o != metric]
        ranks = _rank_tables(self._partial)
        name = get_metric(metric).display_name
        self._show_title()
        self.table.setRowCount(len(rows))
        flagged = 0
        for row, n in enumerate(rows):
            # A large library's rankings are top lists (see rank_all): a clip missing
            # from one is ranked beyond its end.
            other_ranks = {o: ranks[o].get(n.clip.id, len(self._partial[o]) + 1) for o in others}
            in_top = sum(1 for r in other_ranks.values() if r is not None and r <= k)
            far = _ranked_far(other_ranks, k)
            flagged += far
            tip = (f"{n.clip.name} ({n.clip.label or 'no label'}): {n.distance:.6g} under {name}\n"
                   + ("Ranks under the other metrics: "
                      + ", ".join(f"{get_metric(o).display_name} "
                                  + (f"#{r}" if n.clip.id in ranks[o] else f"beyond #{r - 1}")
                                  for o, r in other_ranks.items())
                      if others else "The other metrics are still being ranked"))
            texts = [str(n.rank), n.clip.name, n.clip.label or "-", f"{n.distance:.4g}",
                     f"{in_top}/{len(others)}" if others else "…"]
            for col, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, n.clip)
                item.setToolTip(tip)
                if col in (RANK_COL, DIST_COL, AGREE_COL):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if far:
                    item.setBackground(QBrush(DISAGREE))
                    item.setData(Qt.UserRole + 1, True)
                self.table.setItem(row, col, item)
        self._fit_height()
        swatch = DISAGREE.name()
        if others:
            self.legend.setText(
                f"<span style='background-color: {swatch}'>&nbsp;&nbsp;&nbsp;&nbsp;</span> another metric "
                f"ranks it beyond {FAR_FACTOR * k}th ({flagged} here)<br>"
                f"<b>Agree</b>: in how many other metrics' top {k}")
        else:
            self.legend.setText("Agree: waiting for the other metrics…")
        self.legend.setToolTip(
            f"Agree: how many of the other {len(others)} metrics also rank the clip in their top {k}.\n"
            f"Orange: at least one other metric ranks it beyond {FAR_FACTOR * k}th; the metrics disagree "
            "about this clip, listen to settle it.")
        self._show_taus(metric)

    def _show_taus(self, metric: str | None) -> None:
        """Kendall's tau of the shown metric with each other one; every pair on hover."""
        from perceptlab.metrics.registry import get_metric

        if self.result is None or metric is None:
            self.tau_label.setText("")
            self._fit_height()
            return
        shown = get_metric(metric).display_name
        mine = {(b if a == metric else a): t for (a, b), t in self.taus.items() if metric in (a, b)}
        parts = " · ".join(f"{term(get_metric(o).display_name)} {t:+.2f}" for o, t in mine.items())
        text = f"Kendall τ with {term(shown)}: {parts}" if parts else ""
        errors = self.result.get("errors", {})
        if errors:
            text += ("\n" if text else "") + "Not ranked: " + "; ".join(
                f"{get_metric(m).display_name}: {msg}" for m, msg in errors.items())
        self.tau_label.setText(text)
        self._fit_height()
        self.tau_label.setToolTip("Rank agreement over the whole library (Kendall τ; 1 = the same order, "
                                  "0 = unrelated, -1 = reversed) between the metrics' distances from this "
                                  "clip to every other:\n"
                                  + "\n".join(f"{term(get_metric(a).display_name)} vs "
                                              f"{term(get_metric(b).display_name)}  {t:+.2f}"
                                              for (a, b), t in self.taus.items()))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_height()

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
    return any(r is not None and r > FAR_FACTOR * k for r in other_ranks.values())


def disagreement_ids(result: dict, k: int) -> set[int]:
    """Clip ids in some metric's top k that another metric ranks beyond 3k."""
    rankings = result["rankings"]
    ranks = _rank_tables(rankings)
    return {n.clip.id for m, r in rankings.items() for n in r[:k]
            if _ranked_far({o: ranks[o].get(n.clip.id) for o in rankings if o != m}, k)}
