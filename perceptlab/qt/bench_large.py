"""Neighbours in a freshly started app on a large library (``perceptlab bench gui --large N``).

The library (``N`` real files made from the demo clips, see
:func:`perceptlab.qt.bench.build_bench_library`) and its search indexes are
built first, once. Then each repeat starts the app in a new process (a cold
start: nothing in memory, the indexes memory-mapped from disk), waits until
the window is up and its metrics are registered, selects a clip, and times
how long until the Neighbours table holds that clip's neighbours.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def prepare_library(folder: Path, n: int, out: Callable[[str], None] = print) -> Path:
    """The bench library of ``n`` clips in ``folder`` with its indexes up to date (reused when there)."""
    from perceptlab.analysis.indexing import update_library_indexes
    from perceptlab.library.store import Library
    from perceptlab.qt.bench import build_bench_library

    lib_path = Path(folder, f"bench-{n}.sqlite")
    if lib_path.exists():
        with Library(lib_path, read_only=True) as lib:
            have = lib.count()
        if have != n:
            raise RuntimeError(f"{lib_path}: holds {have} clips, not {n}; choose another --work folder")
    else:
        t0 = time.perf_counter()
        out(f"building a {n:,}-clip library in {folder} (once)…")
        build_bench_library(Path(folder), n)
        out(f"  imported in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    update_library_indexes(lib_path)
    out(f"  search indexes up to date in {time.perf_counter() - t0:.1f} s")
    return lib_path


def _child(lib_path: str, pick: int) -> None:
    """In a new process: open the app, select clip ``pick``, print the time to its neighbours as JSON."""
    from PySide6.QtWidgets import QApplication

    from perceptlab.qt.bench import _wait
    from perceptlab.qt.main_window import QtMainWindow

    app = QApplication.instance() or QApplication([])
    w = QtMainWindow(library_path=lib_path)
    w.resize(1280, 800)
    w.show()
    _wait(app, lambda: w.metrics_loaded, "the metric registry")
    panel = w.neighbours_panel
    clips = w.library_panel.model.clips()
    clip = clips[pick % len(clips)]
    t0 = time.perf_counter()
    w.library_panel.select_clip(clip.id)
    _wait(app, lambda: panel.query() is not None and panel.query().id == clip.id
          and panel.table.rowCount() > 0, "the neighbours table")
    shown = time.perf_counter() - t0
    print(json.dumps({"shown_ms": 1000 * shown, "metric": panel.metric(), "clips": len(clips)}), flush=True)
    for runner in (w.tasks, w.matrix_tasks, w.index_tasks):
        runner.shutdown(1000)
    w._close_decided = True
    w.close()
    os._exit(0)  # the ranking of the other metrics may still run: it is not what is measured


def run_large_neighbours_bench(n: int, folder: Path, repeats: int = 5,
                               out: Callable[[str], None] = print) -> dict:
    """Median time from a selection to its neighbours in a cold-started app on an ``n``-clip library."""
    if n < 2:
        raise ValueError(f"--large needs at least 2 clips, got {n}")
    lib_path = prepare_library(Path(folder), n, out)
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    shown, metric = [], None
    for r in range(repeats):
        proc = subprocess.run([sys.executable, "-m", "perceptlab.qt.bench_large", str(lib_path), str(r * 997 + 13)],
                              capture_output=True, text=True, env=env, timeout=900)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the app run {r + 1} failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
        got = json.loads(lines[-1])
        shown.append(got["shown_ms"])
        metric = got["metric"]
    res = {"clips": n, "metric": metric, "shown_ms_median": statistics.median(shown),
           "shown_ms": [round(s, 1) for s in shown]}
    out(f"  neighbours shown after selection, {n:,} clips, cold start   {res['shown_ms_median']:.0f} ms  "
        f"[< 300 ms] ({metric} on display; runs: {', '.join(f'{s:.0f}' for s in shown)} ms)")
    return res


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
