"""Screenshots of the map and matrix docks on the many-label library, at a 1280 x 800 window.

Usage::

    python docs/screenshots/make_labels_library.py /tmp/labels      # once
    python docs/screenshots/map_matrix_screenshots.py /tmp/labels/labels.sqlite [docs/screenshots]

Needs a display (``Xvfb :N &`` and ``DISPLAY=:N``, or ``QT_QPA_PLATFORM=offscreen``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _wait(app, cond, timeout=300.0):
    end = time.monotonic() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > end:
            raise TimeoutError("the views did not finish in time")
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    library = Path(argv[0]).resolve()
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    # A settings folder of its own: the window state it leaves (an undocked matrix) is not the user's.
    import os
    import tempfile

    home = tempfile.mkdtemp(prefix="perceptlab-shots-")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = os.path.join(home, var.lower())
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from perceptlab.qt.main_window import QtMainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    w = QtMainWindow(library_path=library)
    w.resize(1280, 800)
    w.show()
    _wait(app, lambda: w.metrics_loaded, 120)
    # The right-hand docks get most of the room, as a user drags them: the map and matrix are the subject.
    _wait(app, lambda: True)

    def enlarge(dock):
        w.resizeDocks([dock], [700], Qt.Horizontal)
        w.resizeDocks([w.neighbours_dock, dock], [130, 620], Qt.Vertical)
        _wait(app, lambda: True)

    mv = w.map_view
    w.map_dock.raise_()
    enlarge(w.map_dock)
    idx = mv.source_box.findData("nlpd")
    mv.source_box.setCurrentIndex(max(idx, 0))
    mv.refit()
    _wait(app, lambda: mv.result is not None and mv._task is None)
    clips = mv.result["clips"]
    target = next((c for c in clips if c.label and c.label.startswith("piano")), clips[0])
    w.library_panel.select_clip(target.id)
    mv.set_selected_clip(target.id)
    _wait(app, lambda: True)
    w.map_dock.grab().save(str(out / "map-view.png"))

    xv = w.matrix_view
    w.matrix_dock.raise_()
    # Undocked, as a user studying the matrix would: a square image needs height.
    w.matrix_dock.setFloating(True)
    w.matrix_dock.resize(720, 760)
    w.matrix_dock.move(w.x() + 280, w.y() + 20)
    _wait(app, lambda: True)
    xv.metric_box.setCurrentIndex(max(xv.metric_box.findData("nlpd"), 0))
    xv.compute()
    _wait(app, lambda: xv.matrix is not None and xv.corr_table.rowCount() == len(xv.metric_names)
          and not w.analysis.busy())
    xv.show_metric()
    _wait(app, lambda: xv.matrix is not None)
    w.matrix_dock.grab().save(str(out / "matrix-view.png"))
    w.grab().save("/tmp/window.png")
    for runner in (w.tasks, w.matrix_tasks):
        runner.shutdown(60000)
    w._close_decided = True
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
