"""Writing a report to a folder: ``report.json``, ``report.md``, the chart and the confusion
matrices as CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

from perceptlab.atomic import atomic_write_bytes

from .markdown import render_markdown
from .report import EvaluationReport

def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_report(report: EvaluationReport | dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``chart.png`` and ``confusion/*.csv`` into ``out_dir``.

    Returns
    -------
    dict
        {"json", "markdown", "chart", "confusion": [paths]}.
    """
    import csv
    import io

    from ..report_png import bar_chart, encode_png

    data = report.data if isinstance(report, EvaluationReport) else report
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "confusion").mkdir(exist_ok=True)
    paths: dict = {"confusion": []}
    methods = sorted(data["methods"], key=lambda m: m["rank"])
    for m in methods:
        for level in ("clip", "segment"):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            labels = m["confusion"]["labels"]
            w.writerow(["true \\ predicted"] + labels)
            for lab, row in zip(labels, m["confusion"][level]):
                w.writerow([lab] + row)
            p = out / "confusion" / f"{_safe(m['name'])}{'' if level == 'clip' else '.segments'}.csv"
            atomic_write_bytes(p, buf.getvalue().encode())
            paths["confusion"].append(p)
    rows = [{"label": m["name"], "value": m["clip"]["f1_weighted"]["mean"], "err": m["clip"]["f1_weighted"]["std"],
             "kind": m["kind"]} for m in methods]
    n = data["config"]["folds"]
    chart = bar_chart(rows, f"weighted F1 per clip, mean +- std over {n} folds")
    paths["chart"] = out / "chart.png"
    atomic_write_bytes(paths["chart"], encode_png(chart))
    paths["json"] = out / "report.json"
    atomic_write_bytes(paths["json"], (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())
    paths["markdown"] = out / "report.md"
    atomic_write_bytes(paths["markdown"], render_markdown(data).encode())
    return paths
