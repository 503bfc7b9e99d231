"""Export listening sessions with full provenance.

JSON (``.json``)::

    {"format": "perceptlab-listening-session", "version": 1,
     "session": {"id", "design", "listener", "status", "created_at", "ended_at", "config"},
     "provenance": {
         "perceptlab_version", "exported_at", "library",
         "feature_config": {... FeatureConfig fields ...}, "feature_config_hash",
         "stimuli": {"<id>": {recipe, rate, format, reference, versions, path, content_hash}},
         "metrics": {"<name>": {"display_name", "input", "params"}},
         "embedding_checkpoints": [{"name", "model_hash", "path", "file_hash"}]},
     "trials": [{"position", "spec", "answer", "answered_at"}]}

``spec`` holds every sound with its role and condition (see
:mod:`perceptlab.listening.designs`); ``answer`` is null when unanswered.

CSV (``.csv``): one row per answered trial (triplet) or per rated condition
(MUSHRA), with each sound's path, condition, stimulus id and recipe JSON; the
rest of the provenance goes to ``<name>.provenance.json`` beside it.

Triplet columns: session_id, listener, design, position, trial_key, catch,
expected, x_path, x_condition, x_stimulus_id, x_recipe, a_path, a_condition,
a_stimulus_id, a_recipe, b_path, b_condition, b_stimulus_id, b_recipe,
choice, chosen_condition, played, rt_ms, answered_at.

MUSHRA columns: session_id, listener, design, position, item, item_name,
reference_path, label, condition, role, path, stimulus_id, recipe, score,
band, played, answered_at.
"""

from __future__ import annotations

from perceptlab.atomic import atomic_path, atomic_write_text
from perceptlab.jsonable import jsonable

import csv
import json
import os
import time
from pathlib import Path

from perceptlab.library.stimuli import get_stimulus
from perceptlab.listening.designs import band_of
from perceptlab.listening.session import Session

EXPORT_FORMAT = "perceptlab-listening-session"
EXPORT_VERSION = 1

TRIPLET_COLUMNS = [
    "session_id", "listener", "design", "position", "trial_key", "catch", "expected",
    "x_path", "x_condition", "x_stimulus_id", "x_recipe",
    "a_path", "a_condition", "a_stimulus_id", "a_recipe",
    "b_path", "b_condition", "b_stimulus_id", "b_recipe",
    "choice", "chosen_condition", "played", "rt_ms", "answered_at",
]
MUSHRA_COLUMNS = [
    "session_id", "listener", "design", "position", "item", "item_name", "reference_path", "label",
    "condition", "role", "path", "stimulus_id", "recipe", "score", "band", "played", "answered_at",
]


def _sounds(spec: dict) -> list[dict]:
    if spec["design"] == "triplet":
        return [spec["x"], spec["a"], spec["b"]]
    return [spec["reference"], *spec["conditions"]]


def provenance(library, session: Session) -> dict:
    """Everything needed to interpret and reproduce a session's stimuli and analysis."""
    from perceptlab import __version__
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.library.hashing import file_hash
    from perceptlab.metrics.registry import list_metrics

    try:
        from perceptlab.models.embedding_metric import register_library_embeddings

        register_library_embeddings(library)
    except ImportError:
        pass
    try:
        from perceptlab.analysis.calibration import register_saved_variants

        register_saved_variants(library)
    except Exception:  # a damaged saved variant must not stop an export
        pass
    stimuli = {}
    for t in session.answered_trials(include_unanswered=True):
        for s in _sounds(t.spec):
            sid = s.get("stimulus_id")
            if sid is not None and str(sid) not in stimuli:
                try:
                    st = get_stimulus(library, int(sid))
                    stimuli[str(sid)] = {**st.info, "path": st.path, "content_hash": st.content_hash}
                except KeyError:
                    stimuli[str(sid)] = None
    cfg_dict = session.config.get("feature_config") or FeatureConfig().to_dict()
    cfg_hash = session.config.get("feature_config_hash") or FeatureConfig.from_dict(cfg_dict).hash
    checkpoints = []
    for m in library.models():
        p = Path(m["path"])
        checkpoints.append({"name": m["name"], "model_hash": m["model_hash"], "path": m["path"],
                            "file_hash": file_hash(p) if p.is_file() else None})
    return {
        "perceptlab_version": __version__,
        "exported_at": time.time(),
        "library": str(library.path),
        "feature_config": cfg_dict,
        "feature_config_hash": cfg_hash,
        "stimuli": stimuli,
        "metrics": {m.name: {"display_name": m.display_name, "input": m.input_kind,
                             "params": jsonable(dict(m.params))} for m in list_metrics()},
        "embedding_checkpoints": checkpoints,
    }


def session_export(library, session_id: int) -> dict:
    """The JSON export of a session, as a dict."""
    s = Session.open(library, session_id)
    info = s.info()
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session": {"id": s.id, "design": s.design, "listener": s.listener, "status": info.status,
                    "created_at": s.created_at, "ended_at": info.ended_at, "n_trials": s.n_trials,
                    "n_answered": info.n_answered, "config": s.config},
        "provenance": provenance(library, s),
        "trials": [{"position": t.position, "spec": t.spec, "answer": t.answer, "answered_at": t.answered_at}
                   for t in s.answered_trials(include_unanswered=True)],
    }


def _recipe(sound: dict) -> str:
    r = sound.get("recipe")
    return json.dumps(r, sort_keys=True) if r else ""


def csv_rows(data: dict) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the CSV export, from :func:`session_export`'s dict."""
    sess = data["session"]
    rows = []
    if sess["design"] == "triplet":
        for t in data["trials"]:
            if t["answer"] is None:
                continue
            sp, ans = t["spec"], t["answer"]
            chosen = sp["a"] if ans["choice"] == "A" else sp["b"]
            row = {"session_id": sess["id"], "listener": sess["listener"], "design": "triplet",
                   "position": t["position"], "trial_key": sp["key"], "catch": int(bool(sp.get("catch"))),
                   "expected": sp.get("expected") or "", "choice": ans["choice"],
                   "chosen_condition": chosen.get("condition", ""), "played": " ".join(ans.get("played", [])),
                   "rt_ms": ans.get("rt_ms", ""), "answered_at": t["answered_at"]}
            for side in ("x", "a", "b"):
                snd = sp[side]
                row.update({f"{side}_path": snd["path"], f"{side}_condition": snd.get("condition", ""),
                            f"{side}_stimulus_id": snd.get("stimulus_id") or "", f"{side}_recipe": _recipe(snd)})
            rows.append(row)
        return TRIPLET_COLUMNS, rows
    for t in data["trials"]:
        if t["answer"] is None:
            continue
        sp, ans = t["spec"], t["answer"]
        for c in sp["conditions"]:
            score = ans["scores"][c["label"]]
            rows.append({"session_id": sess["id"], "listener": sess["listener"], "design": "mushra",
                         "position": t["position"], "item": sp["key"], "item_name": sp.get("name", ""),
                         "reference_path": sp["reference"]["path"], "label": c["label"],
                         "condition": c["condition"], "role": c.get("role", ""), "path": c["path"],
                         "stimulus_id": c.get("stimulus_id") or "", "recipe": _recipe(c), "score": score,
                         "band": band_of(score), "played": " ".join(ans.get("played", [])),
                         "answered_at": t["answered_at"]})
    return MUSHRA_COLUMNS, rows


def export_session(library, session_id: int, out: str | os.PathLike) -> list[Path]:
    """Write a session to ``out`` (``.json``, or ``.csv`` plus ``.provenance.json``).

    Returns the files written. Files are written atomically (temp + rename).
    """
    out = Path(out).expanduser()
    suffix = out.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ValueError(f"{out}: export to a .json or .csv file")
    data = session_export(library, session_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if suffix == ".json":
        _write_text(out, json.dumps(data, indent=2, sort_keys=False))
        return [out]
    cols, rows = csv_rows(data)
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    written.append(out)
    side = out.with_name(out.stem + ".provenance.json")
    _write_text(side, json.dumps({"format": EXPORT_FORMAT + "-provenance", "version": EXPORT_VERSION,
                                  "session": data["session"], "provenance": data["provenance"],
                                  "csv": out.name}, indent=2))
    written.append(side)
    return written


def _write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text + "\n")
