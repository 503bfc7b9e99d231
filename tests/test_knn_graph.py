"""The k-nearest-neighbour graph of a library, computed in blocks of rows.

Its rows must be the top K of the dense matrix (``library_matrix``), for
whole clips of different widths, centre excerpts and the vector baselines;
ties keep the lower row; the block size follows the memory budget; progress
counts rows and cancel stops between blocks; the files read back.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from perceptlab.analysis.knn_graph import GRAPH_SUFFIXES, KnnGraph, RowEngine, dense_top_k, knn_graph, top_k
from perceptlab.analysis.matrices import library_matrix
from perceptlab.cli import main
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from perceptlab.tasks import Cancelled

RATE = 22050
# Lengths over several rungs of the comparison ladder, so whole clips of
# different widths meet.
SECONDS = (0.5, 0.9, 1.3, 2.1, 3.2, 0.7, 1.6)


def _write_library(root, n=14, duplicate=False):
    rng = np.random.default_rng(7)
    clips = root / "clips"
    for i in range(n):
        t = np.arange(int(SECONDS[i % len(SECONDS)] * RATE)) / RATE
        f = 110.0 * 2 ** rng.uniform(0, 4)
        x = 0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 6) * t))
        x += 0.02 * rng.standard_normal(t.size)
        label = "abc"[i % 3]
        (clips / label).mkdir(parents=True, exist_ok=True)
        sf.write(clips / label / f"c{i:02d}.wav", x.astype(np.float32), RATE)
    if duplicate:
        shutil.copy(clips / "a" / "c00.wav", clips / "a" / "c00_copy.wav")
    path = root / "lib.sqlite"
    with Library(path) as lib:
        import_files(lib, [clips])
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return _write_library(tmp_path_factory.mktemp("knn"))


@pytest.fixture(scope="module")
def lib(library):
    with Library(library, read_only=True) as lib:
        yield lib


def _assert_graph_is_dense_top_k(graph_idx, graph_dist, d, k):
    di, dd = dense_top_k(d, k)
    # The library's clips are distinct: no two candidate distances of a row
    # within 1e-5 of each other near the cut, so the order must agree exactly.
    s = np.sort(d + np.diag(np.full(len(d), np.inf)), axis=1)[:, : k + 1]
    assert np.diff(s, axis=1).min() > 1e-5
    np.testing.assert_array_equal(graph_idx, di)
    np.testing.assert_allclose(graph_dist, dd, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("metric,excerpt", [("mse", "whole"), ("nlpd", "whole"), ("msssim", "whole"),
                                            ("nlpd", "centre"), ("msssim", "centre"),
                                            ("logmel-stats", "whole")])
def test_graph_rows_are_the_top_k_of_the_dense_matrix(lib, metric, excerpt, one_torch_thread):
    clips, d = library_matrix(lib, metric, excerpt=excerpt)
    g = knn_graph(lib, metric, 4, excerpt=excerpt)
    assert g.indices.shape == (len(clips), 4) and g.indices.dtype == np.int64
    assert g.distances.dtype == np.float64
    assert [c.id for c in clips] == g.clip_ids.tolist()
    _assert_graph_is_dense_top_k(g.indices, g.distances, d, 4)
    assert not (g.indices == np.arange(len(clips))[:, None]).any(), "a clip is not its own neighbour"


def test_the_library_mixes_compared_widths(lib):
    from perceptlab.audio.features import compared_width
    from perceptlab.library.features import clip_image

    widths = {compared_width(clip_image(lib, c).shape[1]) for c in lib.clips()}
    assert len(widths) >= 5, widths


def test_every_row_equals_the_dense_row_under_a_tiny_budget(lib, one_torch_thread):
    """Blocks of one or two rows and query chunks of one clip give the dense matrix's rows."""
    clips, d = library_matrix(lib, "msssim")
    engine = RowEngine(lib, "msssim", memory_budget_mb=0.0005)
    assert engine.block_rows() == 1
    rows = np.concatenate([engine.rows(r, min(r + 2, engine.n)) for r in range(0, engine.n, 2)])
    np.testing.assert_allclose(rows, d, atol=2e-6)
    assert np.all(np.diag(rows) == 0.0)


def test_blocks_follow_the_memory_budget(lib):
    engine = RowEngine(lib, "mse", memory_budget_mb=24 * 14 * 5 / (1 << 20))  # five rows of 14
    assert engine.n == 14 and engine.block_rows() == 5
    assert RowEngine(lib, "mse", memory_budget_mb=512).block_rows() == 14  # all of them
    calls = []
    knn_graph(lib, "mse", 3, memory_budget_mb=24 * 14 * 5 / (1 << 20), progress=lambda a, b: calls.append((a, b)))
    assert calls == [(0, 14), (5, 14), (10, 14), (14, 14)]


def test_cancel_stops_between_blocks(lib):
    seen = []

    def progress(done, total):
        seen.append(done)

    with pytest.raises(Cancelled):
        knn_graph(lib, "mse", 3, memory_budget_mb=24 * 14 * 2 / (1 << 20), progress=progress,
                  cancel=lambda: len(seen) >= 2)
    assert seen == [0, 2], "the work stopped after the first block of two rows"


def test_ties_keep_the_lower_row_first():
    slab = np.array([[0.0, 0.5, 0.2, 0.5, 0.2],
                     [0.3, 0.0, 0.3, 0.3, 0.1]])
    idx, dist = top_k(slab, 3, 0)
    np.testing.assert_array_equal(idx, [[2, 4, 1], [4, 0, 2]])
    np.testing.assert_array_equal(dist, [[0.2, 0.2, 0.5], [0.1, 0.3, 0.3]])
    with pytest.raises(ValueError, match="between 1 and 4"):
        top_k(slab, 5, 0)


def test_a_duplicate_clip_ties_and_the_earlier_one_comes_first(tmp_path, one_torch_thread):
    path = _write_library(tmp_path, n=6, duplicate=True)
    with Library(path, read_only=True) as lib:
        clips = lib.clips()
        names = [c.name for c in clips]
        a, b = names.index("c00.wav"), names.index("c00_copy.wav")
        g = knn_graph(lib, "nlpd", len(clips) - 1)
        _, d = library_matrix(lib, "nlpd")
    assert g.indices[a, 0] == b and g.indices[b, 0] == a and g.distances[a, 0] < 1e-6
    for i in range(len(clips)):
        if i in (a, b):
            continue
        row = list(g.indices[i])
        pa, pb = row.index(a), row.index(b)
        assert g.distances[i, pa] == g.distances[i, pb], "the two copies are exactly as far"
        assert pa == pb - 1 and min(a, b) == row[min(pa, pb)], "the earlier copy first, right before the other"
        np.testing.assert_allclose(g.distances[i], np.sort(np.delete(d[i], i)), atol=2e-6)


def test_the_graph_files_read_back(lib, tmp_path):
    g = knn_graph(lib, "mse", 3)
    assert set(GRAPH_SUFFIXES) == {".npz", ".csv", ".jsonl"}
    back = KnnGraph.load(g.save(tmp_path / "g.npz"))
    np.testing.assert_array_equal(back.indices, g.indices)
    np.testing.assert_array_equal(back.distances, g.distances)
    np.testing.assert_array_equal(back.clip_ids, g.clip_ids)
    assert back.names == g.names and back.meta["metric"] == "mse" and back.meta["k"] == 3
    with open(g.save(tmp_path / "g.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(g) * 3
    first = rows[0]
    assert int(first["clip_id"]) == g.clip_ids[0] and int(first["neighbour_id"]) == g.clip_ids[g.indices[0, 0]]
    assert float(first["distance"]) == g.distances[0, 0]
    lines = (g.save(tmp_path / "g.jsonl")).read_text().splitlines()
    assert len(lines) == len(g)
    row = json.loads(lines[5])
    assert row["id"] == g.clip_ids[5] and [n["id"] for n in row["neighbours"]] == g.clip_ids[g.indices[5]].tolist()
    with pytest.raises(ValueError, match="written as"):
        g.save(tmp_path / "g.txt")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a k-NN graph"):
        KnnGraph.load(tmp_path / "bad.npz")


def test_matrix_knn_command(library, lib, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "graph.npz"
    assert main(["matrix", "--library", str(library), "--metric", "nlpd", "--knn", "3", "--out", str(out),
                 "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["k"] == 3 and obj["n"] == 14 and obj["out"] == str(out.resolve()) and obj["device"] == "cpu"
    g = KnnGraph.load(out)
    _, d = library_matrix(lib, "nlpd")
    _assert_graph_is_dense_top_k(g.indices, g.distances, d, 3)
    # Without --out the graph is printed.
    assert main(["matrix", "--library", str(library), "--metric", "mse", "--knn", "2", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["graph"]) == 14 and len(obj["graph"][0]["neighbours"]) == 2
    assert main(["matrix", "--library", str(library), "--metric", "mse", "--knn", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 nearest neighbours of each of 14 clips" in text and "c00.wav:" in text


def test_dense_matrix_by_rows_equals_the_dense_matrix(library, lib, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "d.npy"
    assert main(["matrix", "--library", str(library), "--metric", "msssim", "--out", str(out),
                 "--shard-dir", str(tmp_path / "shards"), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["shards"]["computed"] == obj["shards"]["total"] == 14 and obj["shards"]["processes"] == 1
    m = np.load(out)
    _, d = library_matrix(lib, "msssim")
    np.testing.assert_allclose(m, d, atol=2e-6)
    np.testing.assert_array_equal(m, m.T)
    assert np.all(np.diag(m) == 0.0)


@pytest.mark.parametrize("argv,message", [
    (["--knn", "0"], "--knn 0: must be at least 1"),
    (["--knn", "14"], "--knn 14: must be between 1 and 13"),
    (["--knn", "3", "--out", "g.npy"], "must name a .npz or .csv or .jsonl file"),
    (["--out", "m.npz", "--shard-dir", "s"], "must name a .npy file"),
    (["--knn", "3", "--shard-dir", "s"], "give --out"),
    (["--knn", "3", "--shard-rows", "0", "--out", "g.npz"], "--shard-rows 0: must be at least 1"),
    (["--knn", "3", "--device", "tpu"], "device tpu"),
])
def test_matrix_rows_refuses_bad_input_clearly(library, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["matrix", "--library", str(library), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perceptlab: error: ") and message in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA device")
def test_matrix_on_cuda_without_a_gpu_names_the_device(library, capsys):
    for argv in (["--device", "cuda"], ["--device", "cuda:1", "--knn", "2"]):
        assert main(["matrix", "--library", str(library), *argv]) == 2
        err = capsys.readouterr().err
        assert f"device {argv[1]}: torch sees no CUDA device" in err and "--device cpu" in err, err


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@CUDA
@pytest.mark.parametrize("metric,excerpt", [("mse", "whole"), ("nlpd", "whole"), ("msssim", "whole"),
                                            ("msssim", "centre"), ("logmel-stats", "whole")])
def test_rows_on_cuda_equal_rows_on_the_cpu(lib, metric, excerpt):
    cpu = RowEngine(lib, metric, excerpt=excerpt).rows(0, 14)
    gpu = RowEngine(lib, metric, excerpt=excerpt, device="cuda").rows(0, 14)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    g_cpu, g_gpu = knn_graph(lib, metric, 3, excerpt=excerpt), knn_graph(lib, metric, 3, excerpt=excerpt,
                                                                         device="cuda")
    np.testing.assert_allclose(g_gpu.distances, g_cpu.distances, atol=1e-4)


# -- the matrix part of the GPU check ---------------------------------------------


def test_matrix_gpu_check_compares_every_engine_and_flags_a_disagreement(library, one_torch_thread):
    from perceptlab.analysis.matrix_gpu_check import run_checks
    from perceptlab.metrics.registry import list_metrics

    lines = []
    report = run_checks(library, device="cpu", sharded=False, out=lines.append)
    names = [c["name"] for c in report["checks"]]
    for m in list_metrics():
        if ":" in m.name:
            continue
        assert f"engine {m.name}" in names
        assert f"rows {m.name} whole" in names
        if m.input_kind != "vector":
            assert f"rows {m.name} centre" in names
    assert report["ok"] and len(lines) == len(names)
    strict = run_checks(library, device="cpu", tolerance=-1.0, sharded=False, out=lines.append)
    assert not strict["ok"] and not any(c["ok"] for c in strict["checks"])


def test_matrix_gpu_check_graphs_agree_up_to_near_ties():
    from perceptlab.analysis.matrix_gpu_check import _graphs_agree

    idx = np.array([[1, 2, 3], [0, 2, 3]])
    dist = np.array([[0.1, 0.2, 0.3], [0.1, 0.5, 0.50001]])
    assert _graphs_agree(idx, dist, idx, dist, 1e-4) == (True, 0)
    swapped = np.array([[1, 2, 3], [0, 3, 2]])
    assert _graphs_agree(idx, dist, swapped, dist[:, [0, 2, 1]], 1e-4) == (True, 0), "a near-tie may swap"
    assert _graphs_agree(idx, dist, np.array([[2, 1, 3], [0, 2, 3]]), dist, 1e-4) == (False, 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA device")
def test_matrix_gpu_check_without_cuda_exits_2(capsys):
    from perceptlab.analysis.matrix_gpu_check import main as check_main

    assert check_main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@CUDA
def test_matrix_gpu_check_on_cuda(library):
    from perceptlab.analysis.matrix_gpu_check import run_checks

    report = run_checks(library, device="cuda", sharded=True, out=print)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]


def test_pieces_of_rows_merge_into_the_whole_graph(lib, one_torch_thread):
    """Rows cut anywhere (as shards cut them) give, merged, the graph of all rows at once."""
    from perceptlab.analysis.knn_graph import dense_matrix, merge_top_k, owned_knn, owned_rows, place_owned

    engine = RowEngine(lib, "nlpd", memory_budget_mb=24 * 14 * 4 / (1 << 20))  # blocks of four rows
    whole_i, whole_d = owned_knn(engine, 5, 0, 14)
    idx, dist = np.full((14, 5), -1), np.full((14, 5), np.inf)
    for r0, r1 in ((0, 3), (3, 4), (4, 11), (11, 14)):
        part_i, part_d = owned_knn(engine, 5, r0, r1)
        assert part_i.shape == (14, 5)
        idx, dist = merge_top_k(idx, dist, part_i, part_d, 5)
    np.testing.assert_array_equal(idx, whole_i)
    np.testing.assert_array_equal(dist, whole_d)
    d = dense_matrix(engine)
    np.testing.assert_array_equal(d, d.T)
    m = np.zeros((14, 14))
    for r0, r1 in ((0, 5), (5, 14)):
        place_owned(m, r0, owned_rows(engine, r0, r1))
    np.fill_diagonal(m, 0.0)
    np.testing.assert_array_equal(m, d)


def test_merge_keeps_the_closest_and_the_lower_index_on_ties():
    from perceptlab.analysis.knn_graph import merge_top_k

    idx, dist = merge_top_k(np.array([[7, 2, -1]]), np.array([[0.3, 0.5, np.inf]]),
                            np.array([[5, 1]]), np.array([[0.3, 0.1]]), 3)
    np.testing.assert_array_equal(idx, [[1, 5, 7]])
    np.testing.assert_array_equal(dist, [[0.1, 0.3, 0.3]])
