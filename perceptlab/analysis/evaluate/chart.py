"""The report's chart: clip-level weighted F1 per method, mean +- std over folds, as bars.

:func:`chart_rows` reads the bars from a report dict (the GUI draws the same
rows with pyqtgraph); :func:`chart_figure` and :func:`write_chart` draw them
with matplotlib, imported only when a chart is drawn. matplotlib is the
optional ``report`` extra: without it :func:`write_chart` raises
:class:`ChartUnavailable`, whose message says what to install.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from perceptlab.atomic import atomic_write_bytes

#: Bar colours (RGB, 0-255) by method kind (see :mod:`perceptlab.analysis.evaluate`).
KIND_COLORS = {
    "knn": (150, 170, 200),
    "knn-cv": (70, 110, 170),
    "logreg-ae": (225, 125, 40),
    "logreg-logmel": (130, 90, 170),
    "majority": (160, 160, 160),
}
OTHER_COLOR = (120, 120, 120)

#: What each kind is, for the chart's legend.
KIND_LABELS = {
    "knn": "k-NN, fixed k",
    "knn-cv": "k-NN, k by inner CV",
    "logreg-ae": "logistic regression, encoder",
    "logreg-logmel": "logistic regression, log-mel stats",
    "majority": "majority class",
}

INSTALL_HINT = "pip install 'perceptlab[report]'"


class ChartUnavailable(ImportError):
    """matplotlib is not installed, so no chart file can be drawn."""


def chart_rows(data: dict) -> list[dict]:
    """The chart's bars, best method first.

    Returns
    -------
    list of dict
        ``{"label", "value", "err", "kind"}``: the method's name, its
        clip-level weighted F1 (mean over folds), the sample std over folds
        (0 when undefined) and its kind (the colour).
    """
    rows = []
    for m in sorted(data["methods"], key=lambda m: m["rank"]):
        f1 = m["clip"]["f1_weighted"]
        rows.append({"label": m["name"], "value": float(f1["mean"] or 0.0), "err": float(f1.get("std") or 0.0),
                     "kind": m["kind"]})
    return rows


def chart_title(data: dict) -> str:
    return f"Weighted F1 per clip, mean ± std over {data['config']['folds']} folds"


def chart_figure(rows: list[dict], title: str = ""):
    """A matplotlib :class:`~matplotlib.figure.Figure`: one horizontal bar per row, top to bottom,
    with a whisker of +- ``err`` and the value written beside it.

    Raises
    ------
    ChartUnavailable
        matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ChartUnavailable(f"the chart needs matplotlib, which is not installed: {INSTALL_HINT}") from None

    n = len(rows)
    # No pyplot: a bare Figure has no global state and draws in any thread.
    fig = Figure(figsize=(8.0, 1.5 + 0.36 * max(n, 1)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    y = list(range(n))
    values = [r["value"] for r in rows]
    errs = [r["err"] for r in rows]
    colors = [tuple(c / 255 for c in KIND_COLORS.get(r["kind"], OTHER_COLOR)) for r in rows]
    ax.barh(y, values, height=0.7, color=colors, zorder=2)
    ax.errorbar(values, y, xerr=errs, fmt="none", ecolor="black", elinewidth=1.2, capsize=4, zorder=3)
    for yi, v, e in zip(y, values, errs):
        ax.text(min(v + e, 1.0) + 0.012, yi, f"{v:.3f}", va="center", ha="left", fontsize=9)
    ax.set_yticks(y, [r["label"] for r in rows])
    ax.invert_yaxis()  # best at the top, as in the tables
    ax.set_xlim(0.0, 1.12)
    ax.set_xticks([i / 10 for i in range(11)])
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(axis="x", color="0.88", zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("weighted F1 (clip level)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, loc="left", fontsize=11)
    from matplotlib.patches import Patch

    kinds = [k for k in KIND_COLORS if any(r["kind"] == k for r in rows)]
    if kinds:
        fig.legend(handles=[Patch(color=tuple(c / 255 for c in KIND_COLORS[k]), label=KIND_LABELS[k])
                            for k in kinds], loc="outside lower center", ncols=min(len(kinds), 3),
                   fontsize=8, frameon=False)
    return fig


def write_chart(data: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``chart.png`` and ``chart.svg`` of a report dict into ``out_dir``.

    Returns
    -------
    dict
        {"png": path, "svg": path}.

    Raises
    ------
    ChartUnavailable
        matplotlib is not installed (nothing is written).
    """
    fig = chart_figure(chart_rows(data), chart_title(data))
    out = Path(out_dir).expanduser()
    paths = {"png": out / "chart.png", "svg": out / "chart.svg"}
    from matplotlib import rc_context

    for fmt, path in paths.items():
        buf = io.BytesIO()
        # No date and fixed SVG ids: the same report gives the same chart bytes.
        with rc_context({"svg.hashsalt": "perceptlab-evaluation"}):
            fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None, facecolor="white")
        atomic_write_bytes(path, buf.getvalue())
    return paths
