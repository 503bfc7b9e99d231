"""Regenerate docs/screenshots/probe.png: the Agreement tab's "Metric probe" page.

A real probe of a few demo clips (seed 0) run through the page, in the real
main window at 1280 x 800 with its default docks. The same page at
1920 x 1080 and with the side docks closed goes to ``--work`` for a look.

Run it on a display (an X server or Xvfb), from the repository root::

    Xvfb :98 -screen 0 1920x1080x24 &
    DISPLAY=:98 OMP_NUM_THREADS=1 python docs/screenshots/probe_shots.py

``--library`` reuses a library that holds the demo clips; without it one is
made in ``--work`` from ``assets/demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from shots_common import OUT, demo_library, wait_until  # noqa: E402  (beside this script)
from shots_common import settle as _settle  # noqa: E402


def settle(app, seconds: float = 0.8) -> None:
    _settle(app, seconds)






def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, help="a library holding the demo clips (default: made in --work)")
    parser.add_argument("--work", type=Path, help="folder for the library and the extra pictures (default: temp)")
    parser.add_argument("--out", type=Path, default=OUT, help="where probe.png goes (default: docs/screenshots)")
    parser.add_argument("--clips", type=int, default=6, help="clips in the probe (default 6)")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        parser.error("no display: start Xvfb and set DISPLAY (or QT_QPA_PLATFORM=offscreen)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="perceptlab-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")  # window state of this run only
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    library = args.library or demo_library(work)
    if not library.exists():
        parser.error(f"{library}: no such library")

    from PySide6.QtWidgets import QApplication, QDockWidget

    app = QApplication(sys.argv[:1])
    from perceptlab.qt.main_window import QtMainWindow

    window = QtMainWindow(library_path=str(library))
    window.resize(1280, 800)
    window.show()
    wait_until(app, lambda: window.metrics_loaded, 120, "the metric registry")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        view = window.agreement_view
        probe = view.probe
        window.central_tabs.setCurrentWidget(view)
        view.pages.setCurrentWidget(probe)
        probe.clips_box.setValue(args.clips)
        probe.seed_box.setValue(0)
        if probe.run() is None:
            raise RuntimeError("the probe did not start")
        wait_until(app, lambda: probe.report is not None and not probe.busy(), 900, "the probe")
        settle(app)
        window.grab().save(str(args.out / "probe.png"))
        print(f"probe page: minimum width {probe.minimumSizeHint().width()} px, shown {probe.width()} x "
              f"{probe.height()} px, table {probe.table.viewport().height()} px high")
        docks = [d for d in window.findChildren(QDockWidget) if d is not window.player_dock and d.isVisible()]
        for dock in docks:
            dock.hide()
        settle(app)
        window.grab().save(str(work / "probe-docks-closed.png"))
        for dock in docks:
            dock.show()
        window.resize(1920, 1080)
        settle(app)
        window.grab().save(str(work / "probe-1920.png"))
        print("pictures:", args.out / "probe.png", work / "probe-docks-closed.png", work / "probe-1920.png")
    finally:
        window._close_decided = True
        for runner in (window.tasks, window.matrix_tasks, window.listening_view.runner):
            runner.shutdown(60000)
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
