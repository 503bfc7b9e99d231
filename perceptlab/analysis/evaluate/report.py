"""The report object, :class:`EvaluationReport`: the report's JSON dict and views of it.

A report loaded from ``report.json`` is as good as a fresh one."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import FORMAT
from .markdown import render_text

@dataclass
class EvaluationReport:
    """The result of :func:`run_evaluation`: one JSON-able dict (``data``) and views of it.

    ``data`` is exactly what ``report.json`` holds (see :func:`write_report`
    and the README for the schema), so a report loaded from disk
    (:meth:`load`) is as good as a fresh one.
    """

    data: dict

    def to_json(self) -> dict:
        """The report as plain JSON types (a deep copy)."""
        return copy.deepcopy(self.data)

    @classmethod
    def from_json(cls, data: dict) -> "EvaluationReport":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a perceptlab evaluation report (format {data.get('format')!r})")
        return cls(copy.deepcopy(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvaluationReport":
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        return cls.from_json(json.loads(p.read_text(encoding="utf-8")))

    @property
    def methods(self) -> list[dict]:
        """Methods, best first (by clip-level weighted F1, mean over folds)."""
        return sorted(self.data["methods"], key=lambda m: m["rank"])

    @property
    def verdict(self) -> str:
        return self.data["claim"]["verdict"]

    @property
    def headline(self) -> str:
        """One line: the best method, and how it compares with the best perceptual encoder."""
        return (self.data.get("headline") or {}).get("text", "")

    @property
    def warnings(self) -> list[str]:
        return list(self.data["warnings"])

    def table(self) -> list[dict]:
        """Rows for a table view, best first."""
        rows = []
        for m in self.methods:
            c, s = m["clip"], m["segment"]
            rows.append({
                "rank": m["rank"], "method": m["name"], "kind": m["kind"], "description": m["description"],
                "f1_weighted": c["f1_weighted"]["mean"], "f1_weighted_std": c["f1_weighted"]["std"],
                "f1_weighted_pooled": c["f1_weighted"]["pooled"], "f1_weighted_ci": c["f1_weighted"]["ci"],
                "accuracy": c["accuracy"]["mean"], "accuracy_std": c["accuracy"]["std"],
                "f1_macro": c["f1_macro"]["mean"], "f1_macro_std": c["f1_macro"]["std"],
                "segment_f1_weighted": s["f1_weighted"]["mean"], "segment_f1_weighted_std": s["f1_weighted"]["std"],
                "params": m["params_summary"],
            })
        return rows

    def text(self) -> str:
        """A plain-text summary for the terminal: the headline first, then the table and verdict."""
        return render_text(self.data)
