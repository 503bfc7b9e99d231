"""``perceptlab bench neighbours`` at a small size, and its synthetic clips."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import run_cli

from perceptlab.metrics.bench_neighbours import BENCH_METRICS, FAMILY_SIZE, synthetic_images


def test_synthetic_clips_come_in_families_of_near_copies():
    rng = np.random.default_rng(3)
    # Smooth images like log-mels: a spectral profile under a decaying envelope.
    env = np.exp(-np.linspace(0, 3, 150))[None, :]
    base = [np.clip(0.2 + 0.7 * rng.random((128, 1)) * env, 0, 1).astype(np.float32) for _ in range(4)]
    ims = list(synthetic_images(2 * FAMILY_SIZE, base, seed=1))
    assert len(ims) == 2 * FAMILY_SIZE
    assert all(im.dtype == np.float32 and im.shape[0] == 128 and 0 <= im.min() and im.max() <= 1 for im in ims)

    def dist(a, b):
        t = min(a.shape[1], b.shape[1])
        return float(np.mean((a[:, :t] - b[:, :t]) ** 2))

    within = np.mean([dist(ims[0], ims[j]) for j in range(1, FAMILY_SIZE)])
    across = np.mean([dist(ims[0], ims[j]) for j in range(FAMILY_SIZE, 2 * FAMILY_SIZE)])
    assert within < across / 3
    assert len({im.shape[1] for im in ims}) > 3  # lengths vary


@pytest.mark.slow
def test_bench_neighbours_at_a_small_size(tmp_path):
    from perceptlab.metrics.bench_neighbours import run_neighbours_bench

    lines = []
    out = run_neighbours_bench(n=120, queries=3, workdir=tmp_path, out=lines.append)
    assert out["n"] == 120 and out["queries"] == 3 and set(out["metrics"]) == set(BENCH_METRICS)
    for name, m in out["metrics"].items():
        assert set(m) >= {"build_s", "index_mb", "peak_rss_mb", "query_ms_median", "query_ms_p95", "recall_at_10"}
        assert m["build_s"] > 0 and m["index_mb"] > 0 and 50 < m["peak_rss_mb"] < 4096, name
        assert 0 < m["query_ms_median"] <= m["query_ms_p95"], name
        # 120 clips: the candidate budget covers half of them or more; the families make the top 10 clear
        assert m["recall_at_10"] >= 0.9, (name, m["recall_at_10"])
    assert any("recall@10" in line for line in lines)
    assert not list(tmp_path.iterdir())  # the synthetic indexes are removed afterwards


def test_bench_neighbours_rejects_a_tiny_n():
    r = run_cli("bench", "neighbours", "--n", "5", check=False)
    assert r.returncode != 0 and "--n must be at least 30" in r.stderr


@pytest.mark.slow
def test_bench_neighbours_keeps_its_images_index_for_the_next_run(tmp_path):
    from perceptlab.metrics.bench_neighbours import run_neighbours_bench

    keep = tmp_path / "kept"
    first_lines, second_lines = [], []
    first = run_neighbours_bench(n=60, queries=2, metrics=("mse",), keep=keep, recall=False,
                                 out=first_lines.append)
    index_dirs = sorted(p.name for p in keep.iterdir() if p.is_dir())
    assert [d.split("-")[0] for d in index_dirs] == ["images"]
    manifest = (keep / index_dirs[0] / "manifest.json").read_bytes()
    second = run_neighbours_bench(n=60, queries=2, metrics=("mse", "nlpd"), keep=keep, recall=False,
                                  out=second_lines.append)
    assert any("reused from" in line for line in second_lines)
    assert not any("reused from" in line for line in first_lines)
    assert (keep / index_dirs[0] / "manifest.json").read_bytes() == manifest  # not rebuilt
    assert set(first["metrics"]) == {"mse"} and set(second["metrics"]) == {"mse", "nlpd"}
    assert second["metrics"]["mse"]["build_s"] == first["metrics"]["mse"]["build_s"]  # the first run's build
    for m in second["metrics"].values():
        assert "recall_at_10" not in m and 0 < m["query_ms_median"] <= m["query_ms_p95"]
    # Another size is built afresh in the same folder.
    third_lines = []
    run_neighbours_bench(n=40, queries=1, metrics=("mse",), keep=keep, recall=False, out=third_lines.append)
    assert not any("reused from" in line for line in third_lines)


def test_bench_neighbours_rejects_a_kept_folder_that_is_a_file_and_no_metrics(tmp_path):
    from perceptlab.metrics.bench_neighbours import run_neighbours_bench

    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_neighbours_bench(n=60, metrics=("mse",), keep=f)
    with pytest.raises(ValueError, match="no metric to measure"):
        run_neighbours_bench(n=60, metrics=())


def test_cli_bench_neighbours_measures_chosen_metrics_keeps_its_index_and_can_skip_the_recall(tmp_path):
    import json

    keep = tmp_path / "kept"
    args = ("bench", "neighbours", "--n", "40", "--queries", "1", "--metrics", "mse, logmel-stats",
            "--keep", keep, "--no-recall", "--json")
    first = run_cli(*args)
    got = json.loads(first.stdout)
    assert got["n"] == 40 and set(got["metrics"]) == {"mse", "logmel-stats"}
    assert all("recall_at_10" not in m and m["query_ms_median"] > 0 for m in got["metrics"].values())
    assert "no recall" in first.stderr and [p.name.split("-")[0] for p in keep.iterdir() if p.is_dir()]
    second = run_cli(*args)
    assert "reused from" in second.stderr and "reused from" not in first.stderr
    assert set(json.loads(second.stdout)["metrics"]) == {"mse", "logmel-stats"}


@pytest.mark.parametrize("metrics, says", [(",", "--metrics: no metric named"),
                                           ("mse,no-such", "unknown metric(s) no-such")])
def test_cli_bench_neighbours_names_a_bad_metric_list(metrics, says):
    r = run_cli("bench", "neighbours", "--n", "40", "--metrics", metrics, check=False)
    assert r.returncode != 0 and says in r.stderr


def test_cli_bench_neighbours_refuses_a_file_to_keep_in(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("")
    r = run_cli("bench", "neighbours", "--n", "40", "--keep", f, "--no-recall", check=False)
    assert r.returncode != 0 and f"--keep {f} is a file, not a folder" in r.stderr
