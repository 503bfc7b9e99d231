"""Listening-test answers read back for analysis, and the screening of listeners.

Triplet answers and MUSHRA scores come out of the library's sessions as
plain records (:class:`TripletAnswer`, :class:`Rating`); external ratings
come from a CSV (:func:`read_ratings_csv`). Screening decides whose answers
count: triplet listeners by their catch trials (:func:`catch_screening`),
MUSHRA listeners by ITU-R BS.1534-3 post-screening (:func:`post_screen`: a
listener who rates the hidden reference below 90 on MORE than 15 % of the
items is excluded; the comparison is on counts, so exactly 15 % is kept).
What the answers say about the metrics is :mod:`perceptlab.analysis.agreement`.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

HIDDEN_REFERENCE = "hidden_reference"

#: BS.1534-3 post-screening: hidden reference below this ...
SCREEN_THRESHOLD = 90.0
#: ... on more than this fraction of the items excludes the listener.
SCREEN_MAX_FRACTION = 0.15
#: Triplet listeners below this catch-trial accuracy are excluded.
CATCH_MIN = 0.75


@dataclass(frozen=True)
class TripletAnswer:
    """One answered triplet trial. ``choice`` is the presented side, "A" or "B"."""

    listener: str
    key: str
    x: dict
    a: dict
    b: dict
    choice: str
    catch: bool = False
    expected: str | None = None
    session_id: int | None = None
    position: int | None = None

    @property
    def chosen(self) -> dict:
        return self.a if self.choice == "A" else self.b


def _session_ids(library, session_ids, design):
    from perceptlab.listening.session import list_sessions

    if session_ids is None:
        return [s.id for s in list_sessions(library, design)]
    return list(session_ids)


def triplet_answers(library, session_ids: Sequence[int] | None = None) -> list[TripletAnswer]:
    """Every answered triplet trial of the given sessions (default: all triplet sessions)."""
    from perceptlab.listening.session import Session

    out = []
    for sid in _session_ids(library, session_ids, "triplet"):
        s = Session.open(library, sid)
        if s.design != "triplet":
            continue
        for t in s.answered_trials():
            sp = t.spec
            out.append(TripletAnswer(s.listener, sp["key"], sp["x"], sp["a"], sp["b"], t.answer["choice"],
                                     bool(sp.get("catch")), sp.get("expected"), s.id, t.position))
    return out


def catch_screening(answers: Sequence[TripletAnswer], catch_min: float = CATCH_MIN) -> tuple[dict, list]:
    """Catch-trial accuracy per listener, and the listeners to exclude.

    Returns ({listener: {"n", "correct", "accuracy"}}, [{"listener", "catch_accuracy", "reason"}]).
    """
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        if a.catch and a.expected:
            stats[a.listener][0] += 1
            stats[a.listener][1] += int(a.choice == a.expected)
    table = {k: {"n": n, "correct": c, "accuracy": c / n} for k, (n, c) in sorted(stats.items())}
    excluded = [{"listener": k, "catch_accuracy": v["accuracy"],
                 "reason": f"chose the copy of X on {v['correct']} of {v['n']} catch trials (< {catch_min:.0%})"}
                for k, v in table.items() if v["accuracy"] < catch_min]
    return table, excluded


@dataclass(frozen=True)
class Rating:
    """One score of one condition by one listener.

    ``item`` identifies the reference (its content hash or path),
    ``condition`` the condition within the item; ``role`` is
    ``"hidden_reference"`` for the hidden reference.
    """

    listener: str
    item: str
    condition: str
    score: float
    reference: dict
    sound: dict
    role: str = "condition"
    item_name: str = ""
    session_id: int | None = None
    line: int | None = None


def mushra_ratings(library, session_ids: Sequence[int] | None = None) -> list[Rating]:
    """Every score of the given MUSHRA sessions (default: all MUSHRA sessions)."""
    from perceptlab.listening.session import Session

    out = []
    for sid in _session_ids(library, session_ids, "mushra"):
        s = Session.open(library, sid)
        if s.design != "mushra":
            continue
        for t in s.answered_trials():
            sp = t.spec
            for c in sp["conditions"]:
                out.append(Rating(s.listener, sp["key"], c["condition"], float(t.answer["scores"][c["label"]]),
                                  sp["reference"], c, c.get("role", "condition"), sp.get("name", ""), s.id))
    return out


def post_screen(ratings: Sequence[Rating], threshold: float = SCREEN_THRESHOLD,
                max_fraction: float = SCREEN_MAX_FRACTION) -> list[dict]:
    """BS.1534-3 post-screening: listeners to exclude.

    A listener is excluded when they rated the hidden reference below
    ``threshold`` on MORE than ``max_fraction`` of the items in which they
    rated it (exactly ``max_fraction`` is kept).

    Returns
    -------
    list of dict
        ``[{"listener", "items", "below_threshold", "fraction"}]`` of the
        excluded listeners, sorted by name.
    """
    per: dict[str, dict[str, bool]] = defaultdict(dict)
    for r in ratings:
        if r.role == HIDDEN_REFERENCE:
            key = f"{r.session_id}:{r.item}"
            per[r.listener][key] = per[r.listener].get(key, False) or r.score < threshold
    out = []
    # Compare in integers where the bound allows it, so 3 of 20 with a 15 %
    # bound is exactly on the boundary (kept), not a rounding accident.
    frac = _ratio(max_fraction)
    for lst in sorted(per):
        n = len(per[lst])
        bad = sum(per[lst].values())
        if bad * frac[1] > frac[0] * n:
            out.append({"listener": lst, "items": n, "below_threshold": bad, "fraction": bad / n})
    return out


def _ratio(x: float) -> tuple[int, int]:
    """``x`` as (numerator, denominator), exact for decimal bounds such as 0.15."""
    from fractions import Fraction

    f = Fraction(str(x)).limit_denominator(10**6)
    return f.numerator, f.denominator


# ---------------------------------------------------------------------------
# External ratings CSV
# ---------------------------------------------------------------------------


def read_ratings_csv(path: str | os.PathLike) -> list[Rating]:
    """Read ``reference,degraded,score[,listener]`` rows.

    A first row whose score column is not a number is a header (its column
    names are then used, in any order; ``listener`` optional). Paths are
    relative to the CSV's folder. A degraded file identical to its reference
    (same path or same bytes) is a hidden reference.

    Raises
    ------
    ValueError
        ``<file>:<line>: <reason>`` for a missing file, a short row, a score
        that is not a finite number, or an empty file.
    """
    from perceptlab.library.store import file_hash

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such ratings file")
    base = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: ratings file is not UTF-8 text") from None
    rows = list(csv.reader(text.splitlines()))
    cols = {"reference": 0, "degraded": 1, "score": 2, "listener": 3}
    start = 0
    first = next(((i, r) for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if first is None:
        raise ValueError(f"{path}: no ratings (the file is empty)")
    i0, head = first
    names = [c.strip().lower() for c in head]
    looks_like_file = bool(head[0].strip()) and (base / Path(head[0].strip()).expanduser()).is_file()
    if len(head) >= 3 and not _is_number(head[2]) and not looks_like_file:
        # A header. Named columns may come in any order; otherwise positional.
        if {"reference", "degraded", "score"} <= set(names):
            cols = {k: names.index(k) for k in ("reference", "degraded", "score")}
            cols["listener"] = names.index("listener") if "listener" in names else -1
        start = i0 + 1
    hashes: dict[Path, str] = {}

    def resolve_file(cell: str, line: int, what: str) -> Path:
        cell = cell.strip()
        if not cell:
            raise ValueError(f"{path}:{line}: empty {what} path")
        p = Path(cell).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise ValueError(f"{path}:{line}: {what} file {cell!r} not found ({p})")
        return p.resolve()

    def chash(p: Path) -> str:
        if p not in hashes:
            hashes[p] = file_hash(p)
        return hashes[p]

    out = []
    need = max(cols["reference"], cols["degraded"], cols["score"]) + 1
    for idx in range(start, len(rows)):
        row = rows[idx]
        line = idx + 1
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) < need:
            raise ValueError(f"{path}:{line}: expected reference,degraded,score[,listener], got {len(row)} column(s)")
        ref = resolve_file(row[cols["reference"]], line, "reference")
        deg = resolve_file(row[cols["degraded"]], line, "degraded")
        cell = row[cols["score"]].strip()
        if not _is_number(cell):
            raise ValueError(f"{path}:{line}: score {cell!r} is not a number")
        score = float(cell)
        if not math.isfinite(score):
            raise ValueError(f"{path}:{line}: score {cell!r} is not finite")
        li = cols["listener"]
        listener = row[li].strip() if 0 <= li < len(row) and row[li].strip() else "(unnamed)"
        ref_sound = {"path": str(ref), "name": ref.name, "content_hash": chash(ref), "clip_id": None,
                     "stimulus_id": None, "condition": "reference", "role": "reference"}
        hidden = ref == deg or chash(ref) == chash(deg)
        rel = row[cols["degraded"]].strip()
        deg_sound = {"path": str(deg), "name": deg.name, "content_hash": chash(deg), "clip_id": None,
                     "stimulus_id": None, "condition": rel, "role": HIDDEN_REFERENCE if hidden else "condition"}
        out.append(Rating(listener, str(ref), rel, score, ref_sound, deg_sound,
                          deg_sound["role"], ref.name, None, line))
    if not out:
        raise ValueError(f"{path}: no ratings (only a header or comments)")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def condition_means(ratings: Sequence[Rating], exclude: Sequence[str] = ()) -> list[dict]:
    """Mean score per (item, condition) over the listeners not excluded, with a t-based 95 % CI half-width."""
    from scipy import stats

    groups: dict[tuple[str, str], list[Rating]] = defaultdict(list)
    skip = set(exclude)
    for r in ratings:
        if r.listener not in skip:
            groups[(r.item, r.condition)].append(r)
    out = []
    for (item, cond), rs in groups.items():
        s = np.array([r.score for r in rs])
        half = None
        if s.size > 1:
            half = float(stats.t.ppf(0.975, s.size - 1) * s.std(ddof=1) / math.sqrt(s.size))
        out.append({"item": item, "item_name": rs[0].item_name, "condition": cond, "role": rs[0].role,
                    "mean_score": float(s.mean()), "ci95": half, "n": int(s.size),
                    "reference": rs[0].reference, "sound": rs[0].sound})
    return out
