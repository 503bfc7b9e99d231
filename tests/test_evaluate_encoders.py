"""What ``perceptlab evaluate`` says about its encoders: kept per-fold checkpoints, convergence,
training-clip overlap, k-NN on the baselines fitted per fold, and the headline.

Real but tiny: the tone / noise libraries and the 5 x 8-channel autoencoders of
``test_evaluate.py``, one epoch each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_evaluate import GENRES, SMALL, train_tiny, write_genres, write_tiny_toml

from perceptlab.analysis import evaluate as ev
from perceptlab.analysis.evaluate import EvaluateConfig, EvaluationReport, run_evaluation
from perceptlab.analysis.evaluate.checkpoints import _convergence
from perceptlab.analysis.evaluate import claim as ev_claim
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library

CLI_SMALL = ["--folds", "3", "--segment-frames", "32", "--segment-hop", "16", "--k", "3", "--k-grid", "1,3",
             "--c-grid", "1", "--bootstrap", "200"]


def make_library(path: Path, *roots: Path) -> Path:
    with Library(path) as lib:
        import_files(lib, list(roots))
    return path


@pytest.fixture(scope="module")
def small_library(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("enclib")
    return make_library(tmp / "lib.sqlite", write_genres(tmp / "clips", per_genre=4))


# --------------------------------------------------------------------------
# 1 + 2: per-fold encoders are kept, and one whose best epoch is its last is flagged
# --------------------------------------------------------------------------


def test_train_config_keeps_each_fold_encoder_and_warns_on_last_epoch(small_library, tmp_path, capsys):
    from perceptlab.cli import main
    from perceptlab.models.checkpoint import load_checkpoint

    toml = write_tiny_toml(tmp_path / "tiny.toml")
    out = tmp_path / "report"
    rc = main(["evaluate", "--library", str(small_library), "--metrics", "mse", "--train-config", str(toml),
               "--losses", "mse", "--set", "epochs=1", "--max-segments-per-clip", "2", *CLI_SMALL,
               "--folds", "2", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    runs = data["encoders"]["runs"]
    assert [(r["fold"], r["loss"]) for r in runs] == [(1, "mse"), (2, "mse")]
    for r in runs:
        folder = out / "encoders" / f"fold-{r['fold']}-mse"
        assert r["kept"] == {"best": str((folder / "best.pt").resolve()), "last": str((folder / "last.pt").resolve())}
        best, last = load_checkpoint(folder / "best.pt"), load_checkpoint(folder / "last.pt")
        assert best["kind"] == "best" and last["kind"] == "last" and "optimizer" in last
        assert best["model_hash"] == r["model_hash"]
        # trained on the fold's training clips only: none of its test clips is in the recorded split
        fold = next(f for f in data["folds"] if f["fold"] == r["fold"])
        test_hashes = {c["content_hash"] for c in data["clips"] if c["id"] in fold["test_clips"]}
        assert not test_hashes & set(best["data"]["train_hashes"] + best["data"]["val_hashes"])
        # one epoch: the best is the last, and the report says so, once per encoder
        assert (r["epochs"], r["best_epoch"], r["best_at_last_epoch"]) == (1, 1, True)
    want = [f"mse fold {k}: best validation loss at the last epoch (1 of 1): not converged; train longer"
            for k in (1, 2)]
    assert [w for w in data["warnings"] if "not converged" in w] == want
    for w in want:
        assert f"warning: {w}" in printed
    assert "2 per-fold encoders (best.pt, last.pt) kept in" in printed
    md = (out / "report.md").read_text()
    assert "## Kept encoders" in md and f"`{runs[0]['kept']['best']}`" in md and "not converged" in md


def test_no_keep_encoders_flag_and_the_default(monkeypatch, tmp_path, small_library):
    """The CLI asks run_evaluation to keep the encoders in OUT/encoders unless --no-keep-encoders."""
    from perceptlab.cli import main

    seen = {}

    def fake_run(path, cfg, **kw):
        seen["keep"] = kw.get("keep_encoders")
        raise SystemExit(0)

    monkeypatch.setattr(ev, "run_evaluation", fake_run)
    toml = write_tiny_toml(tmp_path / "tiny.toml")
    base = ["evaluate", "--library", str(small_library), "--train-config", str(toml), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        main(base)
    assert seen["keep"] == tmp_path / "o" / "encoders"
    with pytest.raises(SystemExit):
        main(base + ["--no-keep-encoders"])
    assert seen["keep"] is None


def test_checkpoint_best_at_its_last_epoch_is_flagged(small_library, tmp_path):
    other = make_library(tmp_path / "other.sqlite", write_genres(tmp_path / "other", per_genre=2, offset=50))
    ckpt = train_tiny(other, tmp_path / "run", loss="mse")  # 1 epoch: best = last
    cfg = EvaluateConfig(metrics=("mse",), checkpoints=(str(ckpt),), **SMALL)
    report = run_evaluation(small_library, cfg)
    data = report.to_json()
    conv = data["encoders"]["checkpoints"][0]["convergence"]
    assert (conv["best_epoch"], conv["last_epoch"], conv["best_at_last_epoch"]) == (1, 1, True)
    assert conv["source"] == "last.pt beside it"
    want = ("logreg:ae-mse checkpoint best.pt: best validation loss at the last epoch (1 of 1): not converged; "
            "train longer")
    assert want in data["warnings"] and f"warning: {want}" in report.text()


def _fake_encoder(path, best_epoch, saved_epoch, epochs, name="x", history_val=0.5):
    hist = [{"epoch": e, "val_loss": history_val} for e in range(1, saved_epoch + 1)]
    return SimpleNamespace(path=Path(path), name=name, data={"selection_hash": "s"},
                           metrics={"best_epoch": best_epoch, "history": hist},
                           progress={"epoch": saved_epoch}, train_config={"epochs": epochs, "name": name})


def test_convergence_reads_progress_history_and_config(tmp_path):
    c = _convergence(_fake_encoder(tmp_path / "best.pt", 78, 78, 80))  # the shipped demo models
    assert (c["best_at_last_epoch"], c["last_epoch"], c["source"]) == (False, 80, "its training config's epochs")
    c = _convergence(_fake_encoder(tmp_path / "best.pt", 80, 80, 80))
    assert c["best_at_last_epoch"] and c["last_epoch"] == 80
    # a last.pt records epochs after its best one: converged, whatever the config said
    c = _convergence(_fake_encoder(tmp_path / "last.pt", 5, 9, 20))
    assert (c["best_at_last_epoch"], c["last_epoch"], c["source"]) == (False, 9, "the checkpoint's progress")
    # a run ended early (time budget) at its best epoch: the epochs it trained in all, as recorded
    # in a kept best.pt, win over the config's
    enc = _fake_encoder(tmp_path / "best.pt", 14, 14, 15)
    assert not _convergence(enc)["best_at_last_epoch"]
    enc.metrics["run_epochs"] = 14
    c = _convergence(enc)
    assert (c["best_at_last_epoch"], c["last_epoch"], c["source"]) == (True, 14, "the epochs its run trained in all")
    c = _convergence(_fake_encoder(tmp_path / "b.pt", 3, 3, None, history_val=None))
    assert c["best_at_last_epoch"] and not c["validated"]
    assert "best training loss (no validation split)" in ev.not_converged_warning("m", 3, 3, c["validated"])


# --------------------------------------------------------------------------
# 5: training-clip overlap, from the recorded hashes and from a recorded file list
# --------------------------------------------------------------------------


def test_overlap_warning_counts_the_clips_a_checkpoint_was_trained_on(tmp_path, capsys):
    from perceptlab.cli import main
    from perceptlab.models.checkpoint import load_checkpoint

    train_root = write_genres(tmp_path / "train", per_genre=3)
    train_lib = make_library(tmp_path / "train.sqlite", train_root)
    ckpt = train_tiny(train_lib, tmp_path / "run", loss="mse")
    d = load_checkpoint(ckpt)["data"]
    with Library(train_lib) as lib:
        all_hashes = {c.content_hash for c in lib.clips()}
    # the checkpoint records exactly which clips it trained and validated on
    assert len(d["train_hashes"]) == d["n_train_clips"] > 0 and len(d["val_hashes"]) == d["n_val_clips"] > 0
    assert set(d["train_hashes"]) | set(d["val_hashes"]) == all_hashes
    assert not set(d["train_hashes"]) & set(d["val_hashes"])

    # a library holding 2 of those clips per class and 2 new ones per class
    eval_root = write_genres(tmp_path / "eval", per_genre=2, offset=50)
    for genre in GENRES:
        for j in range(2):
            src = train_root / genre / f"{genre}.{j:05d}.wav"
            shutil.copy(src, eval_root / genre / src.name)
    eval_lib = make_library(tmp_path / "eval.sqlite", eval_root)
    with Library(eval_lib) as lib:
        hashes = {c.content_hash for c in lib.clips()}
    n_tr, n_val = len(hashes & set(d["train_hashes"])), len(hashes & set(d["val_hashes"]))
    assert n_tr + n_val == 6 and len(hashes) == 12

    out = tmp_path / "report"
    assert main(["evaluate", "--library", str(eval_lib), "--metrics", "mse", "--checkpoints", str(ckpt),
                 *CLI_SMALL, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    ov = data["encoders"]["checkpoints"][0]["overlap"]
    assert (ov["train"], ov["val"], ov["evaluated"]) == (n_tr, n_val, 12)
    (warn,) = [w for w in data["warnings"] if "has seen the test folds" in w]
    assert f"was trained on {n_tr} of the 12 evaluated clips and validated on {n_val} more" in warn
    assert warn in printed and data["encoders"]["checkpoints"][0]["trained_on_this_library"] is False

    # The same checkpoint with only a file list ({"path", "sha256"}), as another trainer may write it:
    # matched by the SHA-256 of the library's files; a file no longer on disk by its name (and size).
    import hashlib

    from perceptlab.models.checkpoint import save_checkpoint

    ck = load_checkpoint(ckpt)
    for key in ("train_hashes", "val_hashes", "train_files", "val_files"):
        ck["data"].pop(key, None)
    listed = [train_root / g / f"{g}.{j:05d}.wav" for g in GENRES for j in range(3)]
    ck["data"]["train_files"] = [{"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                                 for p in listed]
    files_only = save_checkpoint(ck, tmp_path / "files-only" / "best.pt")
    (eval_root / "metal" / "metal.00001.wav").unlink()  # its cached log-mel is still in the library
    cfg = EvaluateConfig(metrics=("mse",), checkpoints=(str(files_only),), **SMALL)
    data = run_evaluation(eval_lib, cfg).to_json()
    ov = data["encoders"]["checkpoints"][0]["overlap"]
    assert (ov["train"], ov["val"], ov["train_by_name"], ov["recorded"]) == (6, 0, 1, ["train_files"])
    (warn,) = [w for w in data["warnings"] if "has seen the test folds" in w]
    assert "was trained on 6 of the 12 evaluated clips" in warn and "1 of them matched by file name only" in warn


def test_recorded_file_entries_are_read_in_every_form():
    rows = ev.recorded_files(["a" * 32, "B" * 64, "/x/y/blues.00001.wav",
                              {"path": "/d/metal.00002.wav", "sha256": "c" * 64},
                              {"name": "n.wav", "content_hash": "d" * 32, "size": 10}, 7])
    assert rows == [
        {"name": None, "size": None, "content_hash": "a" * 32, "sha256": None},
        {"name": None, "size": None, "content_hash": None, "sha256": "b" * 64},
        {"name": "blues.00001.wav", "size": None, "content_hash": None, "sha256": None},
        {"name": "metal.00002.wav", "size": None, "content_hash": None, "sha256": "c" * 64},
        {"name": "n.wav", "size": 10, "content_hash": "d" * 32, "sha256": None},
    ]


# --------------------------------------------------------------------------
# 3: k-NN on the baselines, z-scored on each fold's training segments
# --------------------------------------------------------------------------


def test_baseline_knn_is_a_default_and_fits_its_z_scores_on_training_segments_only(small_library):
    from perceptlab.cli import build_parser

    args = build_parser().parse_args(["evaluate"])
    assert args.metrics is None  # the config's default: every built-in metric
    assert {"logmel-stats", "mfcc-stats"} <= set(EvaluateConfig().metrics)

    rng = np.random.default_rng(0)
    segs = rng.random((12, 1, 32, 24), dtype=np.float32)
    for metric in ("logmel-stats", "mfcc-stats"):
        bd = ev.BaselineDistances(metric, segs)
        everything = np.arange(12)
        # fitted on all segments it is the registry metric's (pooled) matrix
        pooled = ev.segment_distances(segs, metric)
        assert np.allclose(bd(everything, everything), pooled, atol=1e-6)
        rows, cols = np.arange(4), np.arange(4, 12)
        d = bd(rows, cols)
        assert d.shape == (4, 8) and not np.allclose(d, pooled[np.ix_(rows, cols)], atol=1e-4)
        # a test segment's distances do not depend on the other test segments (nothing fitted on them)
        bd.raw[1:4] *= 3.0
        assert np.array_equal(bd(rows, cols)[0], d[0])

    data = run_evaluation(small_library, EvaluateConfig(metrics=("logmel-stats", "mfcc-stats"), **SMALL)).to_json()
    names = {m["name"] for m in data["methods"]}
    assert {"knn:logmel-stats", "knn-cv:logmel-stats", "knn:mfcc-stats", "knn-cv:mfcc-stats"} <= names
    knn = next(m for m in data["methods"] if m["name"] == "knn:mfcc-stats")
    assert "z-scored on the fold's training segments" in knn["description"]
    assert knn["clip"]["f1_weighted"]["mean"] > 0.8  # tones vs noise: easy
    assert "training segments of each fold" in data["protocol"]["aggregation"]["knn"]


# --------------------------------------------------------------------------
# 4: the headline names the best method and never hides a baseline win
# --------------------------------------------------------------------------


def _entries(scores: dict[str, float]) -> list[dict]:
    kinds = {"logreg:ae-nlpd": ("logreg-ae", "nlpd", "ae-nlpd"),
             "logreg:ae-msssim": ("logreg-ae", "msssim", "ae-msssim"),
             "logreg:ae-mse": ("logreg-ae", "mse", "ae-mse"), "logreg:logmel": ("logreg-logmel", None, "logmel"),
             "knn:mfcc-stats": ("knn", None, "mfcc-stats"), "knn-cv:nlpd": ("knn-cv", None, "nlpd"),
             "majority": ("majority", None, "none")}
    out = []
    for rank, (n, v) in enumerate(sorted(scores.items(), key=lambda kv: -kv[1]), 1):
        kind, loss, rep = kinds[n]
        out.append({"name": n, "kind": kind, "loss": loss, "representation": rep, "rank": rank,
                    "clip": {"f1_weighted": {"pooled": v}}})
    return out


def _headline(scores: dict[str, float], jitter: float = 0.02) -> dict:
    rng = np.random.default_rng(5)
    shared = rng.normal(0.0, 0.02, 500)  # the same resamples for every method: paired
    boot = {n: v + shared + jitter * rng.normal(0.0, 1.0, 500) for n, v in scores.items()}
    return ev_claim._headline(_entries(scores), boot, EvaluateConfig(metrics=("nlpd",)))


def test_headline_names_the_best_method_and_a_baseline_win_first():
    h = _headline({"logreg:logmel": 0.81, "logreg:ae-nlpd": 0.64, "logreg:ae-msssim": 0.60, "majority": 0.02})
    assert h["best"] == "logreg:logmel" and h["baseline_beats_perceptual"] == "logreg:logmel"
    assert h["text"].startswith("A baseline beats every perceptual encoder. Best: logreg:logmel 0.810; "
                                "vs best perceptual encoder logreg:ae-nlpd 0.640: +0.170 [")
    lo, hi = h["comparison"]["ci"]
    assert 0.05 < lo < 0.17 < hi < 0.3 and h["comparison"]["status"] == "supported"
    assert len(h["baseline_comparisons"]) == 2 and all(c["ci"][0] > 0 for c in h["baseline_comparisons"])

    # the best overall is no baseline, but a baseline still beats every perceptual encoder: said first
    h = _headline({"knn-cv:nlpd": 0.9, "knn:mfcc-stats": 0.8, "logreg:ae-nlpd": 0.6})
    assert h["baseline_beats_perceptual"] == "knn:mfcc-stats"
    assert h["text"].startswith("A baseline beats every perceptual encoder: knn:mfcc-stats 0.800 vs best "
                                "perceptual encoder logreg:ae-nlpd 0.600: +0.200 [")
    assert "Best: knn-cv:nlpd 0.900; vs best perceptual encoder logreg:ae-nlpd 0.600: +0.300 [" in h["text"]

    # a baseline ahead within the noise: named as best, no win claimed
    h = _headline({"logreg:logmel": 0.70, "logreg:ae-nlpd": 0.68}, jitter=0.1)
    assert h["baseline_beats_perceptual"] is None and h["comparison"]["status"] == "not significant"
    assert h["text"].startswith("Best: logreg:logmel 0.700; vs best perceptual encoder logreg:ae-nlpd 0.680: +0.020 [")

    # a baseline that beats one perceptual encoder but not the other is no win over "every"
    h = _headline({"logreg:ae-msssim": 0.85, "logreg:logmel": 0.80, "logreg:ae-nlpd": 0.5})
    assert h["baseline_beats_perceptual"] is None
    assert h["text"].startswith("Best: logreg:ae-msssim 0.850, a perceptual encoder; vs the best other method "
                                "logreg:logmel 0.800: +0.050 [")

    h = _headline({"logreg:logmel": 0.8, "logreg:ae-mse": 0.7, "majority": 0.1})
    assert h["text"].startswith("Best: logreg:logmel 0.800; no perceptual encoder was evaluated")


def test_headline_leads_the_printed_report_and_the_markdown(small_library, tmp_path):
    other = make_library(tmp_path / "other.sqlite", write_genres(tmp_path / "other", per_genre=2, offset=50))
    ckpt = train_tiny(other, tmp_path / "run", loss="nlpd")
    cfg = EvaluateConfig(metrics=("nlpd", "logmel-stats"), checkpoints=(str(ckpt),), **SMALL)
    report = run_evaluation(small_library, cfg)
    data = report.to_json()
    h = data["headline"]
    pooled = {m["name"]: m["clip"]["f1_weighted"]["pooled"] for m in data["methods"]}
    assert pooled[h["best"]] == max(pooled.values()) and h["best_perceptual"] == "logreg:ae-nlpd"
    assert f"{h['best']} {pooled[h['best']]:.3f}" in h["text"]
    assert report.text().splitlines()[0] == f"headline: {h['text']}" == f"headline: {report.headline}"
    if h["baseline_beats_perceptual"]:
        assert data["claim"]["summary"].startswith(h["baseline_sentence"])
    paths = ev.write_report(report, tmp_path / "out")
    md = paths["markdown"].read_text().splitlines()
    assert md[0] == "# Genre-classification evaluation" and md[2] == f"**{h['text']}**"
    assert md[4].startswith("**Verdict on the paper's claim:")
    assert EvaluationReport.load(tmp_path / "out").headline == h["text"]
