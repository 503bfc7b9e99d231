"""SQL lives behind the store; ``perceptlab.audio`` is signal processing only."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import pytest

import perceptlab
from perceptlab.library.store import Library

ROOT = Path(perceptlab.__file__).parent
SQL_CALLS = {"execute", "executemany", "executescript"}


def _sql_calls(py: Path) -> list[str]:
    tree = ast.parse(py.read_text(), filename=str(py))
    return [f"{py.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS]


def _imported_modules(py: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(py.read_text(), filename=str(py))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def test_no_sql_outside_the_library_package():
    offenders = [c for py in sorted(ROOT.rglob("*.py")) if py.relative_to(ROOT).parts[0] != "library"
                 for c in _sql_calls(py)]
    assert not offenders, f"raw SQL outside perceptlab/library: {offenders}"


def test_audio_imports_neither_the_library_nor_higher_layers():
    higher = ("perceptlab.library", "perceptlab.analysis", "perceptlab.listening", "perceptlab.qt",
              "perceptlab.cli")
    offenders = [f"{py.relative_to(ROOT)}: {m}" for py in sorted((ROOT / "audio").rglob("*.py"))
                 for m in _imported_modules(py) if m.startswith(higher)]
    assert not offenders, offenders


def test_file_hash_is_one_function():
    from perceptlab.library import hashing, store

    assert store.file_hash is hashing.file_hash


def test_stimulus_rows_round_trip(tmp_path):
    info = {"kind": "gain", "params": {"db": 3.0}, "seed": 0, "rate": 22050}
    with Library(tmp_path / "lib.sqlite") as lib:
        a = lib.put_stimulus("ref1", info, tmp_path / "a.flac", "hash-a")
        b = lib.put_stimulus(None, info, tmp_path / "b.flac", "hash-b")
        row = lib.stimulus(a)
        assert row[:2] == (a, "ref1") and row[2] == info and row[3:5] == (str(tmp_path / "a.flac"), "hash-a")
        assert [r[0] for r in lib.stimuli()] == [a, b]
        assert [r[0] for r in lib.stimuli("ref1")] == [a]
        with pytest.raises(KeyError, match=rf"no stimulus with id {b + 1} in .*lib\.sqlite"):
            lib.stimulus(b + 1)


def test_meta_items_match_the_prefix_exactly(tmp_path):
    with Library(tmp_path / "lib.sqlite") as lib:
        lib.set_meta("calibrated_metric:b", "2")
        lib.set_meta("calibrated_metric:a", "1")
        lib.set_meta("calibratedXmetric:c", "3")  # '_' is a LIKE wildcard: must not match
        lib.set_meta("CALIBRATED_METRIC:d", "4")  # LIKE ignores case: must not match
        assert lib.meta_items("calibrated_metric:") == [("calibrated_metric:a", "1"), ("calibrated_metric:b", "2")]
        lib.delete_meta("calibrated_metric:a")
        assert lib.meta_items("calibrated_metric:") == [("calibrated_metric:b", "2")]


def test_listening_rows_and_durable_answers(tmp_path):
    path = tmp_path / "lib.sqlite"
    with Library(path) as lib:
        with lib.transaction():
            sid = lib.add_listening_session("triplet", "ann", {}, "open", 1.0)
            lib.add_listening_trials(sid, [(0, {"k": 0}), (1, {"k": 1})])
            lib.set_listening_config(sid, {"seed": 3})
        assert lib.listening_session(sid) == (sid, "triplet", "ann", {"seed": 3}, "open", 1.0, None)
        assert lib.listening_session(sid + 1) is None
        assert lib.count_listening_trials(sid) == 2 and lib.listening_spec(sid, 1) == {"k": 1}
        before = lib.conn.execute("PRAGMA synchronous").fetchone()[0]
        lib.put_listening_answer(sid, 1, {"choice": "A"}, 5.0)
        assert lib.conn.execute("PRAGMA synchronous").fetchone()[0] == before
        # Committed: another connection sees it.
        other = sqlite3.connect(path)
        try:
            stored = other.execute("SELECT answer FROM listening_answers WHERE session_id = ?", (sid,)).fetchone()
        finally:
            other.close()
        assert json.loads(stored[0]) == {"choice": "A"}
        assert lib.first_unanswered(sid) == 0 and lib.count_listening_answers(sid) == 1
        assert lib.listening_trials(sid) == [(0, {"k": 0}, None, None), (1, {"k": 1}, {"choice": "A"}, 5.0)]
        lib.set_listening_status(sid, "completed", 9.0)
        assert lib.listening_status(sid) == ("completed", 9.0)
        assert lib.listening_sessions("mushra") == []
        assert lib.listening_sessions() == [(sid, "triplet", "ann", "completed", 1.0, 9.0, 2, 1, {"seed": 3})]
        lib.delete_listening_session(sid)
        assert lib.listening_sessions() == [] and lib.count_listening_trials(sid) == 0
        assert lib.count_listening_answers(sid) == 0
