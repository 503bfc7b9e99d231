"""The library browser: a sortable, filterable table of clips."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QStyle,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from perceptlab.library.store import Clip

ALL_LABELS = "All labels"
#: Text colour of a clip that failed to import (readable on light and dark rows).
FAILED_COLOUR = QColor(200, 60, 40)


def failed_tooltip(clip: Clip) -> str:
    return f"{clip.name} failed to import: {clip.error or 'unknown reason'}\n{clip.path}"


def _lufs_text(lufs: float | None) -> str:
    if lufs is None:
        return ""
    return "silent" if lufs == float("-inf") else f"{lufs:.1f}"


# Item roles looked up once: ``Qt.DisplayRole`` (the short spelling) costs about 10 us per use in
# PySide6, and the view calls ``data`` thousands of times for a screenful of rows.
_DISPLAY = Qt.ItemDataRole.DisplayRole
_SORT = Qt.ItemDataRole.UserRole
_DECORATION = Qt.ItemDataRole.DecorationRole
_FOREGROUND = Qt.ItemDataRole.ForegroundRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
_ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_HORIZONTAL = Qt.Orientation.Horizontal


class QtClipTableModel(QAbstractTableModel):
    """Clips as rows: name, label, duration, sample rate, channels, loudness, status."""

    COLUMNS = ("Name", "Label", "Duration", "Rate", "Ch", "LUFS", "Status")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._clips: list[Clip] = []

    def set_clips(self, clips: list[Clip]) -> None:
        self.beginResetModel()
        self._clips = list(clips)
        self.endResetModel()

    def clip(self, row: int) -> Clip:
        return self._clips[row]

    def clips(self) -> list[Clip]:
        return list(self._clips)

    def row_of(self, clip_id: int) -> int:
        for i, c in enumerate(self._clips):
            if c.id == clip_id:
                return i
        return -1

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self._clips)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=_DISPLAY):
        if role == _DISPLAY and orientation == _HORIZONTAL:
            return self.COLUMNS[section]
        return None

    def data(self, index, role=_DISPLAY):
        if not index.isValid():
            return None
        c = self._clips[index.row()]
        col = index.column()
        # Only the cell asked for is formatted: the view asks for every cell many times
        # (sizing the columns to their contents, painting, sorting).
        if role == _DISPLAY:
            if col == 0:
                return c.name
            if col == 1:
                return c.label or ""
            if col == 2:
                return f"{c.duration:.2f} s" if c.duration is not None else ""
            if col == 3:
                return f"{c.sample_rate / 1000:g} kHz" if c.sample_rate else ""
            if col == 4:
                return str(c.channels or "")
            if col == 5:
                return _lufs_text(c.loudness)
            return "ok" if c.ok else "failed"
        if role == _SORT:  # sort key
            if col == 0:
                return c.name.lower()
            if col == 1:
                return (c.label or "").lower()
            if col == 2:
                return c.duration or 0.0
            if col == 3:
                return c.sample_rate or 0
            if col == 4:
                return c.channels or 0
            if col == 5:
                return -1e9 if c.loudness is None else max(c.loudness, -1e8)
            return 0 if c.ok else 1
        if role == _DECORATION and col == 0 and not c.ok:
            return QApplication.style().standardIcon(QStyle.SP_MessageBoxWarning)
        if role == _FOREGROUND and not c.ok:
            return QBrush(FAILED_COLOUR)
        if role == _TOOLTIP:
            if not c.ok:
                return failed_tooltip(c)
            if col == 5:
                return ("Integrated loudness (ITU-R BS.1770-4) of the mono downmix; the metrics compare "
                        "every clip brought to the same loudness")
            return c.error if c.error else c.path
        if role == _ALIGNMENT and col in (2, 3, 4, 5):
            return _RIGHT
        return None


class QtClipFilterModel(QSortFilterProxyModel):
    """Filters by a search text (name or label), an exact label, and failed clips only."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(Qt.UserRole)
        self._text = ""
        self._label: str | None = None
        self._failed_only = False

    def is_filtering(self) -> bool:
        return bool(self._text) or self._label is not None or self._failed_only

    def set_failed_only(self, on: bool) -> None:
        self._failed_only = bool(on)
        self.invalidate()

    def set_text(self, text: str) -> None:
        self._text = text.strip().lower()
        self.invalidate()

    def set_label(self, label: str | None) -> None:
        self._label = label
        self.invalidate()

    def filterAcceptsRow(self, row, parent):
        clip = self.sourceModel().clip(row)
        if self._failed_only and clip.ok:
            return False
        if self._label is not None and clip.label != self._label:
            return False
        if self._text and self._text not in clip.name.lower() and self._text not in (clip.label or "").lower():
            return False
        return True


class QtLibraryPanel(QWidget):
    """Search box, label filter and the clip table.

    Signals
    -------
    clip_selected(object)
        The newly current :class:`Clip` (or None).
    filter_changed()
        The clips shown changed (search, label, failed-only, new clips).
    """

    clip_selected = Signal(object)
    filter_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = QtClipTableModel(self)
        self.proxy = QtClipFilterModel(self)
        self.proxy.setSourceModel(self.model)

        self.search = QLineEdit(placeholderText="Search name or label…")
        self.search.setClearButtonEnabled(True)
        self.label_filter = QComboBox()
        self.label_filter.addItem(ALL_LABELS)
        self.label_filter.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.failed_only = QToolButton()
        self.failed_only.setCheckable(True)
        self.failed_only.setIcon(QApplication.style().standardIcon(QStyle.SP_MessageBoxWarning))
        self.failed_only.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.failed_only.hide()
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        # The name keeps room for a typical file name; the other columns fit their
        # contents, and a narrow panel scrolls sideways rather than cutting names to "br…".
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setResizeContentsPrecision(200)  # widths from 200 rows, not every row of a large library
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, self.fontMetrics().horizontalAdvance("strings_08.flac") + 40)
        self.table.setTextElideMode(Qt.ElideMiddle)
        self.search.setMinimumWidth(self.fontMetrics().horizontalAdvance("Search name or label…") + 30)
        self.table.setAlternatingRowColors(True)

        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.label_filter)
        top.addWidget(self.failed_only)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.table)

        self.search.textChanged.connect(self._on_search_changed)
        self.label_filter.currentTextChanged.connect(self._on_label_changed)
        self.failed_only.toggled.connect(self._on_failed_only_toggled)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)

    def set_clips(self, clips: list[Clip]) -> None:
        current = self.current_clip()
        self.model.set_clips(clips)
        labels = sorted({c.label for c in clips if c.label})
        keep = self.label_filter.currentText()
        self.label_filter.blockSignals(True)
        self.label_filter.clear()
        self.label_filter.addItems([ALL_LABELS, *labels])
        self.label_filter.setCurrentText(keep if keep in labels else ALL_LABELS)
        self.label_filter.blockSignals(False)
        self.proxy.set_label(None if self.label_filter.currentText() == ALL_LABELS else self.label_filter.currentText())
        n_failed = sum(not c.ok for c in clips)
        self.failed_only.setText(f"{n_failed:,}")
        self.failed_only.setToolTip(f"{n_failed:,} file(s) failed to import: show only them "
                                    "(hover one for the reason)")
        self.failed_only.setVisible(n_failed > 0)
        if not n_failed and self.failed_only.isChecked():
            self.failed_only.setChecked(False)
        if current is not None:
            self.select_clip(current.id)
        self.filter_changed.emit()

    def is_filtered(self) -> bool:
        """True while the search, label or failed-only filter hides some clips."""
        return self.proxy.is_filtering() and self.proxy.rowCount() < self.model.rowCount()

    def failed_clips(self) -> list[Clip]:
        return [c for c in self.model.clips() if not c.ok]

    def current_clip(self) -> Clip | None:
        idx = self.table.currentIndex()
        if not idx.isValid():
            return None
        return self.model.clip(self.proxy.mapToSource(idx).row())

    def selected_clips(self) -> list[Clip]:
        rows = self.table.selectionModel().selectedRows()
        return [self.model.clip(self.proxy.mapToSource(i).row()) for i in rows]

    def visible_clips(self) -> list[Clip]:
        return [self.model.clip(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
                for r in range(self.proxy.rowCount())]

    def select_clip(self, clip_id: int) -> bool:
        row = self.model.row_of(clip_id)
        if row < 0:
            return False
        idx = self.proxy.mapFromSource(self.model.index(row, 0))
        if not idx.isValid():
            return False
        self.table.setCurrentIndex(idx)
        self.table.scrollTo(idx)
        return True

    def _on_search_changed(self, text: str) -> None:
        self.proxy.set_text(text)
        self.filter_changed.emit()

    def _on_label_changed(self, text: str) -> None:
        self.proxy.set_label(None if text in ("", ALL_LABELS) else text)
        self.filter_changed.emit()

    def _on_failed_only_toggled(self, on: bool) -> None:
        self.proxy.set_failed_only(on)
        self.filter_changed.emit()

    def _on_current_changed(self, current, _previous) -> None:
        self.clip_selected.emit(self.current_clip())
