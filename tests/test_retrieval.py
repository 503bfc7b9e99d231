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
