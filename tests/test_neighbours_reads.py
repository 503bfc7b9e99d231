"""What a neighbours query reads of a library: ids and hashes of every clip, whole rows of the k found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import import_tree, write_clip

from perceptlab.analysis import indexing
from perceptlab.analysis.neighbours import neighbours, ranking
from perceptlab.analysis.similarity import Query
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library


@pytest.fixture(autouse=True)
def _fresh_process_state(one_torch_thread):
    indexing.forget()
    yield
    indexing.forget()


def _q(clip) -> Query:
    return Query(clip.path, clip.name, clip)


def _library(tmp_path: Path, n: int) -> Path:
    files = [write_clip(tmp_path / "audio" / f"c{i:02d}.wav", seconds=0.8 + 0.15 * (i % 11), freq=150.0 * 1.13 ** i,
                        amp=0.2 + 0.05 * (i % 7)) for i in range(n)]
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, files)
    return lib_path


def test_clip_keys_are_the_good_clips_in_the_order_of_clips(tmp_path, clip_tree):
    lib_path = import_tree(tmp_path, clip_tree, broken=True)
    with Library(lib_path, read_only=True) as lib:
        clips = lib.clips()
        keys = lib.clip_keys()
        assert keys == [(c.id, c.content_hash) for c in clips]
        assert len(keys) == 9 and len(lib.clips(include_failed=True)) == 10  # the broken clip left out
        ids = [c.id for c in clips][::-1]
        assert lib.clips_by_ids(ids) == clips[::-1]
        assert lib.clips_by_ids([]) == []
        with pytest.raises(KeyError, match=r"no clip with id 9999 in .*lib\.sqlite"):
            lib.clips_by_ids([ids[0], 9999])


def test_two_stage_neighbours_read_whole_rows_only_of_the_clips_they_return(tmp_path, monkeypatch):
    lib_path = _library(tmp_path, 12)
    indexing.update_library_indexes(lib_path)
    with Library(lib_path) as lib:
        query = lib.clips()[3]
        exact = {m: ranking(lib, _q(query), m)[:4] for m in ("mse", "nlpd")}
        read = []

        def no_clips(self, **kw):
            raise AssertionError("a search over the index read every clip whole")

        by_ids = Library.clips_by_ids
        monkeypatch.setattr(Library, "clips", no_clips)
        monkeypatch.setattr(Library, "clips_by_ids", lambda self, ids: read.append(list(ids)) or by_ids(self, ids))
        for m in ("mse", "nlpd"):
            found = neighbours(lib, _q(query), m, k=4, search="two-stage", budget=11)
            assert [n.clip for n in found] == [n.clip for n in exact[m]], m
            assert [n.rank for n in found] == [1, 2, 3, 4]
            np.testing.assert_allclose([n.distance for n in found], [n.distance for n in exact[m]], rtol=1e-6)
    assert [len(ids) for ids in read] == [4, 4]


def test_two_stage_neighbours_of_a_subset_read_no_other_clip(tmp_path, monkeypatch):
    lib_path = _library(tmp_path, 10)
    indexing.update_library_indexes(lib_path)
    with Library(lib_path) as lib:
        clips = lib.clips()
        subset = clips[::2]
        exact = ranking(lib, _q(subset[0]), "mse", candidates=subset)[:3]
        monkeypatch.setattr(Library, "clips", lambda self, **kw: pytest.fail("read every clip whole"))
        monkeypatch.setattr(Library, "clips_by_ids", lambda self, ids: pytest.fail("read the found clips again"))
        found = neighbours(lib, _q(subset[0]), "mse", k=3, candidates=subset, search="two-stage", budget=4)
    assert [n.clip.id for n in found] == [n.clip.id for n in exact]
    assert all(n.clip in subset for n in found)


def test_a_damaged_image_met_by_a_two_stage_search_rebuilds_the_index_and_answers(tmp_path):
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.library import index_files
    from perceptlab.library.indexes import ClipIndex, index_dir

    lib_path = _library(tmp_path, 9)
    with Library(lib_path) as lib:
        query = lib.clips()[0]
        before = [(n.clip.id, n.distance) for n in neighbours(lib, _q(query), "mse", k=8, search="two-stage",
                                                               budget=8)]
    index = ClipIndex.open(index_dir(lib_path, "images", FeatureConfig().hash))
    path = index.directory / f"{index.manifest['blocks'][0]['name']}.images.npy"
    data = bytearray(path.read_bytes())
    for off in range(128, len(data), 4096):  # every image of the block
        data[off] ^= 0xFF
    path.write_bytes(bytes(data))
    indexing.forget()
    index_files._VERIFIED.clear()  # as in a new process
    n_events = len(indexing.LAST_EVENTS)
    with Library(lib_path) as lib:
        after = [(n.clip.id, n.distance) for n in neighbours(lib, _q(query), "mse", k=8, search="two-stage",
                                                              budget=8)]
    assert any("fails its checksum" in reason for _, reason in indexing.LAST_EVENTS[n_events:])
    assert [i for i, _ in after] == [i for i, _ in before]
    np.testing.assert_allclose([d for _, d in after], [d for _, d in before], rtol=1e-6)


def test_prepare_search_opens_an_existing_index_and_builds_none(tmp_path):
    from perceptlab.analysis import neighbours as nb
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.library.indexes import index_dir

    lib_path = _library(tmp_path, 6)
    assert nb.prepare_search(str(lib_path)) is False  # no index yet: nothing is built at start-up
    assert not index_dir(lib_path, "images", FeatureConfig().hash).exists()
    indexing.update_library_indexes(lib_path)
    indexing.forget()
    nb._SKETCH_SEARCH.clear()
    assert nb.prepare_search(str(lib_path)) is True
    (key, search), = nb._SKETCH_SEARCH.items()
    assert key[0] == str(index_dir(lib_path, "images", FeatureConfig().hash)) and len(search.lengths) == 6
    assert 0 in search._norms  # the pooled norms an MSE query needs are ready
    with Library(lib_path) as lib:
        q = lib.clips()[0]
        found = neighbours(lib, _q(q), "mse", k=2, search="two-stage", budget=3)
        assert [n.clip.id for n in found] == [n.clip.id for n in ranking(lib, _q(q), "mse")[:2]]
    assert nb._SKETCH_SEARCH == {key: search}  # the query used the prepared search
