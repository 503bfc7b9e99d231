"""Tabs whose pages scroll when the window is smaller than a page would like.

A page with a wide form (the agreement report, the evaluation) would
otherwise set the whole window's minimum width: at 1280 px the docks were
squeezed to make room for it. Here such a page sits in a scroll area (a page
that fits, or that lays itself out for any width, is added with
``scroll=False``); the
tab widget's calls (``indexOf``, ``widget``, ``currentWidget``,
``setCurrentWidget``) still take and give the page itself.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QTabWidget, QWidget


class QtPageTabs(QTabWidget):
    """A QTabWidget whose pages may scroll; callers see the pages, not the scroll areas."""

    def addTab(self, page: QWidget, label: str, scroll: bool = True) -> int:  # noqa: N802 (Qt's name)
        if not scroll:
            return super().addTab(page, label)
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        area.setWidget(page)
        area.setObjectName(f"scroll-{page.objectName() or type(page).__name__}")
        return super().addTab(area, label)

    @staticmethod
    def _page(holder: QWidget | None) -> QWidget | None:
        return holder.widget() if isinstance(holder, QScrollArea) else holder

    def widget(self, index: int) -> QWidget | None:
        return self._page(super().widget(index))

    def currentWidget(self) -> QWidget | None:  # noqa: N802
        return self._page(super().currentWidget())

    def indexOf(self, page: QWidget) -> int:  # noqa: N802
        for i in range(self.count()):
            if self.widget(i) is page:
                return i
        return -1

    def setCurrentWidget(self, page: QWidget) -> None:  # noqa: N802
        index = self.indexOf(page)
        if index < 0:
            raise ValueError(f"{type(page).__name__} is not a page of these tabs")
        self.setCurrentIndex(index)
