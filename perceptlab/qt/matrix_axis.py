"""The matrix view's label axis: runs of rows (label blocks, or single clips) named at their centres.

A name is drawn only where it does not touch the previous one, so many
labels on a short axis thin out instead of overprinting, and zooming in
brings the rest back. The modes say what a row of the image is: one clip
(:data:`CLIPS`) or one label's block of clips (:data:`LABEL_MEANS`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics

#: Widest label on the axis, in pixels (longer ones are elided; hover shows them whole).
AXIS_TEXT_PX = 120
#: Widest clip name on the axis (a zoomed label block), in pixels.
CLIP_TEXT_PX = 170
#: Modes of the image.
CLIPS, LABEL_MEANS = "clips", "label means"


class QtGroupAxis(pg.AxisItem):
    """A left axis naming runs of rows (label blocks, or single clips) at their centres.

    A name is drawn only where it does not touch the previous one, so 40
    labels on 300 pixels thin out instead of overprinting; zooming in brings
    the rest back.
    """

    def __init__(self, *args, **kwargs):
        super().__init__("left", *args, **kwargs)
        self.groups: list[tuple[int, int, str]] = []
        self.setStyle(tickLength=-4, autoExpandTextSpace=False)

    def set_groups(self, groups: list[tuple[int, int, str]], elide=Qt.ElideRight, width: int = AXIS_TEXT_PX) -> None:
        """Name these runs of rows; a name wider than ``width`` pixels is elided (``elide``: which end)."""
        self.groups = list(groups)
        fm = QFontMetrics(self.font())
        self._texts = {(s + e) / 2: fm.elidedText(t, elide, width) for s, e, t in self.groups}
        widest = max((fm.horizontalAdvance(t) for t in self._texts.values()), default=20)
        self.setWidth(min(widest, width) + 14)
        self.picture = None
        self.update()

    def shown_groups(self, lo: float, hi: float, size: float) -> list[tuple[int, int, str]]:
        """The groups whose names fit on ``size`` pixels showing rows ``lo`` to ``hi``."""
        lo, hi = min(lo, hi), max(lo, hi)  # an inverted view gives its range high to low
        if not self.groups or hi <= lo or size <= 0:
            return []
        px = size / (hi - lo)  # pixels per row
        room = QFontMetrics(self.font()).height() + 1
        shown, last = [], -np.inf
        for s, e, t in self.groups:
            c = (s + e) / 2
            if c < lo or c > hi:
                continue
            if (c - last) * px >= room:
                shown.append((s, e, t))
                last = c
        return shown

    def tickValues(self, minVal, maxVal, size):
        return [(1.0, [(s + e) / 2 for s, e, _ in self.shown_groups(minVal, maxVal, size)])]

    def tickStrings(self, values, scale, spacing):
        return [self._texts.get(v, "") for v in values]

    def group_at(self, row: float) -> tuple[int, int, str] | None:
        return next((g for g in self.groups if g[0] <= row < g[1]), None)
