"""Leave-one-out retrieval by label: the scoring rule, and the real command on a real library."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from perceptlab.analysis.retrieval import chance_rate, nearest_hits
from perceptlab.analysis.stats import bootstrap_ci
from perceptlab.cli import main
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_nearest_hits_by_hand():
    labels = ["a", "a", "b", "b"]
    d = np.array([[0, 1, 5, 5],
                  [1, 0, 0.5, 5],   # clip 1's nearest is clip 2 (label b): a miss
                  [5, 0.5, 0, 2],
                  [5, 5, 2, 0]], dtype=float)
    hits, prec = nearest_hits(d, labels, k=2)
    assert hits.tolist() == [True, False, False, True]
    np.testing.assert_allclose(prec, [0.5, 0.5, 0.5, 0.5])
    # A tie goes to the lower column: clip 0 sees clips 1 (a) and 2 (b) at the same distance.
    tie = np.array([[0, 1, 1], [1, 0, 3], [1, 3, 0]], dtype=float)
    assert nearest_hits(tie, ["a", "a", "b"], k=1)[0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="NaN or infinite"):
        nearest_hits(np.array([[0, np.nan], [1, 0]]), ["a", "a"])


def test_chance_and_interval():
    # 2 labels of 2 clips: a random other clip shares the label 1 time in 3.
    assert chance_rate(["a", "a", "b", "b"]) == pytest.approx(1 / 3)
    lo, hi = bootstrap_ci(np.array([1.0] * 30 + [0.0] * 10), 2000, seed=0)
    assert lo < 0.75 < hi and 0.55 < lo and hi < 0.9
    assert bootstrap_ci(np.ones(5)) == (1.0, 1.0)


def test_retrieval_command_on_a_real_library(tmp_path, clip_tree, capsys):
    # A copy of a clip counts once (it would be its twin's perfect neighbour).
    shutil.copy(clip_tree / "low" / "low_0.wav", clip_tree / "mid" / "copy.wav")
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [clip_tree])
    assert main(["retrieval", "--library", str(lib_path), "--metric", "mse,logmel-stats",
                 "--bootstrap", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 9 and out["labels"] == {"high": 3, "low": 3, "mid": 3}
    assert [x["reason"] for x in out["left_out"]] == [f"the same audio as {clip_tree / 'low' / 'low_0.wav'}"]
    assert out["chance"] == pytest.approx(0.25)
    # The tones of one label sit within 10% of each other and an octave from the next:
    # both metrics find the same label every time.
    for m in ("mse", "logmel-stats"):
        assert out["metrics"][m]["accuracy"] == 1.0
    assert main(["retrieval", "--library", str(lib_path), "--metric", "mse"]) == 0
    text = capsys.readouterr().out
    assert "leave-one-out 1-NN by label: 9 clips, 3 labels" in text and "MSE" in text


def test_retrieval_refuses_a_library_where_nothing_can_be_found(tmp_path, clip_tree, capsys):
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [clip_tree / "low" / "low_0.wav", clip_tree / "mid" / "mid_0.wav",
                           clip_tree / "high" / "high_0.wav"])
    assert main(["retrieval", "--library", str(lib_path), "--metric", "mse"]) == 2
    assert "every label has one clip" in capsys.readouterr().err


def test_other_sources_only_by_hand():
    # Clips 0 and 1 are one source (two phrases of one instrument): with sources,
    # clip 0 may not find clip 1, and its next nearest (clip 3, label b) is a miss.
    labels = ["a", "a", "a", "b", "b"]
    sources = ["s", "s", "t", "u", "u"]
    d = np.array([[0, 1, 4, 2, 9],
                  [1, 0, 3, 5, 9],
                  [4, 3, 0, 6, 7],
                  [2, 5, 6, 0, 1],
                  [9, 9, 7, 1, 0]], dtype=float)
    assert nearest_hits(d, labels, k=2)[0].tolist() == [True] * 5
    hits, prec = nearest_hits(d, labels, k=2, sources=sources)
    # 0 -> 3 (b), 1 -> 2 (a), 2 -> 1 (a), 3 -> 0 (a), 4 -> 2 (a): source u has no other b clip.
    assert hits.tolist() == [False, True, True, False, False]
    # clip 0's two allowed nearest: 3 (b), 2 (a); clip 3's: 0 (a), 1 (a).
    np.testing.assert_allclose(prec, [0.5, 0.5, 1.0, 0.0, 0.0])
    # A random neighbour from another source: clip 0 sees {2, 3, 4}: 1 of 3 shares "a";
    # clip 2 sees all four others: 2 of 4; clips 3 and 4 see only "a" clips.
    assert chance_rate(labels, sources) == pytest.approx((1 / 3 + 1 / 3 + 2 / 4 + 0 + 0) / 5)
    counts = np.array([3, 2])  # without sources: the closed form over the other clips
    assert chance_rate(labels) == pytest.approx(float((counts / 5 * (counts - 1) / 4).sum()))
    with pytest.raises(ValueError, match="expected 5 sources"):
        nearest_hits(d, labels, sources=sources[:4])


def test_cluster_bootstrap_resamples_sources():
    from perceptlab.analysis.stats import cluster_bootstrap_ci

    rng = np.random.default_rng(3)
    values = rng.random(40) < 0.5
    # One value per group: the same resampling as the plain bootstrap.
    assert cluster_bootstrap_ci(values, np.arange(40), 500, seed=1) == pytest.approx(
        bootstrap_ci(values.astype(float), 500, seed=1))
    # Eight groups of five identical values: far fewer independent draws, so a wider interval.
    grouped = np.repeat(rng.random(8) < 0.5, 5)
    lo_c, hi_c = cluster_bootstrap_ci(grouped, np.repeat(np.arange(8), 5), 2000, seed=0)
    lo_p, hi_p = bootstrap_ci(grouped.astype(float), 2000, seed=0)
    assert hi_c - lo_c > 1.5 * (hi_p - lo_p)
    assert lo_c <= grouped.mean() <= hi_c
    assert cluster_bootstrap_ci(np.ones(6), ["x"] * 6) == (1.0, 1.0)
    with pytest.raises(ValueError, match="expected 6 groups, one per value, got 5"):
        cluster_bootstrap_ci(np.ones(6), ["x"] * 5)


def test_retrieval_other_sources_only_on_a_real_library(tmp_path, capsys):
    # Two "instruments" per label, two phrases (tones a few percent apart) of the first:
    # a phrase's nearest clip is its own instrument's other phrase until that is skipped.
    from conftest import write_clip

    root = tmp_path / "clips"
    for label, tones in {"low": {"p1": (110, 113), "p2": (400,)}, "high": {"p3": (440, 452), "p4": (1500,)}}.items():
        for src, freqs in tones.items():
            for k, f in enumerate(freqs):
                write_clip(root / label / f"{src}-{k}.wav", seconds=1.0, freq=float(f))
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [root])
    base = ["retrieval", "--library", str(lib_path), "--metric", "logmel-stats", "--bootstrap", "100"]
    assert main(base + ["--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(base + ["--json", "--source-pattern", "^p[0-9]"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert "source_pattern" not in plain
    assert other["source_pattern"] == "^p[0-9]" and other["n_sources"] == 4
    # A random other-source neighbour of p1-0 is one of {p2-0, p3-0, p3-1, p4-0}: 1 in 4 is "low";
    # p2-0 may meet all five others, 2 of them "low". Likewise for "high".
    assert other["chance"] == pytest.approx((4 * (1 / 4) + 2 * (2 / 5)) / 6)
    # Plain: every phrase of p1 and p3 finds its twin, p4 finds p3, and only p2 (400 Hz, nearest
    # to p3's 440 Hz) misses. Other sources only: the twins are skipped, and fewer clips find their label.
    assert plain["metrics"]["logmel-stats"]["accuracy"] == pytest.approx(5 / 6)
    assert other["metrics"]["logmel-stats"]["accuracy"] < plain["metrics"]["logmel-stats"]["accuracy"]
    assert other["unmatched"] == 0
    assert main(base + ["--source-pattern", "^p[0-9]"]) == 0
    assert "other sources only: 4 sources by '^p[0-9]'" in capsys.readouterr().out
    # Bad patterns are named.
    assert main(base + ["--source-pattern", "(p"]) == 2
    assert "'(p' is not a regular expression" in capsys.readouterr().err
    assert main(base + ["--source-pattern", "x*"]) == 2
    assert "matches empty text" in capsys.readouterr().err
    assert main(base + ["--source-pattern", "^q"]) == 2
    assert "'^q' matches none of the 6 file names" in capsys.readouterr().err
    # One source for every clip: nothing could be found elsewhere.
    assert main(base + ["--source-pattern", "^p"]) == 2
    assert "no label has clips from two sources by '^p'" in capsys.readouterr().err


def test_a_kept_matrix_cache_scores_a_library_again_without_recomputing(tmp_path, monkeypatch):
    # Plain and other-source scores of one library share its distance matrices.
    from conftest import write_clip

    import perceptlab.analysis.retrieval as retrieval

    root = tmp_path / "clips"
    for label, freqs in {"low": (110, 113, 118), "high": (440, 452, 470)}.items():
        for k, f in enumerate(freqs):
            write_clip(root / label / f"p{k}-{label}.wav", seconds=1.0, freq=float(f))
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [root])
        metrics = ["logmel-stats", "mse"]
        fresh = [retrieval.run_retrieval(lib, metrics, n_boot=50, source_pattern=p) for p in (None, "^p[0-9]")]
        calls = []
        real = retrieval.library_matrix
        monkeypatch.setattr(retrieval, "library_matrix", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
        cache: dict = {}
        kept = [retrieval.run_retrieval(lib, metrics, n_boot=50, source_pattern=p, matrix_cache=cache)
                for p in (None, "^p[0-9]")]
    assert calls == metrics  # once per metric, for the first score only
    for a, b in zip(fresh, kept):
        assert a.to_json() == b.to_json()
    assert kept[0].to_json() != kept[1].to_json()
