"""The classification protocol (``perceptlab evaluate``), for real but small.

Generated tone / noise clips in the GTZAN layout (``genres/<genre>/<genre>.000NN.wav``,
plus one unreadable file) are imported into a real library; tiny autoencoders
(5 stages of 8 channels on 128 x 32 patches) are trained with the real
training engine. Segments are 32 frames with a hop of 16.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from perceptlab.analysis import stats as st
from perceptlab.analysis.evaluate import (
    EvaluateConfig,
    EvaluationReport,
    aggregate_proba,
    aggregate_votes,
    knn_sorted,
    knn_vote,
    make_folds,
    run_evaluation,
    segment_distances,
    write_report,
)
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.tasks import Cancelled

RATE = 22050
GENRES = ("blues", "metal", "noise")
SMALL = dict(folds=3, segment_frames=32, segment_hop=16, c_grid=(1.0,), k_grid=(1, 3), k=3, bootstrap=200)
TINY_MODEL = {
    "epochs": 1, "batch_size": 16, "log_every": 50, "seed": 3, "device": "cpu",
    "data": {"patch_frames": 32, "patch_hop": 16, "val_fraction": 0.25},
    "model": {"channels": [8, 8, 8, 8, 8], "latent_dim": 8},
    "optim": {"lr": 3e-3, "schedule": "constant"},
}


def write_genres(root: Path, per_genre: int = 5, seconds: float = 1.2, offset: int = 0) -> Path:
    """Distinct classes: a low tone, a high tone with harmonics, noise (GTZAN-style names)."""
    import soundfile as sf

    rng = np.random.default_rng(offset)
    for gi, genre in enumerate(GENRES):
        for j in range(per_genre):
            n = int(RATE * (seconds + 0.05 * j))
            t = np.arange(n) / RATE
            f = (150.0, 1200.0)[gi] * (1 + 0.02 * (j + offset)) if gi < 2 else 0.0
            if gi == 2:
                x = 0.25 * rng.standard_normal(n)
            else:
                x = 0.4 * np.sin(2 * np.pi * f * t) + (0.2 * np.sin(4 * np.pi * f * t) if gi == 1 else 0)
                x = x + 0.01 * rng.standard_normal(n)
            p = root / "genres" / genre / f"{genre}.{j + offset:05d}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), x.astype(np.float32), RATE)
    return root / "genres"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evallib")
    genres = write_genres(tmp / "clips")
    (genres / "blues" / "blues.00099.wav").write_bytes(b"RIFF\x00\x00 this is not audio")
    path = tmp / "lib.sqlite"
    with Library(path) as lib:
        summary = import_files(lib, [genres])
    assert len(summary.failed) == 1 and len(summary.imported) == 15
    return path


def train_tiny(library: Path, out: Path, loss: str = "nlpd") -> Path:
    from perceptlab.train import train
    from perceptlab.train.config import config_from_dict

    raw = json.loads(json.dumps(TINY_MODEL))
    raw.update(name=f"tiny-{loss}", loss=loss, out_dir=str(out))
    raw["data"]["library"] = str(library)
    result = train(config_from_dict(raw), handle_signals=False)
    assert result.status == "completed"
    return Path(result.best)


def write_tiny_toml(path: Path) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in TINY_MODEL.items() if not isinstance(v, dict)]
    lines += ['name = "tiny"', 'loss = "mse"']
    for section in ("data", "model", "optim"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in TINY_MODEL[section].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_no_group_split(data: dict) -> None:
    clip_ids = {c["id"] for c in data["clips"]}
    seen_test = []
    for f in data["folds"]:
        train, test = set(f["train_clips"]), set(f["test_clips"])
        assert not train & test, f"fold {f['fold']}: clips on both sides: {train & test}"
        assert train | test == clip_ids
        seen_test += f["test_clips"]
        # every segment of a clip is on the side of its clip
        n_seg = {c["id"]: c["n_segments"] for c in data["clips"]}
        assert f["n_test_segments"] == sum(n_seg[i] for i in test)
        assert f["n_train_segments"] == sum(n_seg[i] for i in train)
    assert sorted(seen_test) == sorted(clip_ids)  # each clip is tested exactly once
    for c in data["clips"]:
        assert c["id"] in next(f["test_clips"] for f in data["folds"] if f["fold"] == c["fold"])


def assert_scores_match_predictions(data: dict) -> None:
    """Every method's clip-level scores (per fold, mean, std, pooled) and confusion matrices are
    scikit-learn's on the predictions the report lists; segment-level pooled scores are those of
    its segment confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    classes = data["library"]["classes"]
    labels = list(range(len(classes)))
    y = np.array([classes.index(c["label"]) for c in data["clips"]])
    fold = np.array([c["fold"] for c in data["clips"]])
    n_folds = len(data["folds"])

    def sk(y_true, y_pred):
        return {"accuracy": accuracy_score(y_true, y_pred),
                "f1_weighted": f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
                "f1_macro": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)}

    for m in data["methods"]:
        pred = np.array(m["predictions"]["clip"])
        assert pred.shape == y.shape, m["name"]
        per_fold = [sk(y[fold == f], pred[fold == f]) for f in range(1, n_folds + 1)]
        pooled = sk(y, pred)
        for s in ("accuracy", "f1_weighted", "f1_macro"):
            v = m["clip"][s]
            want = [f[s] for f in per_fold]
            assert v["folds"] == pytest.approx(want, abs=1e-12), (m["name"], s)
            assert v["mean"] == pytest.approx(np.mean(want), abs=1e-12), (m["name"], s)
            assert v["std"] == pytest.approx(np.std(want, ddof=1), abs=1e-12), (m["name"], s)
            assert v["pooled"] == pytest.approx(pooled[s], abs=1e-12), (m["name"], s)
        assert m["confusion"]["clip"] == confusion_matrix(y, pred, labels=labels).tolist(), m["name"]
        cm = np.array(m["confusion"]["segment"])
        true_seg = np.repeat(np.repeat(labels, len(labels)), cm.ravel())
        pred_seg = np.repeat(np.tile(labels, len(labels)), cm.ravel())
        seg = sk(true_seg, pred_seg)
        for s in ("accuracy", "f1_weighted", "f1_macro"):
            v = m["segment"][s]
            assert v["pooled"] == pytest.approx(seg[s], abs=1e-12), (m["name"], s)
            assert len(v["folds"]) == n_folds and v["mean"] == pytest.approx(np.mean(v["folds"]), abs=1e-12)


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PNG, read back with matplotlib."""
    from matplotlib.image import imread

    img = imread(str(path))  # (H, W, 3 or 4) float in [0, 1]
    return np.round(img[..., :3] * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def knn_report(library) -> EvaluationReport:
    """A real report without encoders (k-NN on MSE and the baselines): seconds, not minutes."""
    return run_evaluation(library, EvaluateConfig(metrics=("mse",), **SMALL))


# --------------------------------------------------------------------------
# the pieces
# --------------------------------------------------------------------------


def test_scores_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    for n_classes in (2, 4, 7):
        y = rng.integers(0, n_classes, 60)
        p = np.where(rng.random(60) < 0.6, y, rng.integers(0, n_classes - 1, 60))  # some classes never predicted
        s = st.scores(y, p, n_classes)
        labels = list(range(n_classes))
        assert s["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert s["f1_weighted"] == pytest.approx(f1_score(y, p, labels=labels, average="weighted", zero_division=0))
        assert s["f1_macro"] == pytest.approx(f1_score(y, p, labels=labels, average="macro", zero_division=0))
    # the vectorised bootstrap equals scoring each resample directly
    y, p = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    w = st.bootstrap_weights(40, 5, seed=1)
    b = st.bootstrap_scores(y, p, 3, w)["f1_weighted"]
    for i in range(5):
        idx = np.repeat(np.arange(40), w[i].astype(int))
        assert b[i] == pytest.approx(f1_score(y[idx], p[idx], labels=[0, 1, 2], average="weighted", zero_division=0))


def test_paired_tests():
    p, exact = st.sign_flip_p([0.1, 0.2, 0.1, 0.3, 0.2])
    assert exact and p == pytest.approx(2 / 32)  # the smallest possible with 5 folds
    assert st.sign_flip_p([0.0, 0.0, 0.0])[0] == 1.0
    t, tp = st.paired_t([0.1, 0.2, 0.15, 0.12])
    from scipy import stats

    ref = stats.ttest_rel([0.6, 0.7, 0.65, 0.62], [0.5, 0.5, 0.5, 0.5])
    assert t == pytest.approx(ref.statistic) and tp == pytest.approx(ref.pvalue)
    assert st.paired_t([0.0, 0.0]) == (0.0, 1.0)
    assert st.status_of([0.01, 0.2]) == "supported" and st.status_of([-0.2, -0.01]) == "contradicted"
    assert st.status_of([-0.1, 0.0]) == "not significant"


def test_folds_never_split_a_group_and_are_stratified():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(40), rng.integers(1, 6, 40))  # clips with 1-5 segments
    y = (groups % 4)[:]  # 4 classes, 10 clips each
    folds = make_folds(y, groups, 5, seed=7)
    assert len(folds) == 5
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested) == list(range(len(y)))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert set(y[te]) == {0, 1, 2, 3}  # every class in every test fold
    assert [te.tolist() for _, te in folds] == [te.tolist() for _, te in make_folds(y, groups, 5, seed=7)]


def test_knn_and_aggregation_tie_rules():
    # two training segments per class; the query is equidistant in count, closer in sum to class 1
    d = np.array([[1.0, 3.0, 1.5, 1.6]])
    y_train = np.array([0, 0, 1, 1])
    order, dist = knn_sorted(d, 4)
    assert order.tolist() == [[0, 2, 3, 1]]
    pred, ds = knn_vote(order, dist, y_train, 4, 2)  # 2 vs 2 votes: sums 4.0 vs 3.1
    assert pred.tolist() == [1] and ds[0] == pytest.approx(3.1)
    pred, _ = knn_vote(order, dist, y_train, 1, 2)
    assert pred.tolist() == [0]
    # clip vote: 2 segments say 0, 2 say 1 -> the smaller summed distance wins
    ids, cp = aggregate_votes(np.array([0, 0, 1, 1, 2]), np.array([1.0, 1.0, 0.5, 0.6, 0.1]),
                              np.array([5, 5, 5, 5, 9]), 3)
    assert ids.tolist() == [5, 9] and cp.tolist() == [1, 2]
    ids, cp = aggregate_proba(np.array([[0.9, 0.1], [0.45, 0.55], [0.45, 0.55], [0.6, 0.4]]), np.array([0, 0, 0, 1]))
    assert cp.tolist() == [0, 0]  # clip 0: mean (0.6, 0.4) wins over the 2-to-1 majority of argmaxes


def test_segment_distances_blocked_path_matches_the_dense_one():
    rng = np.random.default_rng(2)
    segs = rng.random((9, 1, 16, 16), dtype=np.float32)
    dense = segment_distances(segs, "mse")
    blocked = segment_distances(segs, "mse", dense_limit=0)
    assert np.allclose(dense, blocked, rtol=1e-5, atol=1e-7)
    assert (np.diag(blocked) == 0).all() and (blocked == blocked.T).all()


def test_claim_verdict_for_constructed_comparisons():
    from perceptlab.analysis.evaluate import claim_pairs, compare_pairs
    from perceptlab.analysis.evaluate.claim import _claim

    rng = np.random.default_rng(4)
    shared = rng.normal(0.0, 0.02, 500)  # the same resamples for every method: paired
    cfg = EvaluateConfig(metrics=("nlpd",))

    def verdict(scores: dict[str, float], jitter: float = 0.0) -> dict:
        kinds = {"logreg:ae-nlpd": ("logreg-ae", "nlpd"), "logreg:ae-mse": ("logreg-ae", "mse"),
                 "knn-cv:nlpd": ("knn-cv", None)}
        ranked = [{"name": n, "kind": kinds[n][0], "loss": kinds[n][1]} for n in scores]
        boot = {n: v + shared + jitter * rng.normal(0.0, 1.0, shared.size) for n, v in scores.items()}
        folds = {n: [v, v + 0.01, v - 0.01] for n, v in scores.items()}
        compared = compare_pairs([(a, b) for _, a, b in claim_pairs(ranked)], folds, boot, cfg)
        out = _claim(ranked, compared, cfg, [])
        for p in out["parts"]:  # the verdict reuses the comparison it was given, unchanged
            assert {k: p[k] for k in compared[p["a"], p["b"]]} == compared[p["a"], p["b"]]
        return out

    c = verdict({"logreg:ae-nlpd": 0.9, "knn-cv:nlpd": 0.6})
    assert c["verdict"] == "supported" and [p["status"] for p in c["parts"]] == ["supported"]
    assert c["parts"][0]["ci"][0] > 0.25  # the difference is 0.3 on every resample
    assert verdict({"logreg:ae-nlpd": 0.6, "knn-cv:nlpd": 0.9})["verdict"] == "contradicted"
    # independent noise of sd 0.1 around equal means: the CI straddles 0
    assert verdict({"logreg:ae-nlpd": 0.7, "knn-cv:nlpd": 0.7}, jitter=0.1)["verdict"] == "inconclusive"
    # (a) significant, (b) not: partly; (a) significant, (b) against: contradicted wins
    c = verdict({"logreg:ae-nlpd": 0.9, "knn-cv:nlpd": 0.6, "logreg:ae-mse": 0.9})
    assert [p["b"] for p in c["parts"]] == ["knn-cv:nlpd", "logreg:ae-mse"]
    assert [p["status"] for p in c["parts"]] == ["supported", "not significant"]
    assert c["verdict"] == "partly supported"
    c = verdict({"logreg:ae-nlpd": 0.8, "knn-cv:nlpd": 0.6, "logreg:ae-mse": 0.95})
    assert [p["status"] for p in c["parts"]] == ["supported", "contradicted"] and c["verdict"] == "contradicted"
    # an MSE autoencoder alone has nothing to be compared with
    assert verdict({"logreg:ae-mse": 0.9, "knn-cv:nlpd": 0.6})["verdict"] == "untestable"


def test_chart_draws_the_report_numbers_as_png_and_svg(knn_report, tmp_path):
    import xml.etree.ElementTree as ET

    from perceptlab.analysis.evaluate.chart import KIND_COLORS, chart_figure, chart_rows, write_chart

    data = knn_report.data
    rows = chart_rows(data)
    methods = knn_report.methods
    assert [r["label"] for r in rows] == [m["name"] for m in methods]
    for r, m in zip(rows, methods):
        assert r["value"] == m["clip"]["f1_weighted"]["mean"] and r["err"] == m["clip"]["f1_weighted"]["std"]
    # The figure's bars and whiskers are those numbers, best at the top.
    fig = chart_figure(rows, "t")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert [b.get_width() for b in bars] == pytest.approx([r["value"] for r in rows], abs=1e-12)
    assert [b.get_y() + b.get_height() / 2 for b in bars] == pytest.approx(list(range(len(rows))))
    ylim = ax.get_ylim()
    assert ylim[0] > ylim[1]  # inverted: row 0 (the best) on top
    for b, r in zip(bars, rows):
        assert tuple(round(255 * c) for c in b.get_facecolor()[:3]) == KIND_COLORS[r["kind"]]
    (whiskers,) = [c for c in ax.collections if len(c.get_segments()) == len(rows)]
    for seg, r, yi in zip(whiskers.get_segments(), rows, range(len(rows))):
        assert seg[:, 0] == pytest.approx([r["value"] - r["err"], r["value"] + r["err"]], abs=1e-12)
        assert seg[:, 1] == pytest.approx([yi, yi])
    assert [t.get_text() for t in ax.get_yticklabels()] == [r["label"] for r in rows]

    paths = write_chart(data, tmp_path)
    png = read_png(paths["png"])
    assert png.shape[0] > 150 and png.shape[1] > 600
    for kind in {r["kind"] for r in rows}:  # every kind's bar colour is there, over many pixels
        assert (np.abs(png.astype(int) - KIND_COLORS[kind]).max(-1) <= 2).sum() > 200, kind
    svg = ET.parse(paths["svg"]).getroot()
    assert svg.tag.endswith("svg")
    text = paths["svg"].read_text()
    assert all(r["label"] in text for r in rows) and f"{rows[0]['value']:.3f}" in text
    first = {k: p.read_bytes() for k, p in paths.items()}
    again = write_chart(data, tmp_path / "again")
    assert {k: p.read_bytes() for k, p in again.items()} == first  # no date, fixed ids: same bytes


def test_without_matplotlib_the_report_skips_the_chart_and_says_what_to_install(knn_report, tmp_path,
                                                                                 monkeypatch, capsys):
    from perceptlab.analysis import evaluate as ev
    from perceptlab.cli import main

    out = tmp_path / "out"
    write_report(knn_report, out)
    assert (out / "chart.png").exists() and (out / "chart.svg").exists()
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib -> ImportError
    paths = write_report(knn_report, out)
    assert paths["chart"] is None and paths["chart_svg"] is None
    (note,) = paths["notes"]
    assert "matplotlib" in note and "pip install 'perceptlab[report]'" in note
    # the earlier run's chart is gone, so the folder holds no chart of another report
    assert not (out / "chart.png").exists() and not (out / "chart.svg").exists()
    md = paths["markdown"].read_text()
    assert "chart.png" not in md and "perceptlab[report]" in md
    assert EvaluationReport.load(out).to_json() == knn_report.to_json()  # the rest is all there
    # the command says it too, and does not list a chart it did not write
    monkeypatch.setattr(ev, "run_evaluation", lambda *a, **kw: knn_report)
    (tmp_path / "x.sqlite").touch()  # the command checks that the library exists before running
    assert main(["evaluate", "--library", str(tmp_path / "x.sqlite"), "--metrics", "mse",
                 "--out", str(tmp_path / "cli")]) == 0
    captured = capsys.readouterr()
    assert "chart skipped" in captured.err and "pip install 'perceptlab[report]'" in captured.err
    assert "chart.png" not in captured.out.splitlines()[-1]


def test_config_rejects_bad_options():
    with pytest.raises(ValueError, match="not both"):
        EvaluateConfig(checkpoints=("a.pt",), train_config="x.toml")
    with pytest.raises(ValueError, match="--folds"):
        EvaluateConfig(folds=1)
    with pytest.raises(ValueError, match="--losses"):
        EvaluateConfig(train_config="x.toml", losses=("l1",))
    with pytest.raises(ValueError, match="--set needs"):
        EvaluateConfig(train_overrides=("epochs=1",))


# --------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------


def test_evaluate_command_with_checkpoints_end_to_end(library, tmp_path, capsys):
    """The real command on a real library with a checkpoint trained on it: every file, sane numbers,
    folds grouped by clip, the failed file listed, and the overlap warning."""
    from perceptlab.cli import main

    ckpt = train_tiny(library, tmp_path / "run")
    out = tmp_path / "report"
    rc = main(["evaluate", "--library", str(library), "--metrics", "mse,nlpd", "--checkpoints", str(ckpt),
               "--folds", "3", "--segment-frames", "32", "--segment-hop", "16", "--k", "3", "--k-grid", "1,3",
               "--c-grid", "1", "--bootstrap", "200", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "logreg:ae-nlpd" in printed and "claim:" in printed
    assert printed.splitlines()[0].startswith("headline: ")  # the best method before any table
    for name in ("report.json", "report.md", "chart.png", "chart.svg"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "report.json").read_text())
    report = EvaluationReport.from_json(data)
    names = [m["name"] for m in report.methods]
    assert set(names) == {"knn:mse", "knn:nlpd", "knn-cv:mse", "knn-cv:nlpd", "logreg:ae-nlpd",
                          "logreg:logmel", "majority"}
    n_clips = data["library"]["n_evaluated"]
    assert n_clips == 15 and data["library"]["classes"] == sorted(GENRES)
    assert [f["path"].endswith("blues.00099.wav") for f in data["library"]["failed"]] == [True]
    assert data["segments"]["n"] == sum(c["n_segments"] for c in data["clips"]) >= 2 * n_clips
    assert_scores_match_predictions(data)
    for m in data["methods"]:
        assert len(m["clip"]["f1_weighted"]["folds"]) == 3
        lo, hi = m["clip"]["f1_weighted"]["ci"]
        assert lo <= hi
        assert np.array(m["confusion"]["clip"]).sum() == n_clips
        assert np.array(m["confusion"]["segment"]).sum() == data["segments"]["n"]
        csv_rows = (out / "confusion" / f"{m['name'].replace(':', '_')}.csv").read_text().splitlines()
        assert len(csv_rows) == 1 + len(GENRES)
    assert report.methods[0]["clip"]["f1_weighted"]["mean"] >= report.methods[-1]["clip"]["f1_weighted"]["mean"]
    knn = next(m for m in data["methods"] if m["name"] == "knn:nlpd")
    assert knn["clip"]["f1_weighted"]["mean"] > 0.8  # the classes are easy
    maj = next(m for m in data["methods"] if m["name"] == "majority")
    # at most chance: the training majority is the class with fewest clips in the test fold
    assert maj["clip"]["accuracy"]["pooled"] <= 1 / 3 + 1e-9
    assert_no_group_split(data)
    # the checkpoint saw these very clips: the report says so, loudly
    assert data["mode"] == "checkpoints"
    enc = data["encoders"]["checkpoints"][0]
    assert enc["trained_on_this_library"] and enc["overlap"]["train"] + enc["overlap"]["val"] == 15
    assert any("has seen the test folds" in w for w in data["warnings"])
    assert "optimistic" in data["claim"]["caveat"]
    md = (out / "report.md").read_text()
    assert "## Warnings" in md and "has seen the test folds" in md and "| 1 | `" in md
    # One part, (a): the NLPD autoencoder against k-NN on NLPD; the verdict is its status.
    (part,) = data["claim"]["parts"]
    assert (part["a"], part["b"]) == ("logreg:ae-nlpd", "knn-cv:nlpd")
    assert part["status"] == st.status_of(part["ci"])
    assert data["claim"]["verdict"] == {"supported": "supported", "contradicted": "contradicted",
                                        "not significant": "inconclusive"}[part["status"]]
    n_methods = len(data["methods"])
    assert len(data["comparisons"]) == n_methods * (n_methods - 1) // 2
    png = read_png(out / "chart.png")
    assert png.shape[0] > 100 and png.shape[1] > 400
    assert "chart.png" in printed.splitlines()[-1] and "![weighted F1 per method](chart.png)" in md


def test_train_config_mode_trains_per_fold_without_test_clips(library, tmp_path):
    toml = write_tiny_toml(tmp_path / "tiny.toml")
    seen = []
    cfg = EvaluateConfig(metrics=("nlpd",), train_config=str(toml), losses=("mse", "nlpd"),
                         train_overrides=("epochs=1",), max_segments_per_clip=2, **dict(SMALL, folds=2))
    report = run_evaluation(library, cfg, progress=lambda d, t: seen.append((d, t)))
    data = report.to_json()
    assert data["mode"] == "train-config"
    assert seen[-1] == (1000, 1000) and all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))
    runs = data["encoders"]["runs"]
    assert sorted((r["fold"], r["loss"]) for r in runs) == [(f, l) for f in (1, 2) for l in ("mse", "nlpd")]
    by_fold = {f["fold"]: f for f in data["folds"]}
    for r in runs:
        assert r["test_clips_seen"] == 0
        assert r["kept"] is None  # run_evaluation keeps them only when asked (the command does by default)
        assert r["n_train_clips"] + r["n_val_clips"] == r["fold_training_clips"] == len(by_fold[r["fold"]]["train_clips"])
    assert all(c["n_segments"] <= 2 for c in data["clips"])
    assert_no_group_split(data)
    parts = {(p["a"], p["b"]) for p in data["claim"]["parts"]}
    assert parts == {("logreg:ae-nlpd", "knn-cv:nlpd"), ("logreg:ae-nlpd", "logreg:ae-mse")}
    assert not any("seen the test folds" in w for w in data["warnings"])
    paths = write_report(report, tmp_path / "out")
    assert EvaluationReport.load(tmp_path / "out").to_json() == data
    assert "Encoders" in paths["markdown"].read_text()


def test_disjoint_checkpoint_gives_no_overlap_warning_and_cancel_stops(library, tmp_path):
    other = tmp_path / "other.sqlite"
    with Library(other) as lib:
        import_files(lib, [write_genres(tmp_path / "other", per_genre=2, offset=50)])
    ckpt = train_tiny(other, tmp_path / "run", loss="mse")
    cfg = EvaluateConfig(metrics=("mse",), checkpoints=(str(ckpt),), **dict(SMALL, segment_frames=48))
    data = run_evaluation(library, cfg).to_json()
    enc = data["encoders"]["checkpoints"][0]
    ov = enc["overlap"]
    assert (ov["train"], ov["val"], ov["evaluated"], ov["train_clips"], ov["val_clips"]) == (0, 0, 15, [], [])
    assert "train_hashes" in ov["recorded"] and not enc["trained_on_this_library"]
    assert not any("seen the test folds" in w for w in data["warnings"])
    assert data["claim"]["verdict"] == "untestable"  # an MSE encoder alone cannot test the claim
    # 48-frame segments through 32-frame patches: the latents still separate the classes.
    assert_scores_match_predictions(data)
    ae = next(m for m in data["methods"] if m["name"] == "logreg:ae-mse")
    maj = next(m for m in data["methods"] if m["name"] == "majority")
    assert ae["clip"]["f1_weighted"]["pooled"] > maj["clip"]["f1_weighted"]["pooled"] + 0.3, ae["clip"]
    calls = []
    with pytest.raises(Cancelled):
        run_evaluation(library, EvaluateConfig(metrics=("mse",), **SMALL), progress=lambda d, t: calls.append(d),
                       cancel=lambda: len(calls) > 2)


def test_too_few_clips_per_class_is_a_clear_error(library):
    with pytest.raises(ValueError, match="at least 2 classes"):
        run_evaluation(library, EvaluateConfig(metrics=("mse",), **dict(SMALL, folds=6)))
