"""Listening sessions on a real library: designs, answers, resume after a kill, export, CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.listening.create import MushraPlan, TripletPlan, create_mushra_session, create_triplet_session
from perceptlab.listening.designs import (
    HIDDEN_REFERENCE,
    MUSHRA_BANDS,
    MushraItem,
    band_of,
    disagreement,
    select_active,
    triplets_from_clips,
)
from perceptlab.listening.export import export_session
from perceptlab.listening.session import Session, SessionError, Trial, list_sessions
from conftest import run_cli


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def lib(tmp_path, clip_tree):
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree])
        yield lib


def test_triplet_session_from_clips(lib):
    s = create_triplet_session(lib, "alice", TripletPlan(n_trials=6, n_catch=2, seed=1))
    assert s.n_trials == 8 and s.config["n_catch"] == 2 and s.design == "triplet"
    assert s.next_position() == 0 and s.progress().answered == 0
    t = s.trial(0)
    assert isinstance(t, Trial) and t.prompt and t.choices == ("A", "B") and t.scale is None
    assert [x.label for x in t.sounds] == ["X", "A", "B"] and all(os.path.exists(x.path) for x in t.sounds)
    # Roles stay out of what the GUI gets: a Trial has labels and paths only.
    assert {f.name for f in dataclasses.fields(t.reference)} == {"label", "path"}
    with pytest.raises(SessionError, match="choice must be one of A, B"):
        s.answer(0, {"choice": "C"})
    with pytest.raises(SessionError, match="0..7"):
        s.answer(8, "A")
    with pytest.raises(SessionError, match="unknown answer keys"):
        s.answer(0, {"choice": "A", "score": 3})
    assert s.answer(0, "A") == {"choice": "A"}
    assert s.answer(1, {"choice": "B", "rt_ms": 812, "played": ["A", "B", "X"]})["played"] == ["X", "A", "B"]
    assert s.next_position() == 2 and s.trial(0).answer == {"choice": "A"}
    s.answer(0, "B")  # answering again replaces (a GUI "back" button)
    assert s.trial(0).answer == {"choice": "B"} and s.progress().answered == 2
    with pytest.raises(SessionError, match="unanswered"):
        s.complete()
    for p in range(2, 8):
        s.answer(p, "A")
    assert s.next_position() is None and s.progress().done
    s.complete()
    assert Session.open(lib, s.id).status == "completed"
    with pytest.raises(SessionError, match="completed"):
        s.answer(0, "A")
    assert [i.id for i in list_sessions(lib)] == [s.id]


def test_same_items_for_every_listener_in_their_own_order(lib):
    plan = TripletPlan(n_trials=10, n_catch=2, seed=3)
    a = create_triplet_session(lib, "alice", plan)
    b = create_triplet_session(lib, "bob", plan)
    keys_a = [a.spec(p)["key"] for p in range(a.n_trials)]
    keys_b = [b.spec(p)["key"] for p in range(b.n_trials)]
    assert sorted(keys_a) == sorted(keys_b) and keys_a != keys_b
    assert a.config["listener_seed"] != b.config["listener_seed"]
    # Catch trials: the expected side holds the copy of X.
    for s in (a, b):
        for p in range(s.n_trials):
            sp = s.spec(p)
            if sp["catch"]:
                chosen = sp["a"] if sp["expected"] == "A" else sp["b"]
                other = sp["b"] if sp["expected"] == "A" else sp["a"]
                assert chosen["content_hash"] == sp["x"]["content_hash"] != other["content_hash"]
    sides = {a.spec(p)["key"]: a.spec(p)["a"]["path"] for p in range(a.n_trials) if not a.spec(p)["catch"]}
    flipped = sum(sides[b.spec(p)["key"]] != b.spec(p)["a"]["path"] for p in range(b.n_trials) if not b.spec(p)["catch"])
    assert 0 < flipped < 10  # sides randomised per listener


def test_must_play_rule_is_enforced_when_set(lib):
    s = create_triplet_session(lib, "carol", TripletPlan(n_trials=3, n_catch=0, must_play=True))
    assert s.trial(0).must_play
    with pytest.raises(SessionError, match="not played: B"):
        s.answer(0, {"choice": "A", "played": ["A"]})
    s.answer(0, {"choice": "A", "played": ["A", "B"]})


def test_mushra_session_with_generated_stimuli(lib, tmp_path):
    ids = tuple(c.id for c in lib.clips()[:2])
    plan = MushraPlan(clip_ids=ids, recipes=("white_noise:snr_db=20", "clip:threshold=0.3"),
                      stimuli_dir=str(tmp_path / "stim"), seed=5)
    s = create_mushra_session(lib, "dave", plan)
    assert s.n_trials == 2 and s.must_play
    t = s.trial(0)
    assert t.reference.label == "reference" and t.labels == ("1", "2", "3", "4", "5")
    assert t.scale.bands == MUSHRA_BANDS and (t.scale.minimum, t.scale.maximum) == (0, 100)
    spec = s.spec(0)
    roles = {c["role"]: c for c in spec["conditions"]}
    assert set(roles) == {HIDDEN_REFERENCE, "low_anchor", "mid_anchor", "condition"}
    assert roles[HIDDEN_REFERENCE]["path"] == spec["reference"]["path"]
    assert roles["low_anchor"]["condition"] == "lowpass:cutoff_hz=3500"
    assert roles["mid_anchor"]["condition"] == "lowpass:cutoff_hz=7000"
    scores = {lab: 50 for lab in t.labels}
    with pytest.raises(SessionError, match="play every condition"):
        s.answer(0, {"scores": scores})
    with pytest.raises(SessionError, match="missing 5"):
        s.answer(0, {"scores": {k: v for k, v in scores.items() if k != "5"}, "played": list(t.labels)})
    with pytest.raises(SessionError, match="0..100"):
        s.answer(0, {"scores": dict(scores, **{"2": 101}), "played": list(t.labels)})
    stored = s.answer(0, {"scores": dict(scores, **{"3": 100}), "played": list(t.labels)})
    assert stored["scores"]["3"] == 100.0
    # Another listener: same items, own condition order; rendering is reused.
    n_stim = lib.conn.execute("SELECT COUNT(*) FROM stimuli").fetchone()[0]
    s2 = create_mushra_session(lib, "erin", plan)
    assert lib.conn.execute("SELECT COUNT(*) FROM stimuli").fetchone()[0] == n_stim == 2 * 5
    order = lambda sess: [[c["condition"] for c in sess.spec(p)["conditions"]] for p in range(2)]  # noqa: E731
    assert order(s) != order(s2)
    assert band_of(80) == "Excellent" and band_of(79.9) == "Good" and band_of(0) == "Bad"


def test_mushra_item_limits():
    snd = {"path": "x", "condition": "c", "role": "condition"}
    with pytest.raises(ValueError, match="1 to 12"):
        MushraItem("x", snd, tuple(dict(snd, condition=str(i)) for i in range(13)))
    with pytest.raises(ValueError, match="duplicate"):
        MushraItem("x", snd, (snd, snd))


def test_too_many_mushra_conditions_are_refused(lib, tmp_path):
    recipes = tuple(f"white_noise:snr_db={v}" for v in range(10, 20))
    with pytest.raises(ValueError, match="at most 12"):
        create_mushra_session(lib, "x", MushraPlan(n_items=1, recipes=recipes, stimuli_dir=str(tmp_path)))


def test_disagreement_and_active_selection():
    d_xa = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 3.0], [1.0, 1.0, 2.0]])  # 3 metrics x 3 items
    d_xb = np.array([[2.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    split, spread, score = disagreement(d_xa, d_xb)
    # Item 0: metrics 0 and 2 vote A, metric 1 votes B -> 1/3 in the minority.
    # Item 1: all three vote A. Item 2: every metric ties.
    assert split.tolist() == pytest.approx([1 / 3, 0, 0])
    assert spread[0] == pytest.approx((1 / 3 - (-1 / 3)) / 2)
    assert score[0] > score[1] == score[2] == 0
    from perceptlab.listening.designs import TripletItem

    pool = [TripletItem({"path": f"x{i}"}, {"path": f"a{i}"}, {"path": f"b{i}"}) for i in range(3)]
    chosen = select_active(pool, {"m0": np.stack([d_xa[0], d_xb[0]], 1), "m1": np.stack([d_xa[1], d_xb[1]], 1),
                                  "m2": np.stack([d_xa[2], d_xb[2]], 1)}, 2)
    assert [c.a["path"] for c in chosen] == ["a0", "a1"] and chosen[0].detail["votes"]["m1"] == "b"
    with pytest.raises(ValueError, match="two metrics"):
        select_active(pool, {"m0": np.stack([d_xa[0], d_xb[0]], 1)}, 1)


def test_active_session_picks_the_most_contested_triplets(lib):
    from perceptlab.analysis.agreement import triplet_distances

    plan = TripletPlan(n_trials=4, active=True, pool_factor=5, metrics=("mse", "nlpd"), n_catch=1, seed=2)
    s = create_triplet_session(lib, "fay", plan)
    pool = triplets_from_clips(lib, 20, 2)
    d = triplet_distances(lib, pool, ["mse", "nlpd"])
    _, _, score = disagreement(np.stack([d["mse"][:, 0], d["nlpd"][:, 0]]), np.stack([d["mse"][:, 1], d["nlpd"][:, 1]]))
    best = sorted(score, reverse=True)[:4]
    got = sorted((s.spec(p)["active_score"] for p in range(s.n_trials) if not s.spec(p)["catch"]), reverse=True)
    assert got == pytest.approx(best)
    assert s.config["metrics"] == ["mse", "nlpd"]


def test_a_killed_session_resumes_with_every_answer_kept(lib, tmp_path):
    s = create_triplet_session(lib, "gus", TripletPlan(n_trials=30, n_catch=0, seed=4))
    script = textwrap.dedent(f"""
        import sys, time
        from perceptlab.library.store import Library
        from perceptlab.listening.session import Session
        lib = Library({str(lib.path)!r})
        s = Session.open(lib, {s.id})
        for pos in range(s.n_trials):
            s.answer(pos, "A" if pos % 3 else "B")
            print(pos, flush=True)
            if pos >= 4:
                time.sleep(0.05)
        time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as proc:
        try:
            seen = -1
            while seen < 6:
                line = proc.stdout.readline()
                assert line, "the answering process died"
                seen = int(line)
            os.kill(proc.pid, signal.SIGKILL)  # mid-run: it keeps answering until killed
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with Library(lib.path) as again:
        r = Session.open(again, s.id)
        n = r.progress().answered
        assert n >= 7 and r.next_position() == n  # resume exactly after the last committed answer
        for p in range(n):
            assert r.trial(p).answer == {"choice": "A" if p % 3 else "B"}
        assert r.answered_trials()[-1].position == n - 1


def test_export_csv_and_json_with_provenance(lib, tmp_path):
    plan = MushraPlan(n_items=1, recipes=("mp3:bitrate_kbps=32",), stimuli_dir=str(tmp_path / "stim"))
    s = create_mushra_session(lib, "hal", plan)
    t = s.trial(0)
    s.answer(0, {"scores": {lab: 10 * i for i, lab in enumerate(t.labels)}, "played": list(t.labels)})
    out_json, = export_session(lib, s.id, tmp_path / "out" / "s.json")
    data = json.loads(out_json.read_text())
    assert data["format"] == "perceptlab-listening-session" and data["session"]["listener"] == "hal"
    prov = data["provenance"]
    assert prov["feature_config_hash"] == s.config["feature_config_hash"]
    recipes = {v["label"] for v in prov["stimuli"].values()}
    assert {"identity", "lowpass:cutoff_hz=3500", "lowpass:cutoff_hz=7000", "mp3:bitrate_kbps=32"} == recipes
    assert all(v["versions"]["perceptlab"] for v in prov["stimuli"].values())
    assert prov["metrics"]["nlpd"]["params"]["sigmas"]
    assert data["trials"][0]["answer"]["scores"]
    out_csv, side = export_session(lib, s.id, tmp_path / "out" / "s.csv")
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["role"] for r in rows} == {HIDDEN_REFERENCE, "low_anchor", "mid_anchor", "condition"}
    mp3 = next(r for r in rows if r["condition"] == "mp3:bitrate_kbps=32")
    assert json.loads(mp3["recipe"])["params"] == {"bitrate_kbps": 32}
    assert json.loads(side.read_text())["provenance"]["stimuli"]
    with pytest.raises(ValueError, match=".json or .csv"):
        export_session(lib, s.id, tmp_path / "s.txt")


def test_listen_cli_create_list_show_export(lib, tmp_path):
    path = lib.path
    out = run_cli("listen", "create", "--library", path, "--design", "triplet", "--listener", "ivy",
                  "--n-trials", 5, "--seed", 9)
    sid = int(out.stdout.strip())
    listed = json.loads(run_cli("listen", "list", "--library", path, "--json").stdout)
    assert listed["sessions"][0] == {**listed["sessions"][0], "id": sid, "design": "triplet", "listener": "ivy",
                                     "n_trials": 6, "n_answered": 0, "status": "open"}
    shown = json.loads(run_cli("listen", "show", sid, "--library", path, "--json").stdout)
    assert shown["progress"] == {"answered": 0, "total": 6, "next_position": 0}
    exported = json.loads(run_cli("listen", "export", sid, "--out", tmp_path / "e.json", "--library", path,
                                  "--json").stdout)
    assert exported["files"] == [str(tmp_path / "e.json")]
    bad = run_cli("listen", "show", 99, "--library", path, check=False)
    assert bad.returncode == 2 and "no listening session with id 99" in bad.stderr
