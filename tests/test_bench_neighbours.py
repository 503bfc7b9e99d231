"""``perceptlab bench neighbours`` at a small size, and its synthetic clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli

from perceptlab.metrics.bench_neighbours import BENCH_METRICS, FAMILY_SIZE, synthetic_images


def test_synthetic_clips_come_in_families_of_near_copies():
    rng = np.random.default_rng(3)
    base = [np.clip(rng.random((128, 150)).astype(np.float32), 0, 1) for _ in range(4)]
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


def test_bench_neighbours_cli_json_at_a_small_size():
    r = run_cli("bench", "neighbours", "--n", "300", "--json")
    out = json.loads(r.stdout)
    assert out["n"] == 300 and set(out["metrics"]) == set(BENCH_METRICS)
    for name, m in out["metrics"].items():
        assert set(m) >= {"build_s", "index_mb", "peak_rss_mb", "query_ms_median", "query_ms_p95", "recall_at_10"}
        assert m["build_s"] > 0 and m["index_mb"] > 0 and 50 < m["peak_rss_mb"] < 4096, name
        assert 0 < m["query_ms_median"] <= m["query_ms_p95"], name
        # 300 clips: the candidate budget covers a third of them; the families make the top 10 clear
        assert m["recall_at_10"] >= 0.9, (name, m["recall_at_10"])
    assert "recall@10" in r.stderr  # the readable lines go to stderr with --json


def test_bench_neighbours_rejects_a_tiny_n():
    r = run_cli("bench", "neighbours", "--n", "5", check=False)
    assert r.returncode != 0 and "--n must be at least 30" in r.stderr
