"""Rows sharded over processes: real ``torchrun`` runs with two gloo processes.

The sharded k-NN graph and dense matrix equal the single-process ones; a
removed or damaged shard (or one another run wrote) is recomputed and the
others reused; a run stopped half-way resumes; a broken torchrun
environment is refused with a message that says what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from perceptlab.analysis.knn_graph import KnnGraph, knn_graph
from perceptlab.analysis.sharding import (
    DistEnv,
    ShardingError,
    choose_backend,
    matrix_rows,
    shard_paths,
    shard_ranges,
)
from perceptlab.analysis.matrices import library_matrix
from perceptlab.cli import main
from perceptlab.library.store import Library
from perceptlab.tasks import Cancelled

from test_knn_graph import _write_library


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return _write_library(tmp_path_factory.mktemp("sharded"), n=10)


def torchrun(*args, nproc=2):
    """``torchrun --standalone --nproc-per-node N -m perceptlab.cli ARGS`` (torchrun's own module)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "perceptlab.cli", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_two_gloo_processes_give_the_single_process_graph_and_resume_per_shard(library, tmp_path):
    out = tmp_path / "graph.npz"
    args = ["matrix", "--library", library, "--metric", "msssim", "--knn", "3", "--out", out, "--json",
            "--shard-rows", "2"]
    first = torchrun(*args)
    assert first["backend"] == "gloo" and first["shards"]["processes"] == 2
    assert first["shards"]["total"] == 5 and first["shards"]["computed"] == 5 and first["shards"]["reused"] == 0
    folder = tmp_path / "graph.npz.shards"
    writers = {json.loads(shard_paths(folder, s)[1].read_text())["written_by_rank"] for s in range(5)}
    assert writers == {0, 1}, "both ranks wrote shards"
    with Library(library, read_only=True) as lib:
        single = knn_graph(lib, "msssim", 3)
    sharded = KnnGraph.load(out)
    np.testing.assert_array_equal(sharded.indices, single.indices)
    np.testing.assert_allclose(sharded.distances, single.distances, atol=1e-6)
    np.testing.assert_array_equal(sharded.clip_ids, single.clip_ids)

    # A shard lost, one damaged, and the temporary file of a write that was
    # killed: the rerun recomputes the first two and reuses the rest.
    data1, manifest1 = shard_paths(folder, 1)
    data1.unlink()
    data3, _ = shard_paths(folder, 3)
    blob = bytearray(data3.read_bytes())
    blob[-40] ^= 0xFF
    data3.write_bytes(bytes(blob))
    (folder / ".shard-00004.npz.k1ll3d.tmp").write_bytes(b"half a shard")
    before = {s: shard_paths(folder, s)[1].stat().st_mtime_ns for s in (0, 2, 4)}
    second = torchrun(*args)
    sh = second["shards"]
    assert (sh["computed"], sh["reused"]) == (2, 3), sh
    assert sh["recomputed_because"]["1"] == "not written"
    assert "checksum" in sh["recomputed_because"]["3"]
    assert before == {s: shard_paths(folder, s)[1].stat().st_mtime_ns for s in (0, 2, 4)}, "kept shards untouched"
    assert not list(folder.glob("*.tmp")), "the killed write's leftover is gone"
    resumed = KnnGraph.load(out)
    np.testing.assert_array_equal(resumed.indices, single.indices)
    np.testing.assert_allclose(resumed.distances, single.distances, atol=1e-6)


def test_two_gloo_processes_give_the_dense_matrix(library, tmp_path):
    out = tmp_path / "m.npy"
    obj = torchrun("matrix", "--library", library, "--metric", "nlpd", "--out", out, "--json")
    assert obj["shards"]["computed"] == obj["shards"]["total"] == 10  # 10 clips: one row a shard
    m = np.load(out)
    with Library(library, read_only=True) as lib:
        _, d = library_matrix(lib, "nlpd")
    np.testing.assert_allclose(m, d, atol=2e-6)
    np.testing.assert_array_equal(m, m.T)


def test_a_stopped_run_resumes_and_foreign_shards_are_recomputed(library, tmp_path, one_torch_thread):
    out, folder = tmp_path / "g.npz", tmp_path / "shards"
    with Library(library, read_only=True) as lib:
        seen = []
        with pytest.raises(Cancelled):
            matrix_rows(lib, "mse", knn=2, out=out, shard_dir=folder, shard_rows=3, environ={},
                        progress=lambda done, total: seen.append(done), cancel=lambda: len(seen) > 2)
        written = sorted(p.name for p in folder.glob("shard-*.json"))
        assert 0 < len(written) < len(shard_ranges(10, 3)) and not out.exists()
        run = matrix_rows(lib, "mse", knn=2, out=out, shard_dir=folder, shard_rows=3, environ={})
        assert run.shards.reused == len(written) and run.shards.computed == 4 - len(written)
        np.testing.assert_array_equal(KnnGraph.load(out).indices, knn_graph(lib, "mse", 2).indices)
        # The same folder asked for another metric: nothing of the mse run is taken.
        run = matrix_rows(lib, "nlpd", knn=2, out=out, shard_dir=folder, shard_rows=3, environ={})
        assert run.shards.computed == 4 and run.shards.reused == 0
        assert all("another metric ('mse', not 'nlpd')" in why for why in run.shards.recomputed_because.values())
        np.testing.assert_array_equal(KnnGraph.load(out).indices, knn_graph(lib, "nlpd", 2).indices)


@pytest.mark.parametrize("env,message", [
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "MASTER_ADDR and MASTER_PORT not set"),
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two': not a whole number"),
    ({"RANK": "1"}, "WORLD_SIZE is not: start the command with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"}, "RANK=2: must be between 0 and"),
])
def test_a_broken_torchrun_environment_is_named(env, message):
    with pytest.raises(ShardingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DistEnv.from_env(env)


def test_one_process_without_torchrun():
    assert DistEnv.from_env({}) == DistEnv() and not DistEnv.from_env({}).enabled
    assert not DistEnv.from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}).enabled


def test_backend_choice():
    assert choose_backend("auto", "cpu") == "gloo"
    assert choose_backend("gloo", "cpu") == "gloo"
    with pytest.raises(ShardingError, match="--backend"):
        choose_backend("mpi", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ShardingError, match="NCCL needs CUDA GPUs.*use --backend gloo"):
            choose_backend("nccl", "cpu")
    else:
        assert choose_backend("auto", "cuda:0") == "nccl"
        with pytest.raises(ShardingError, match="device is the CPU"):
            choose_backend("nccl", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA device")
def test_nccl_under_torchrun_without_cuda_says_use_gloo(library, tmp_path, monkeypatch, capsys):
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(name, value)
    assert main(["matrix", "--library", str(library), "--knn", "2", "--backend", "nccl",
                 "--out", str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert "NCCL needs CUDA GPUs" in err and "--backend gloo" in err, err
    assert main(["matrix", "--library", str(library), "--knn", "2", "--device", "cuda",
                 "--out", str(tmp_path / "g.npz")]) == 2
    assert "device cuda: torch sees no CUDA device" in capsys.readouterr().err


def test_shards_are_dealt_back_and_forth():
    from perceptlab.analysis.sharding import shard_owner

    assert [shard_owner(s, 2) for s in range(8)] == [0, 1, 1, 0, 0, 1, 1, 0]
    assert [shard_owner(s, 3) for s in range(6)] == [0, 1, 2, 2, 1, 0]
    # Shard s of 16 costs about 16 - s (its rows meet every later clip): two ranks share it evenly.
    cost = [sum(16 - s for s in range(16) if shard_owner(s, 2) == r) for r in (0, 1)]
    assert cost[0] == cost[1]
