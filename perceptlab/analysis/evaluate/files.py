"""Writing a report to a folder: ``report.json``, ``report.md``, the chart and the confusion
matrices as CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

from perceptlab.atomic import atomic_write_bytes

from .chart import ChartUnavailable, write_chart
from .markdown import render_markdown
from .report import EvaluationReport


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_report(report: EvaluationReport | dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``chart.png``, ``chart.svg`` and ``confusion/*.csv``
    into ``out_dir``.

    The chart needs matplotlib (the ``report`` extra). Without it the chart
    is skipped (a chart left there by an earlier run is removed, so the
    folder never shows another report's chart), ``report.md`` says so, and
    the returned ``notes`` say what to install.

    Returns
    -------
    dict
        {"json", "markdown", "chart" (the PNG, or None), "chart_svg" (or None),
        "confusion": [paths], "notes": [str]}.
    """
    import csv
    import io

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
    paths["notes"] = []
    try:
        chart = write_chart(data, out)
    except ChartUnavailable as exc:
        for name in ("chart.png", "chart.svg"):
            (out / name).unlink(missing_ok=True)
        paths["chart"] = paths["chart_svg"] = None
        note = f"chart skipped: {exc}"
        paths["notes"].append(note)
    else:
        paths["chart"], paths["chart_svg"] = chart["png"], chart["svg"]
        note = None
    paths["json"] = out / "report.json"
    atomic_write_bytes(paths["json"], (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())
    paths["markdown"] = out / "report.md"
    atomic_write_bytes(paths["markdown"], render_markdown(data, chart_note=note).encode())
    return paths
