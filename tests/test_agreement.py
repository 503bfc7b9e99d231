"""Metric/listener agreement: hand-computed cases, simulated listeners, P.1401 mapping, ratings CSV."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from perceptlab.analysis.agreement import (
    agreement_report,
    inter_listener_agreement,
    metric_agrees,
    mushra_report,
    triplet_report,
)
from perceptlab.analysis.score_mapping import fit_monotonic_cubic
from perceptlab.listening.answers import Rating, TripletAnswer, post_screen, read_ratings_csv
from perceptlab.analysis.stats import bootstrap_ci
from perceptlab.audio.distort import Recipe, apply
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.listening.create import MushraPlan, TripletPlan, create_mushra_session, create_triplet_session


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def snd(name):
    return {"path": f"/nowhere/{name}.wav", "content_hash": name}


def answer(listener, x, a, b, choice, catch=False, expected=None):
    from perceptlab.listening.designs import TripletItem

    key = TripletItem(snd(x), snd(a), snd(b)).key
    return TripletAnswer(listener, key, snd(x), snd(a), snd(b), choice, catch, expected)


def test_metric_agrees_by_hand():
    d = np.array([[1.0, 2.0], [3.0, 1.0], [2.0, 2.0], [0.5, 0.7]])
    assert metric_agrees(d, ["A", "A", "A", "B"]).tolist() == [1.0, 0.0, 0.5, 0.0]


def test_triplet_report_by_hand():
    # Two listeners, three trials each, plus one catch trial each.
    ans = [
        answer("ann", "x1", "p", "q", "A"), answer("ann", "x2", "r", "s", "B"), answer("ann", "x3", "t", "u", "A"),
        answer("ann", "x1", "x1", "q", "A", catch=True, expected="A"),
        # bob sees x1 with the sides swapped and picks the same sound p; disagrees with ann on x2.
        answer("bob", "x1", "q", "p", "B"), answer("bob", "x2", "r", "s", "A"), answer("bob", "x3", "t", "u", "A"),
        answer("bob", "x1", "q", "x1", "A", catch=True, expected="B"),  # bob fails his only catch trial
    ]
    d = np.array([[1, 2], [1, 2], [2, 2], [0, 2], [2, 1], [1, 2], [2, 2], [2, 0]], dtype=float)
    rep = triplet_report(ans, {"m": d}, n_boot=200, catch_min=0.75)
    assert rep["catch"] == {"ann": {"n": 1, "correct": 1, "accuracy": 1.0},
                            "bob": {"n": 1, "correct": 0, "accuracy": 0.0}}
    assert [e["listener"] for e in rep["excluded_listeners"]] == ["bob"]
    # ann: x1 agrees (1), x2 disagrees (0), x3 ties (0.5) -> 0.5
    assert rep["metrics"]["m"]["pooled"]["agreement"] == pytest.approx(0.5)
    assert rep["metrics"]["m"]["pooled"]["n"] == 3 and list(rep["metrics"]["m"]["per_listener"]) == ["ann"]
    # With bob kept (no screening), pooled over 6 answers: ann 1, 0, .5; bob 1, 1, .5 -> 4/6.
    rep2 = triplet_report(ans, {"m": d}, n_boot=200, catch_min=0.0)
    assert rep2["metrics"]["m"]["pooled"]["agreement"] == pytest.approx(4 / 6)
    assert rep2["metrics"]["m"]["per_listener"]["bob"]["agreement"] == pytest.approx(2.5 / 3)
    # Inter-listener: same choice on x1 (p) and x3 (t), different on x2 -> 2/3.
    inter = inter_listener_agreement(ans, n_boot=100)
    assert inter["agreement"] == pytest.approx(2 / 3)
    assert inter["pairs"] == [{"a": "ann", "b": "bob", "n_shared": 3, "agreement": pytest.approx(2 / 3)}]
    assert rep2["plot"]["ceiling"]["agreement"] == pytest.approx(2 / 3)
    assert rep2["plot"]["bars"][0]["metric"] == "m"


def test_bootstrap_ci_covers_simulated_listeners_known_accuracy():
    rng = np.random.default_rng(0)
    true_acc, n, covered = 0.7, 150, 0
    for k in range(100):
        # A simulated listener who agrees with the metric with probability true_acc.
        metric_says_a = rng.random(n) < 0.5
        agree = rng.random(n) < true_acc
        choices = ["A" if (m == g) else "B" for m, g in zip(metric_says_a, agree)]
        d = np.where(metric_says_a[:, None], [[1.0, 2.0]], [[2.0, 1.0]])
        ans = [TripletAnswer("sim", str(i), snd(f"x{i}"), snd(f"a{i}"), snd(f"b{i}"), c) for i, c in enumerate(choices)]
        p = triplet_report(ans, {"m": d}, n_boot=400, seed=k)["metrics"]["m"]["pooled"]
        covered += p["ci_low"] <= true_acc <= p["ci_high"]
    assert covered >= 90, f"95% CI covered the true accuracy in only {covered} of 100 datasets"


def test_bootstrap_ci_is_seeded():
    v = np.r_[np.ones(30), np.zeros(20)]
    assert bootstrap_ci(v, 500, 3) == bootstrap_ci(v, 500, 3) != bootstrap_ci(v, 500, 4)
    lo, hi = bootstrap_ci(v, 2000, 0)
    assert lo < 0.6 < hi


def hidden(listener, item, score):
    return Rating(listener, item, "hidden_reference", score, {}, {}, role="hidden_reference")


def test_post_screening_rule_at_the_exact_15_percent_boundary():
    def listener(name, n_items, n_low):
        return [hidden(name, f"i{k}", 85.0 if k < n_low else 100.0) for k in range(n_items)]

    ratings = (listener("keep3of20", 20, 3)      # exactly 15 %: kept
               + listener("drop4of20", 20, 4)    # 20 %: excluded
               + listener("keep0", 20, 0)
               + listener("drop1of6", 6, 1))     # 16.7 %: excluded
    ratings.append(hidden("keep90", "i0", 90.0))  # 90 is not below 90
    out = post_screen(ratings)
    assert [e["listener"] for e in out] == ["drop1of6", "drop4of20"]
    assert out[1] == {"listener": "drop4of20", "items": 20, "below_threshold": 4, "fraction": 0.2}


def test_p1401_mapping_is_monotonic():
    x = np.linspace(0.0, 1.0, 12)
    y = 90 - 70 * x + 25 * np.sin(6 * x)  # wiggly: the free cubic is not monotonic
    free = np.polyfit(x, y, 3)
    assert (np.polyval(np.polyder(free), np.linspace(0, 1, 200)) > 0).any()
    fit = fit_monotonic_cubic(x, y, increasing=False)
    assert fit.method == "constrained"
    grid = np.linspace(0, 1, 1001)
    assert (np.diff(fit(grid)) <= 1e-9).all() and (fit.derivative(grid) <= 1e-9).all()
    assert np.sqrt(np.mean((fit(x) - y) ** 2)) < np.std(y)  # still a useful fit
    # A monotonic cloud: the least-squares cubic itself, on the raw scale.
    x2 = np.linspace(2.0, 7.0, 10)
    y2 = 100 - 3 * x2 ** 2 + 0.1 * x2 ** 3
    fit2 = fit_monotonic_cubic(x2, y2)
    assert fit2.method == "unconstrained" and not fit2.increasing
    assert fit2(x2) == pytest.approx(y2, abs=1e-8)
    assert list(fit2.coefficients) == pytest.approx([100, 0, -3, 0.1], abs=1e-6)


def test_mushra_report_by_hand():
    rs = []
    for lst, offs in (("a", 0.0), ("b", 2.0)):
        for item in ("i1", "i2"):
            rs.append(hidden(lst, item, 100.0))
            for k, cond in enumerate(["c1", "c2", "c3", "c4"]):
                rs.append(Rating(lst, item, cond, 80 - 20 * k + offs, {}, {}))
    rs.append(hidden("c", "i1", 50.0))  # listener c fails the hidden reference on 1 of 1 items
    rs.append(Rating("c", "i1", "c1", 0.0, {}, {}))
    dist = {"lin": {(i, f"c{k + 1}"): 0.1 * k for i in ("i1", "i2") for k in range(4)}}
    rep = mushra_report(rs, dist)
    assert [e["listener"] for e in rep["excluded_listeners"]] == ["c"]
    m = rep["metrics"]["lin"]
    assert m["n"] == 8 and m["pearson"] == pytest.approx(-1.0) and m["spearman"] == pytest.approx(-1.0)
    assert m["rmse_raw"] == pytest.approx(0.0, abs=1e-9) and m["mapping"]["increasing"] is False
    cond = {(c["item"], c["condition"]): c for c in rep["conditions"]}
    assert cond[("i1", "c1")]["mean_score"] == pytest.approx(81.0) and cond[("i1", "c1")]["n"] == 2
    assert len(rep["plot"]["scatter"]["lin"]["x"]) == 8 and len(rep["plot"]["scatter"]["lin"]["fit_x"]) == 50


def make_ratings_folder(tmp_path):
    """A reference and graded versions of it, with scores that fall with the degradation."""
    rate = 22050
    rng = np.random.default_rng(1)
    t = np.arange(rate) / rate
    ref = (0.2 * sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate([220, 550, 1300, 3100, 6000]))
           + 0.01 * rng.standard_normal(rate)).astype(np.float32)
    folder = tmp_path / "rated"
    (folder / "deg").mkdir(parents=True)
    sf.write(folder / "ref.wav", ref, rate)
    conds = {"n30": "white_noise:snr_db=30", "n15": "white_noise:snr_db=15", "n5": "white_noise:snr_db=5",
             "n0": "white_noise:snr_db=0", "lp": "lowpass:cutoff_hz=1000"}
    scores = {"n30": 90, "n15": 70, "n5": 45, "n0": 25, "lp": 30}
    for name, r in conds.items():
        sf.write(folder / "deg" / f"{name}.wav", apply(Recipe.parse(r), ref, rate), rate)
    lines = ["reference,degraded,score,listener"]
    for lst, off in (("l1", 0), ("l2", 4)):
        lines.append(f"ref.wav,ref.wav,{100 - off},{lst}")
        lines += [f"ref.wav,deg/{n}.wav,{s - off},{lst}" for n, s in scores.items()]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_ratings_csv_parsing_and_errors(tmp_path):
    folder = make_ratings_folder(tmp_path)
    rs = read_ratings_csv(folder / "ratings.csv")
    assert len(rs) == 12 and sum(r.role == "hidden_reference" for r in rs) == 2
    assert rs[1].condition == "deg/n30.wav" and rs[1].score == 90 and rs[1].line == 3
    # Headerless, no listener column.
    (folder / "plain.csv").write_text("ref.wav,deg/n5.wav,40\nref.wav,deg/n0.wav,20\n")
    assert [r.listener for r in read_ratings_csv(folder / "plain.csv")] == ["(unnamed)"] * 2
    bad = {"ref.wav,deg/n5.wav,forty\n": "bad.csv:1: score 'forty' is not a number",
           "reference,degraded,score\nref.wav,deg/n5.wav,40\nref.wav,deg/missing.wav,3\n":
               "bad.csv:3: degraded file 'deg/missing.wav' not found",
           "reference,degraded,score\nref.wav,deg/n5.wav\n": "bad.csv:2: expected reference,degraded,score",
           "reference,degraded,score\nref.wav,deg/n5.wav,nan\n": "bad.csv:2: score 'nan' is not finite",
           "reference,degraded,score\n": "no ratings"}
    for text, msg in bad.items():
        (folder / "bad.csv").write_text(text)
        with pytest.raises(ValueError, match=msg.replace(".", r"\.").replace("(", r"\(")):
            read_ratings_csv(folder / "bad.csv")


def test_external_ratings_end_to_end_through_the_cli(tmp_path):
    folder = make_ratings_folder(tmp_path)
    out = subprocess.run([sys.executable, "-m", "perceptlab.cli", "agreement", "--ratings", folder / "ratings.csv",
                          "--json", "--library", tmp_path / "absent.sqlite", "--boot", "100"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["version"] == 1 and rep["metrics"] == ["mse", "nlpd", "msssim"]
    r = rep["ratings"]
    assert r["n_ratings"] == 12 and r["n_items"] == 1 and r["listeners"] == ["l1", "l2"]
    assert not r["excluded_listeners"] and r["screening"]["applied"] is False
    for name in ("mse", "nlpd", "msssim"):
        m = r["metrics"][name]
        assert m["n"] == 5 and m["mapping"]["method"] in ("unconstrained", "constrained")
        # P.1401: squared errors over N - 4 degrees of freedom for the 4-parameter mapping
        assert m["rmse_raw"] > 0 and m["rmse"] == pytest.approx(m["rmse_raw"] * np.sqrt(5 / (5 - 4)))
        assert m["spearman"] < 0  # more distortion, lower scores
    noise = [c for c in r["conditions"] if c["condition"].startswith("deg/n")]
    d = {c["condition"]: c["distances"]["nlpd"] for c in noise}
    assert d["deg/n30.wav"] < d["deg/n15.wav"] < d["deg/n5.wav"] < d["deg/n0.wav"]
    (folder / "bad.csv").write_text("ref.wav,deg/n5.wav,40\nref.wav,deg/n0.wav,oops\n")
    bad = subprocess.run([sys.executable, "-m", "perceptlab.cli", "agreement", "--ratings", folder / "bad.csv",
                          "--library", tmp_path / "absent.sqlite"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and f"{folder / 'bad.csv'}:2: score 'oops' is not a number" in bad.stderr


def test_agreement_report_on_library_sessions(tmp_path, clip_tree):
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree])
        chosen = {}  # (listener, trial key) -> the sound picked; A and B are shuffled per session
        for name in ("ann", "bob"):
            s = create_triplet_session(lib, name, TripletPlan(n_trials=6, n_catch=1, seed=1))
            for p in range(s.n_trials):
                sp = s.spec(p)
                choice = sp["expected"] or ("A" if p % 2 else "B")
                s.answer(p, choice)
                if not sp.get("catch"):
                    chosen[name, sp["key"]] = sp["a" if choice == "A" else "b"]["content_hash"]
        m = create_mushra_session(lib, "cat", MushraPlan(n_items=2, recipes=("white_noise:snr_db=10",),
                                                          stimuli_dir=str(tmp_path / "stim")))
        for p in range(m.n_trials):
            spec = m.spec(p)
            scores = {c["label"]: {"hidden_reference": 100, "condition": 30}.get(c["role"], 50)
                      for c in spec["conditions"]}
            m.answer(p, {"scores": scores, "played": list(scores)})
        rep = agreement_report(lib, metrics=["mse", "nlpd"], n_boot=100)
    t = rep["triplet"]
    assert t["listeners"] == ["ann", "bob"] and t["n_scored"] == 12 and not t["excluded_listeners"]
    assert set(t["metrics"]) == {"mse", "nlpd"}
    # Both listeners judged the same 6 trials: agreement is the share where they picked the same sound.
    keys = sorted({k for _, k in chosen})
    same = [chosen["ann", k] == chosen["bob", k] for k in keys]
    assert len(keys) == 6 and 0 < sum(same) < 6  # neither trivially 0 nor 1
    assert t["inter_listener"]["pairs"] == [{"a": "ann", "b": "bob", "n_shared": 6,
                                             "agreement": pytest.approx(np.mean(same))}]
    assert t["inter_listener"]["agreement"] == pytest.approx(np.mean(same))
    mu = rep["mushra"]
    assert mu["n_items"] == 2 and mu["n_conditions"] == 4 and mu["n_item_conditions"] == 8
    assert mu["metrics"]["nlpd"]["n"] == 6
    assert json.loads(json.dumps(rep)) == rep  # plain JSON
