"""Regenerate docs/screenshots/neighbours-panel.png: the neighbours dock of the main window
at 1280 x 800 on the demo library, five metrics, k = 10.

    python docs/screenshots/neighbours_screenshot.py [OUT_DIR] [--library PATH] [--window PNG]

Without ``--library`` the demo clips are imported into a temporary library.
``--window`` also saves the whole window, to judge the dock in its place.
Run it on a display (Xvfb is fine); offscreen fonts differ from a desktop's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=str(Path(__file__).parent))
    ap.add_argument("--library", default=None, help="a library holding the demo clips (default: import them)")
    ap.add_argument("--window", default=None, help="also save the whole window to this PNG")
    ap.add_argument("--clip", default="piano_03.flac", help="the clip whose neighbours are shown")
    ap.add_argument("--metric", default="msssim", help="the metric on display")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="perceptlab-shot-") as tmp:
        lib_path = Path(args.library) if args.library else Path(tmp, "demo.sqlite")
        if not args.library:
            from perceptlab.library.demo import demo_dir
            from perceptlab.library.importer import import_files
            from perceptlab.library.store import Library

            with Library(lib_path) as lib:
                import_files(lib, [demo_dir()])

        from perceptlab.qt.app import create_app
        from perceptlab.qt.main_window import QtMainWindow

        app = create_app()
        w = QtMainWindow(library_path=lib_path)
        w.resize(1280, 800)
        w.show()

        def wait(cond, seconds=120.0):
            deadline = time.monotonic() + seconds
            while not cond():
                if time.monotonic() > deadline:
                    raise TimeoutError("the window did not get there in time")
                app.processEvents()
                time.sleep(0.01)

        wait(lambda: w.metrics_loaded)
        panel = w.neighbours_panel
        clip = next(c for c in w.library_panel.model.clips() if c.name == args.clip)
        panel.k_box.setValue(10)
        w.library_panel.select_clip(clip.id)
        wait(lambda: panel.result is not None and panel.result["query"].id == clip.id)
        panel.set_metric(args.metric)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        out = Path(args.out_dir, "neighbours-panel.png")
        w.neighbours_dock.grab().save(str(out))
        print(out, "metrics:", panel.metrics_shown())
        if args.window:
            w.grab().save(args.window)
            print(args.window)
        for runner in (w.tasks, w.matrix_tasks):
            runner.shutdown(60000)
        w._close_decided = True
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
