"""The main window's small windows: files that failed to import, keyboard shortcuts."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

#: What the listening screen's keys do (its shortcuts carry no text of their own).
LISTENING_KEYS = {
    "0": "play the reference",
    "R": "play the reference",
    **{str(i): f"play candidate {i}, keeping the position" for i in range(1, 10)},
    "Space": "play / pause",
    "Shift+Space": "loop on / off",
    "A": "loop start at the playhead",
    "B": "loop end at the playhead",
    "J": "rating −5",
    "K": "rating +5",
    "Shift+J": "rating −1",
    "Shift+K": "rating +1",
    "Return": "answer and go to the next trial",
    "Enter": "answer and go to the next trial",
}

#: Mouse gestures, which no QShortcut carries.
MOUSE = (
    ("Spectrogram", "Click", "move the playhead there"),
    ("Spectrogram", "Shift+drag", "draw the loop region"),
    ("Spectrogram", "Wheel / drag", "zoom / pan"),
)


class QtFailuresDialog(QDialog):
    """Each file that failed to import and why (a window that does not block)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Files that failed to import")
        self.setModal(False)
        self.resize(760, 360)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        lay.addWidget(buttons)

    def set_failures(self, failures: list[tuple[str, str]], summary: str = "") -> None:
        """``failures``: (path, reason) pairs."""
        self.summary.setText(summary or f"{len(failures)} file(s) could not be imported:")
        self.table.setRowCount(len(failures))
        for row, (path, reason) in enumerate(failures):
            item = QTableWidgetItem(path)
            item.setToolTip(path)
            self.table.setItem(row, 0, item)
            why = QTableWidgetItem(reason)
            why.setToolTip(reason)
            self.table.setItem(row, 1, why)
        self.table.resizeColumnToContents(0)
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), 380))
        self.table.resizeRowsToContents()


def _screen_of(obj, window) -> str:
    """Where a shortcut works: the central tab or dock holding its widget, else the whole window."""
    w = obj.parent()
    while isinstance(w, QWidget) and w is not window:
        parent = w.parentWidget()
        if isinstance(w, QDockWidget):
            return w.windowTitle()
        # A page of a QTabWidget sits in its QStackedWidget.
        if parent is not None and isinstance(parent.parentWidget(), QTabWidget):
            tabs = parent.parentWidget()
            index = QTabWidget.indexOf(tabs, w)  # the holder itself (a scroll area), not its page
            if index >= 0:
                return tabs.tabText(index).replace("&", "")
        w = parent
    return "Main window"


def installed_shortcuts(window) -> list[tuple[str, str, str]]:
    """(screen, key, what it does) for every QShortcut and every QAction with a key under ``window``.

    Read from the objects themselves, so the list cannot drift from the keys.
    """
    rows: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for sc in window.findChildren(QShortcut):
        key = sc.key().toString(QKeySequence.NativeText)
        if not key:
            continue
        screen = _screen_of(sc, window)
        what = sc.whatsThis() or (LISTENING_KEYS.get(sc.key().toString()) if screen == "Listening test" else "")
        if (screen, key) not in seen:
            seen.add((screen, key))
            rows.append((screen, key, what or "—"))
    for act in window.findChildren(QAction):
        screen = "Menus" if act.parent() is window else _screen_of(act, window)
        for seq in act.shortcuts():
            key = seq.toString(QKeySequence.NativeText)
            if not key or (screen, key) in seen:
                continue
            seen.add((screen, key))
            rows.append((screen, key, act.text().replace("&", "").rstrip("…") or act.toolTip() or "—"))
    return rows


class QtShortcutsDialog(QDialog):
    """Every keyboard shortcut of every screen, and the mouse gestures."""

    def __init__(self, window, parent=None):
        super().__init__(parent or window)
        self.setWindowTitle("Keyboard shortcuts")
        self.setModal(False)
        self.resize(620, 640)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Where", "Key", "What it does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        note = QLabel("Keys of the main window work anywhere in it except in a text field and on the "
                      "listening screen, which has its own.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(note)
        lay.addWidget(self.table, 1)
        lay.addWidget(buttons)
        self.refresh(window)

    def refresh(self, window) -> None:
        rows = installed_shortcuts(window) + [(s, k, w) for s, k, w in MOUSE]
        order = {"Main window": 0, "Menus": 9}
        rows.sort(key=lambda r: (order.get(r[0], 5), r[0]))
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(text))

    def keys(self) -> list[tuple[str, str]]:
        """(where, key) of each row shown."""
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]


def readme_path() -> Path:
    """The project's README.md beside the package (a source checkout or an editable install)."""
    return Path(__file__).resolve().parents[2] / "README.md"
