"""Regenerate evaluation-view.png: the Evaluation tab showing a report of the demo library.

    QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1 python docs/screenshots/evaluation_shots.py [--size 1280x800] [--out DIR]

The demo clips are imported into a fresh library in a temporary folder (the
user's settings are not read) and evaluated as the tab's default mode does,
with the shipped general encoders, smaller for speed: 3 folds, at most 2
segments per clip, k-NN on MSE and log-mel statistics. The report is shown
as the tab shows a finished run's report.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1280x800", help="window size WxH")
    p.add_argument("--out", default=str(HERE), help="folder for the PNG")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="perceptlab-shots-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp / "config"))
    app = QApplication.instance() or QApplication(sys.argv)

    from perceptlab.analysis.evaluate import EvaluateConfig, run_evaluation
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.qt.main_window import QtMainWindow

    lib = tmp / "demo.sqlite"
    with Library(lib) as L:
        import_files(L, [ROOT / "assets" / "demo"])
    ckpts = tuple(str(p) for p in sorted((ROOT / "assets" / "models").glob("general-*.pt")))
    cfg = EvaluateConfig(metrics=("mse", "logmel-stats"), checkpoints=ckpts, folds=3, max_segments_per_clip=2,
                         c_grid=(0.1, 1.0), k_grid=(1, 3, 5), bootstrap=300)
    report = run_evaluation(lib, cfg)

    w = QtMainWindow(library_path=lib)
    w.resize(width, height)
    w.show()
    view = w.evaluation_view
    w.central_tabs.setCurrentWidget(view)
    view.folds_box.setValue(3)
    view.show_report(report)
    for _ in range(20):
        app.processEvents()
    out = Path(args.out) / "evaluation-view.png"
    w.grab().save(str(out))
    print(out)
    w._close_decided = True
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
