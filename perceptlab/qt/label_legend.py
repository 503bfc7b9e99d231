"""Label colours and markers for 2 to 100+ labels, and a searchable legend that hides labels.

Ten colours cycled over 37 labels give four labels the same blue circle.
:func:`distinct_colours` builds a categorical palette in the manner of
Glasbey et al. (2007): each new colour is the candidate farthest (in CIELAB)
from every colour chosen so far, so the first colours are the most distinct
and a long list stays tellable apart. :func:`label_styles` pairs colour ``i``
with a marker that also changes from label to label, so (colour, marker) is
unique for every label up to ``len(PALETTE) * len(SYMBOLS)``.

:class:`QtLabelLegend` lists the labels with their swatch and clip count in
a side panel; typing filters the list, the check boxes show or hide labels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

#: pyqtgraph marker names; the order puts the most different shapes first.
SYMBOLS = ("o", "s", "t", "d", "star", "h", "t1", "p", "+", "x")
#: How many palette colours are generated (colours repeat, with another marker, after this many labels).
PALETTE_SIZE = 100
#: The lightness range kept: the map's background is black, the legend's light.
_L_RANGE = (45.0, 90.0)
#: The first colours (Tableau 10 without its grey): familiar for small label sets.
_SEEDS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207))


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0-255, (N, 3) -> CIELAB (D65), (N, 3)."""
    c = rgb / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


@lru_cache(maxsize=4)
def distinct_colours(n: int = PALETTE_SIZE) -> tuple[tuple[int, int, int], ...]:
    """``n`` distinct RGB colours, the most distinct first (greedy max-min distance in CIELAB).

    Deterministic: the candidates are a fixed sRGB grid, the first colours
    the Tableau ones. Too dark (invisible on black) and too pale colours
    are left out.
    """
    if n < 1:
        raise ValueError(f"palette size: at least 1 colour, got {n}")
    levels = np.linspace(0, 255, 18)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _srgb_to_lab(grid)
    keep = (lab[:, 0] >= _L_RANGE[0]) & (lab[:, 0] <= _L_RANGE[1])
    grid, lab = np.round(grid[keep]).astype(int), lab[keep]
    chosen = [tuple(s) for s in _SEEDS[:n]]
    nearest = np.min(np.linalg.norm(lab[:, None, :] - _srgb_to_lab(np.array(chosen, float))[None], axis=2), axis=1)
    while len(chosen) < n:
        k = int(np.argmax(nearest))
        chosen.append(tuple(int(v) for v in grid[k]))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[k], axis=1))
    return tuple(chosen)


def label_style(index: int, n_colours: int = PALETTE_SIZE) -> tuple[tuple[int, int, int], str]:
    """(colour, marker) of the ``index``-th label (labels sorted by name)."""
    palette = distinct_colours(n_colours)
    colour = palette[index % len(palette)]
    # The marker turns with the label and once more each time the colours wrap:
    # labels i and i + len(palette) share a colour but not a marker.
    symbol = SYMBOLS[(index + index // len(palette)) % len(SYMBOLS)]
    return colour, symbol


def label_styles(labels) -> dict[str, tuple[tuple[int, int, int], str]]:
    """{label: (colour, marker)} for the labels, sorted; unique pairs up to ``PALETTE_SIZE * len(SYMBOLS)``."""
    return {lab: label_style(i) for i, lab in enumerate(sorted(set(labels)))}


def swatch_icon(colour, symbol: str, size: int = 14) -> QIcon:
    """The marker as drawn on the map, as an icon."""
    import pyqtgraph as pg
    from pyqtgraph.graphicsItems.ScatterPlotItem import drawSymbol

    pix = QPixmap(size, size)
    pix.fill(Qt.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.Antialiasing)
    p.translate(size / 2, size / 2)
    pen = pg.mkPen(0, 0, 0, 160) if symbol not in ("+", "x") else pg.mkPen(QColor(*colour), width=2)
    drawSymbol(p, symbol, size - 3, pen, pg.mkBrush(*colour))
    p.end()
    return QIcon(pix)


class QtLabelLegend(QWidget):
    """A filterable list of labels, each with its swatch, clip count and a visibility check box.

    Signals
    -------
    visibility_changed()
        A label was shown or hidden; read :meth:`hidden_labels`.
    label_activated(str)
        A label was double-clicked.
    """

    visibility_changed = Signal()
    label_activated = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._hidden: set[str] = set()
        self._counts: dict[str, int] = {}
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter labels…")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setIconSize(QSize(14, 14))
        self.list.setUniformItemSizes(True)
        self.show_button = QPushButton("Show")
        self.hide_button = QPushButton("Hide")
        self.show_button.setToolTip("Show every label listed (all of them, or those the filter matches)")
        self.hide_button.setToolTip("Hide every label listed (all of them, or those the filter matches)")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.hide_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        lay.addWidget(self.search)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.summary)
        self.search.textChanged.connect(self._on_search)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.itemDoubleClicked.connect(lambda it: self.label_activated.emit(it.data(Qt.UserRole)))
        self.show_button.clicked.connect(lambda: self._set_listed(True))
        self.hide_button.clicked.connect(lambda: self._set_listed(False))

    def set_labels(self, counts: dict[str, int], styles: dict[str, tuple]) -> None:
        """List ``counts`` ({label: clips}); labels hidden before stay hidden."""
        self._counts = dict(counts)
        self._hidden &= set(counts)
        self.list.blockSignals(True)
        self.list.clear()
        for lab in sorted(counts):
            colour, symbol = styles[lab]
            item = QListWidgetItem(swatch_icon(colour, symbol), f"{lab}  ({counts[lab]})")
            item.setData(Qt.UserRole, lab)
            item.setToolTip(f"{lab}: {counts[lab]} clip{'s' if counts[lab] != 1 else ''}")
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked if lab in self._hidden else Qt.Checked)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self._on_search(self.search.text())

    def labels(self) -> list[str]:
        return sorted(self._counts)

    def hidden_labels(self) -> set[str]:
        return set(self._hidden)

    def set_hidden(self, labels, hidden: bool = True) -> None:
        """Hide (or show) these labels."""
        self._apply({lab: not hidden for lab in labels if lab in self._counts})

    def listed_labels(self) -> list[str]:
        """The labels the filter lets through, in list order."""
        return [self.list.item(r).data(Qt.UserRole) for r in range(self.list.count())
                if not self.list.item(r).isHidden()]

    def _apply(self, visible: dict[str, bool]) -> None:
        changed = False
        self.list.blockSignals(True)
        for r in range(self.list.count()):
            item = self.list.item(r)
            lab = item.data(Qt.UserRole)
            if lab in visible and (lab not in self._hidden) != visible[lab]:
                item.setCheckState(Qt.Checked if visible[lab] else Qt.Unchecked)
                (self._hidden.discard if visible[lab] else self._hidden.add)(lab)
                changed = True
        self.list.blockSignals(False)
        self._update_summary()
        if changed:
            self.visibility_changed.emit()

    def _set_listed(self, visible: bool) -> None:
        self._apply({lab: visible for lab in self.listed_labels()})

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        lab = item.data(Qt.UserRole)
        if item.checkState() == Qt.Checked:
            self._hidden.discard(lab)
        else:
            self._hidden.add(lab)
        self._update_summary()
        self.visibility_changed.emit()

    def _on_search(self, text: str) -> None:
        needle = text.strip().lower()
        for r in range(self.list.count()):
            item = self.list.item(r)
            item.setHidden(bool(needle) and needle not in item.data(Qt.UserRole).lower())
        self._update_summary()

    def _update_summary(self) -> None:
        n = len(self._counts)
        if n == 0:
            self.summary.setText("")
            return
        shown = n - len(self._hidden)
        listed = len(self.listed_labels())
        text = f"{n} labels, {shown} shown" if n != shown else f"{n} label{'s' if n != 1 else ''}"
        if listed != n:
            text += f"; {listed} match the filter"
        self.summary.setText(text)
