"""Persistent search indexes: incremental updates, damage, staleness, two-stage search, the CLI."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_clip

from perceptlab.analysis import indexing
from perceptlab.analysis.neighbours import neighbours, ranking
from perceptlab.analysis.similarity import Query, pair_distances
from perceptlab.library.importer import import_files
from perceptlab.library.indexes import ClipIndex, IndexDamaged, index_dir
from perceptlab.library.store import Library

IMAGE_METRICS = ("mse", "nlpd", "msssim")
ALL_METRICS = IMAGE_METRICS + ("logmel-stats", "mfcc-stats")


@pytest.fixture(autouse=True)
def _fresh_process_state(one_torch_thread):
    indexing.forget()
    yield
    indexing.forget()


def _tree(root: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` distinct clips of different lengths (0.8-2.3 s) and pitches."""
    return [write_clip(root / f"c{i:02d}.wav", seconds=0.8 + 0.15 * (i % 11), freq=150.0 * 1.13 ** i,
                       amp=0.2 + 0.05 * (i % 7)) for i in range(start, start + n)]


def _q(lib: Library, clip) -> Query:
    return Query(clip.path, clip.name, clip)


def _index(lib_path: Path, kind: str = "images") -> ClipIndex:
    from perceptlab.audio.features import FeatureConfig

    return ClipIndex.open(index_dir(lib_path, kind, FeatureConfig().hash))


def _ranks(lib: Library, metric: str, **kw) -> dict:
    return {c.content_hash: [(n.clip.content_hash, n.distance) for n in ranking(lib, _q(lib, c), metric, **kw)]
            for c in lib.clips()}


def test_incremental_index_equals_one_built_from_scratch(tmp_path):
    files = _tree(tmp_path / "audio", 12)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files[:8])
        for m in ALL_METRICS:  # builds every index on first use
            ranking(lib, _q(lib, lib.clips()[0]), m)
        first = _index(lib_path)
        blocks_before = [b["name"] for b in first.manifest["blocks"]]
        assert first.n_alive == 8

        import_files(lib, [files[8]])  # one new clip: one new block, nothing rebuilt
        ranking(lib, _q(lib, lib.clips()[0]), "nlpd")
        grown = _index(lib_path)
        assert [b["name"] for b in grown.manifest["blocks"]][: len(blocks_before)] == blocks_before
        assert len(grown.manifest["blocks"]) == len(blocks_before) + 1 and grown.n_alive == 9

        import_files(lib, files[9:])
        gone = [c.id for c in lib.clips() if c.name in ("c01.wav", "c05.wav")]
        lib.remove_clips(gone)
        incremental = {m: _ranks(lib, m) for m in ALL_METRICS}
        updated = _index(lib_path)
        assert updated.n_alive == 10 and updated.n_rows - updated.n_alive == 2  # tombstones

        indexing.drop_library_indexes(lib_path)
        scratch = {m: _ranks(lib, m) for m in ALL_METRICS}
        rebuilt = _index(lib_path)
        assert rebuilt.n_rows == rebuilt.n_alive == 10
        for h, row in rebuilt.row_of.items():
            np.testing.assert_array_equal(rebuilt.image(row), updated.image(updated.row_of[h]))
            np.testing.assert_array_equal(rebuilt.vectors()[row], updated.vectors()[updated.row_of[h]])
    for m in ALL_METRICS:
        for h, ranked in scratch[m].items():
            got = incremental[m][h]
            assert [a for a, _ in got] == [a for a, _ in ranked], m
            np.testing.assert_allclose([d for _, d in got], [d for _, d in ranked], rtol=1e-9, atol=1e-12)


def test_index_is_memory_mapped_and_compacts(tmp_path):
    files = _tree(tmp_path / "audio", 10)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        ranking(lib, _q(lib, lib.clips()[0]), "mse")
        lib.remove_clips([c.id for c in lib.clips()[:4]])  # 40% tombstones: compacted
        ranking(lib, _q(lib, lib.clips()[0]), "mse")
    index = _index(lib_path)
    assert isinstance(index._blocks[0].images, np.memmap)
    assert isinstance(index.vectors().base, np.memmap) or isinstance(index.vectors(), np.memmap)
    assert len(index.manifest["blocks"]) == 1 and index.n_rows == index.n_alive == 6
    assert sorted(p.name for p in index.directory.glob("b*")) == sorted(
        f"{index.manifest['blocks'][0]['name']}.{part}.npy" for part in ("images", "rows", "vectors"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["vectors-flip", "images-flip", "images-truncate", "manifest-garbage"])
def test_damaged_index_is_detected_and_rebuilt(tmp_path, caplog, damage):
    files = _tree(tmp_path / "audio", 7)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        query = _q(lib, lib.clips()[2])
        before = {m: [(n.clip.id, n.distance) for n in ranking(lib, query, m)] for m in ("nlpd", "logmel-stats")}
    index = _index(lib_path)
    block = index.manifest["blocks"][0]["name"]
    d = index.directory
    if damage == "vectors-flip":
        _flip(d / f"{block}.vectors.npy", 200)
    elif damage == "images-flip":
        _flip(d / f"{block}.images.npy", 128 + 4 * 500)  # inside the first image's bytes
    elif damage == "images-truncate":
        p = d / f"{block}.images.npy"
        p.write_bytes(p.read_bytes()[:-1000])
    else:
        (d / "manifest.json").write_text("{not json")
    if damage != "images-flip":
        with pytest.raises(IndexDamaged):
            ClipIndex.open(d)
    indexing.forget()
    from perceptlab.library import index_files as store

    store._VERIFIED.clear()  # as in a new process: checksums are verified again
    from perceptlab.analysis import clip_inputs

    clip_inputs._INDEX_CACHE.clear()  # ... and no query index is kept from before the damage
    caplog.set_level(logging.WARNING, logger="perceptlab.indexes")
    with Library(lib_path) as lib:
        after = {m: [(n.clip.id, n.distance) for n in ranking(lib, query, m)] for m in ("nlpd", "logmel-stats")}
        n_clips = lib.count()
    messages = [r.getMessage() for r in caplog.records]
    assert any("damaged, dropped and rebuilt" in m for m in messages), messages
    assert indexing.LAST_EVENTS and "damaged" in indexing.LAST_EVENTS[-1][1]
    for m in before:
        assert [i for i, _ in after[m]] == [i for i, _ in before[m]]
        np.testing.assert_allclose([x for _, x in after[m]], [x for _, x in before[m]], rtol=1e-9)
    assert n_clips == 7  # the library itself is untouched
    assert ClipIndex.open(d).n_alive == 7


def test_stale_index_is_updated_before_searching(tmp_path):
    files = _tree(tmp_path / "audio", 8)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files[:6])
        q = _q(lib, lib.clips()[0])
        assert len(neighbours(lib, q, "mse", k=10)) == 5
        # The library changes behind the index: another connection (another program) imports.
        with Library(lib_path) as other:
            import_files(other, files[6:])
            other.remove_clips([other.clips()[3].id])
        found = neighbours(lib, q, "mse", k=3, search="two-stage", budget=3)
        names = {n.clip.name for n in found}
    assert len(found) == 3 and _index(lib_path).n_alive == 7
    with Library(lib_path) as lib:
        exact = [n.clip.name for n in ranking(lib, _q(lib, lib.clip(q.clip.id)), "mse")]
    assert {"c06.wav", "c07.wav"} & set(exact) and names <= set(exact)


def test_two_stage_returns_the_exact_top_k_when_the_budget_covers_the_library(tmp_path):
    files = _tree(tmp_path / "audio", 11)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        for m in IMAGE_METRICS:
            for c in lib.clips()[::3]:
                exact = ranking(lib, _q(lib, c), m)[:4]
                two = neighbours(lib, _q(lib, c), m, k=4, search="two-stage", budget=10)
                assert [n.clip.id for n in two] == [n.clip.id for n in exact], m
                np.testing.assert_allclose([n.distance for n in two], [n.distance for n in exact], rtol=1e-6)
                # and the distances are the pairs' own (no alignment): the documented rule
                for n in two[:2]:
                    ref = pair_distances(lib, _q(lib, c), _q(lib, n.clip), [m], align=False)[m]
                    assert n.distance == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_a_small_budget_still_gives_real_distances(tmp_path):
    files = _tree(tmp_path / "audio", 10)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        c = lib.clips()[4]
        exact = {n.clip.id: n.distance for n in ranking(lib, _q(lib, c), "nlpd")}
        two = neighbours(lib, _q(lib, c), "nlpd", k=3, search="two-stage", budget=3)
    assert len(two) == 3
    for n in two:
        assert n.distance == pytest.approx(exact[n.clip.id], rel=1e-6)
    assert [n.distance for n in two] == sorted(n.distance for n in two)
    with pytest.raises(ValueError, match="budget"):
        with Library(lib_path) as lib:
            neighbours(lib, _q(lib, lib.clips()[0]), "nlpd", search="two-stage", budget=0)
    with pytest.raises(ValueError, match="unknown search"):
        with Library(lib_path) as lib:
            neighbours(lib, _q(lib, lib.clips()[0]), "nlpd", search="fast")


_KILLED_UPDATE = """
import sys, time
from perceptlab.library import indexes
indexes.BLOCK_ROWS = 2
from perceptlab.analysis.indexing import library_index
from perceptlab.library.store import Library
import perceptlab.analysis.indexing as ix
slow = ix.vector_of
def vector_of(kind, image, config):
    time.sleep(0.4)
    return slow(kind, image, config)
ix.vector_of = vector_of
with Library(sys.argv[1]) as lib:
    print("start", flush=True)
    library_index(lib, "images")
"""


def test_an_update_killed_midway_leaves_a_consistent_index(tmp_path):
    files = _tree(tmp_path / "audio", 9)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files[:3])
        ranking(lib, _q(lib, lib.clips()[0]), "mse")
        import_files(lib, files[3:])
    with subprocess.Popen([sys.executable, "-c", _KILLED_UPDATE, str(lib_path)], stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout.readline().strip() == "start"
        time.sleep(1.6)  # a block or two committed, one being written
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = _index(lib_path)  # opens: the manifest is the old one or a newer complete one
    assert 3 <= partial.n_alive < 9
    with Library(lib_path) as lib:
        got = [(n.clip.id, n.distance) for n in ranking(lib, _q(lib, lib.clips()[0]), "mse")]
        indexing.drop_library_indexes(lib_path)
        ref = [(n.clip.id, n.distance) for n in ranking(lib, _q(lib, lib.clips()[0]), "mse")]
    assert [i for i, _ in got] == [i for i, _ in ref]
    np.testing.assert_allclose([d for _, d in got], [d for _, d in ref], rtol=1e-9)
    final = _index(lib_path)
    names = {b["name"] for b in final.manifest["blocks"]}
    assert all(p.name.split(".")[0] in names for p in final.directory.glob("b*"))  # no orphans left


def test_drop_refuses_a_folder_that_is_not_an_index(tmp_path):
    from perceptlab.library.indexes import drop

    d = tmp_path / "x"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an index folder"):
        drop(d)
    assert (d / "notes.txt").exists()


def test_cli_neighbours_unchanged_against_the_exact_path_and_index_commands(tmp_path):
    files = _tree(tmp_path / "audio", 9)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        query = lib.clips()[3]
    out = {}
    for search in ("exact", "auto", "two-stage"):
        extra = ["--budget", "8"] if search == "two-stage" else []
        r = run_cli("neighbours", query.id, "--library", lib_path, "--metric", ",".join(ALL_METRICS), "-k", "4",
                    "--search", search, *extra, "--json")
        out[search] = json.loads(r.stdout)["neighbours"]
    for m in ALL_METRICS:
        ref = [(n["id"], n["distance"]) for n in out["exact"][m]]
        for search in ("auto", "two-stage"):
            got = [(n["id"], n["distance"]) for n in out[search][m]]
            assert [i for i, _ in got] == [i for i, _ in ref], (m, search)
            np.testing.assert_allclose([d for _, d in got], [d for _, d in ref], rtol=1e-6)
    status = json.loads(run_cli("index", "status", "--library", lib_path, "--json").stdout)
    assert status["images"]["alive"] == 9 and status["logmel-stats"]["alive"] == 9
    dropped = json.loads(run_cli("index", "drop", "--library", lib_path, "--json").stdout)["dropped"]
    assert len(dropped) == 3 and not Path(str(lib_path) + ".indexes").exists()
    built = json.loads(run_cli("index", "build", "--library", lib_path, "--json").stdout)
    assert {k: v["alive"] for k, v in built.items() if k in indexing.index_kinds()} == {k: 9 for k in indexing.index_kinds()}
    bad = run_cli("index", "status", "--library", tmp_path / "none.sqlite", check=False)
    assert bad.returncode != 0 and "no library here yet" in bad.stderr


def test_update_library_indexes_reports_progress_and_cancels(tmp_path):
    from perceptlab.tasks import Cancelled

    files = _tree(tmp_path / "audio", 5)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
    with pytest.raises(Cancelled):
        indexing.update_library_indexes(lib_path, cancel=lambda: True)
    seen = []
    result = indexing.update_library_indexes(lib_path, progress=lambda d, t: seen.append((d, t)))
    assert set(result) == set(indexing.index_kinds()) and all(v["alive"] == 5 for v in result.values())
    assert seen[-1][0] == seen[-1][1] and all(0 <= d <= t for d, t in seen)


def test_a_large_librarys_rankings_for_the_panel_are_the_top_lists_of_its_index(tmp_path, monkeypatch):
    """Above FULL_RANKING_MAX clips, rank_all ranks each metric's top TOP_DEPTH through the index."""
    from perceptlab.analysis import rankings
    from perceptlab.audio.features import FeatureConfig

    files = _tree(tmp_path / "audio", 9)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        query = lib.clips()[4]
        full = rankings.rank_all(str(lib_path), query, ["mse", "nlpd"], FeatureConfig())
    monkeypatch.setattr(rankings, "FULL_RANKING_MAX", 5)
    monkeypatch.setattr(rankings, "TOP_DEPTH", 4)
    top = rankings.rank_all(str(lib_path), query, ["mse", "nlpd"], FeatureConfig())
    for m in ("mse", "nlpd"):
        assert len(full["rankings"][m]) == 8 and len(top["rankings"][m]) == 4
        assert [n.clip.id for n in top["rankings"][m]] == [n.clip.id for n in full["rankings"][m][:4]]
    assert set(top["taus"]) <= {("mse", "nlpd")}


def test_the_metric_on_display_comes_first_as_a_top_list_in_a_large_library(tmp_path, monkeypatch):
    from perceptlab.analysis import rankings
    from perceptlab.audio.features import FeatureConfig

    files = _tree(tmp_path / "audio", 8)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
        query = lib.clips()[1]
    monkeypatch.setattr(rankings, "QUICK_FIRST_MIN", 5)
    monkeypatch.setattr(rankings, "QUICK_DEPTH", 3)
    seen = []
    res = rankings.rank_all(str(lib_path), query, ["mse", "nlpd"], FeatureConfig(), first="nlpd",
                            on_metric=lambda m, r: seen.append((m, [n.clip.id for n in r])))
    assert [m for m, _ in seen] == ["nlpd", "nlpd", "mse"]
    assert seen[0][1] == seen[1][1][:3]  # the quick top list is the head of the full ranking
    assert len(seen[0][1]) == 3 and len(seen[1][1]) == 7  # QUICK_DEPTH long, then complete
    assert len(res["rankings"]["nlpd"]) == 7


def _synthetic_index(directory: Path, lengths, seed: int = 0, blocks: int = 2) -> tuple[ClipIndex, list]:
    """An images index of smooth random (128, T) images written in ``blocks`` blocks (no audio needed)."""
    from perceptlab.analysis.indexing import IMAGES, _create
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.metrics.search import sketches

    rng = np.random.default_rng(seed)
    env = np.linspace(1.0, 0.3, 128)[:, None]
    images = [np.clip(env * (0.5 + 0.4 * np.sin(np.arange(t)[None, :] / (3 + i % 5)))
                      + rng.normal(0, 0.05, (128, t)), 0, 1).astype(np.float32) for i, t in enumerate(lengths)]
    index = _create(directory, IMAGES, FeatureConfig())
    cut = np.array_split(np.arange(len(images)), blocks)
    for part in cut:
        ims = [images[i] for i in part]
        entry = index.write_block([f"h{i:04d}" for i in part], zip(ims, sketches(ims)))
        index.commit([entry])
    return index, images


def test_gather_reads_many_images_padded_as_image_reads_one(tmp_path):
    lengths = [22, 130, 64, 90, 31, 77, 45, 128, 100, 23]
    index, images = _synthetic_index(tmp_path / "ix", lengths, blocks=3)
    assert len(index.manifest["blocks"]) == 3
    rows = np.array([7, 0, 9, 3, 3, 5])  # unsorted, across blocks, one twice
    x = index.gather(rows, 140)
    assert x.shape == (6, 1, 128, 140) and x.dtype == np.float32
    for j, r in enumerate(rows):
        t = lengths[r]
        np.testing.assert_array_equal(x[j, 0, :, :t], images[r])
        np.testing.assert_array_equal(x[j, 0, :, :t], index.image(int(r)))
        assert not x[j, 0, :, t:].any()  # padded with silence
    assert index.gather(np.zeros(0, np.int64), 64).shape == (0, 1, 128, 64)
    with pytest.raises(ValueError, match="row 1 has 130 frames, more than the 100"):
        index.gather([0, 1], 100)
    with pytest.raises(ValueError, match="rows must lie in 0..9"):
        index.gather([2, 10], 140)


def test_a_damaged_image_read_in_a_gather_names_its_index(tmp_path):
    index, _ = _synthetic_index(tmp_path / "ix", [40, 50, 60], blocks=1)
    block = index.manifest["blocks"][0]["name"]
    p = index.directory / f"{block}.images.npy"
    with open(p, "r+b") as f:  # in place, as a failing disk would: the open map sees it
        f.seek(128 + 4 * 128 * 40 + 8)  # inside row 1's image
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    index.gather([0, 2], 64)  # the other rows still read
    with pytest.raises(IndexDamaged, match="row 1 fails its checksum") as info:
        index.gather([0, 1], 64)
    assert info.value.index is index
    with pytest.raises(IndexDamaged) as info:
        index.image(1)
    assert info.value.index is index


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_two_stage_gives_the_same_answer_read_by_gather_or_one_by_one(tmp_path, metric):
    from perceptlab.metrics.search import SketchSearch, two_stage, whole_distances

    lengths = [int(t) for t in np.random.default_rng(5).integers(22, 131, 40)]
    index, images = _synthetic_index(tmp_path / "ix", lengths, seed=2)
    search = SketchSearch(index.vectors(), index.lengths, 128)
    query = images[3]
    allowed = np.ones(index.n_rows, bool)
    allowed[3] = False
    one = two_stage(query, search, index.image, metric, 12, allowed)
    many = two_stage(query, search, None, metric, 12, allowed, gather=index.gather)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])
    assert len(many[0]) == 12 and 3 not in many[0].tolist()
    exact = whole_distances(query, images, lengths, metric)
    np.testing.assert_allclose(many[1], exact[many[0]], rtol=1e-6, atol=1e-9)  # the real metric's
    with pytest.raises(ValueError, match="give the images"):
        whole_distances(query, None, lengths, metric)


def test_sketch_estimates_are_the_same_from_a_by_dimension_map_and_a_row_major_array(tmp_path):
    from perceptlab.metrics.search import SketchSearch, sketch

    lengths = [int(t) for t in np.random.default_rng(1).integers(22, 131, 30)]
    index, images = _synthetic_index(tmp_path / "ix", lengths, blocks=1)
    mapped = SketchSearch(index.vectors(), index.lengths, 128, chunk_rows=7)
    assert mapped._by_dim is not None  # the index keeps sketches by dimension
    rows = SketchSearch(np.ascontiguousarray(index.vectors()), index.lengths, 128, chunk_rows=7)
    assert rows._by_dim is None
    q = images[4]
    others = np.arange(len(lengths)) != 4  # the query's own estimate is float32 cancellation, about 0
    for metric in ("mse", "nlpd"):
        a, b = mapped.estimates(q, metric), rows.estimates(q, metric)
        np.testing.assert_allclose(a[others], b[others], rtol=1e-4, atol=1e-6)
        assert a[4] < 1e-3 * a[others].min() + 1e-4 and b[4] < 1e-3 * b[others].min() + 1e-4
    assert sorted(rows._norms) == list(range(7))
    fresh = SketchSearch(index.vectors(), index.lengths, 128)
    fresh.estimates(q, "mse")
    assert sorted(fresh._norms) == [0]  # an MSE search reads only the pooled part
    v = np.asarray(index.vectors(), np.float64)
    qs = sketch(q).astype(np.float64)
    np.testing.assert_allclose(fresh._sq(sketch(q), [0])[:, 0], ((v[:, :512] - qs[:512]) ** 2).sum(1),
                               rtol=1e-3, atol=1e-3)


def test_a_new_process_trusts_verified_file_versions_but_not_a_changed_file(tmp_path, monkeypatch):
    from perceptlab.library import index_files as store

    index, _ = _synthetic_index(tmp_path / "ix", [40, 50, 60, 70], blocks=2)
    d = index.directory
    stamp = json.loads((d / "verified.json").read_text())
    assert sorted(stamp) == sorted(p.name for p in d.glob("b*.npy") if not p.name.endswith("images.npy"))
    read = []
    real = store._crc_file
    monkeypatch.setattr(store, "_crc_file", lambda p: read.append(Path(p).name) or real(p))
    store._VERIFIED.clear()  # as in a new process
    assert ClipIndex.open(d).n_rows == 4 and read == []  # the verified versions are not read again
    block = index.manifest["blocks"][1]["name"]
    with open(d / f"{block}.vectors.npy", "r+b") as f:  # damaged in place, same size
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))
    store._VERIFIED.clear()
    with pytest.raises(IndexDamaged, match="checksum mismatch"):
        ClipIndex.open(d)
    assert read == [f"{block}.vectors.npy"]  # only the changed file is read
    (d / "verified.json").write_text("{not json")  # a damaged record only costs a verification
    store._VERIFIED.clear()
    with pytest.raises(IndexDamaged, match="checksum mismatch"):
        ClipIndex.open(d)
    from perceptlab.library.indexes import drop

    assert drop(d) and not d.exists()  # the record is an index file: drop removes it
