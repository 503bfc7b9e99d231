"""The main window's dock layout and saved window state.

:class:`WindowLayoutMixin` holds the methods of
:class:`~perceptlab.qt.main_window.QtMainWindow` that place every dock where
the default layout has it, size the docks for the window, reset the layout
(View > Reset layout) and restore the saved geometry, docks and view
preferences; :func:`settings` is where they are kept (``QSettings``, inside
``qt/`` only).
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QDockWidget

#: The version of the saved dock layout: raised when the default layout changes,
#: so a state saved by an older one is not restored.
STATE_VERSION = 2


def settings() -> QSettings:
    """Window state and preferences (an INI file in the user config folder)."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "perceptlab", "perceptlab")


class WindowLayoutMixin:
    """Docks and window state of :class:`~perceptlab.qt.main_window.QtMainWindow`."""

    # -- construction -------------------------------------------------------
    def _add_dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # -- layout -------------------------------------------------------------------
    def _layout_docks(self) -> None:
        """Put every dock where the default layout has it (sizes: :meth:`_size_docks`)."""
        for dock in self.findChildren(QDockWidget):
            dock.setFloating(False)
        self.addDockWidget(Qt.TopDockWidgetArea, self.player_dock)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.library_dock)
        # Right: the neighbours above; compare, matrix, map and reconstructions as tabs below.
        for dock in (self.neighbours_dock, self.compare_dock, self.matrix_dock, self.map_dock, self.recon_dock):
            self.addDockWidget(Qt.RightDockWidgetArea, dock, Qt.Vertical)
        self.tabifyDockWidget(self.compare_dock, self.matrix_dock)
        self.tabifyDockWidget(self.matrix_dock, self.map_dock)
        self.tabifyDockWidget(self.map_dock, self.recon_dock)
        for dock in (self.player_dock, self.library_dock, self.neighbours_dock, self.compare_dock,
                     self.matrix_dock, self.map_dock):
            dock.show()
        # Reconstructions is shown when asked for, as a tab: it never takes room from the others.
        self.recon_dock.hide()
        self.compare_dock.raise_()

    def default_dock_sizes(self) -> dict[str, int]:
        """The default layout's dock sizes in pixels for the window's size now."""
        w, h = self.width(), self.height()
        return {
            "library": int(min(max(0.24 * w, 290), 440)),
            "right": int(min(max(0.30 * w, 380), 560)),
            # Of the right column's height: the neighbours' table of 5 and its notes; the compare
            # panel the rest (its table and a difference map a few mel bands tall per pixel).
            "neighbours": int(min(max(0.34 * (h - 140), 210), 360)),
        }

    def _size_docks(self) -> None:
        sizes = self.default_dock_sizes()
        self.resizeDocks([self.library_dock, self.neighbours_dock], [sizes["library"], sizes["right"]],
                         Qt.Horizontal)
        rest = max(self.height() - 140 - sizes["neighbours"], 300)
        self.resizeDocks([self.neighbours_dock, self.compare_dock], [sizes["neighbours"], rest], Qt.Vertical)

    def reset_layout(self) -> None:
        """View > Reset layout: every dock back in its default place, at its default size."""
        self._layout_docks()
        self._size_docks()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._layout_sized:
            self._layout_sized = True
            if not self._layout_restored:
                self._size_docks()

    def _restore_state(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        state = s.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        # A state saved by an older layout (other docks, cramped sizes) is not restored.
        self._layout_restored = state is not None and bool(self.restoreState(state, STATE_VERSION))
        cmap = s.value("view/colormap")
        if cmap:
            self.spectrogram.set_colormap(str(cmap))
        self.spectrogram.set_panes(s.value("view/ab_panes", False, type=bool))
        self.player.autoplay_box.setChecked(s.value("player/autoplay", False, type=bool))
        self.player.match_box.setChecked(s.value("player/match_loudness", False, type=bool))
