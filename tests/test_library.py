"""The SQLite library on real files: import, incremental re-import, crash safety, cache repair."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from perceptlab.audio.features import FeatureConfig
from perceptlab.library.features import clip_excerpts, clip_image, file_image
from perceptlab.library.importer import import_files, read_labels_csv, scan
from perceptlab.library.store import SCHEMA_VERSION, Library, LibraryError, default_library_path
from perceptlab.tasks import Cancelled
from conftest import write_clip


def _state(lib: Library):
    """Everything an import decides, minus timestamps."""
    clips = [(Path(c.path).name, c.content_hash, c.label, c.duration, c.error)
             for c in lib.clips(include_failed=True)]
    feats = sorted(lib.conn.execute("SELECT content_hash, config_hash, checksum FROM features").fetchall())
    return clips, feats


def test_import_labels_from_folders_and_caches_features(tmp_path, clip_tree):
    with Library(tmp_path / "lib.sqlite") as lib:
        s = import_files(lib, [clip_tree])
        assert len(s.imported) == 9 and not s.failed
        assert lib.labels() == ["high", "low", "mid"]
        clips = lib.clips()
        assert len(clips) == 9
        c = next(c for c in clips if c.name == "mid_2.wav")
        assert c.label == "mid" and c.duration == pytest.approx(1.5) and c.sample_rate == 22050
        cached = lib.get_features(c.content_hash, FeatureConfig().hash)
        assert cached is not None and cached.shape == (128, 1 + int(1.5 * 22050) // 512)
        # Exact: the cache returns the bytes it stored, computed by the same code on the same file.
        np.testing.assert_array_equal(cached, file_image(c.path))
        assert lib.schema_version == SCHEMA_VERSION


def test_reimport_skips_unchanged_and_picks_up_changes(tmp_path, clip_tree):
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree])
        s = import_files(lib, [clip_tree])
        assert len(s.skipped) == 9 and not s.imported
        changed = clip_tree / "low" / "low_0.wav"
        before = lib.clip_by_path(changed)
        time.sleep(0.01)
        write_clip(changed, seconds=2.0, freq=1234.0)
        write_clip(clip_tree / "low" / "new.flac", seconds=1.0, freq=500.0)
        s = import_files(lib, [clip_tree])
        assert sorted(Path(p).name for p in s.imported) == ["low_0.wav", "new.flac"]
        after = lib.clip_by_path(changed)
        assert after.id == before.id and after.content_hash != before.content_hash
        assert after.duration == pytest.approx(2.0)


def test_bad_files_are_recorded_and_do_not_stop_the_import(tmp_path, clip_tree):
    (clip_tree / "mid" / "broken.wav").write_text("not audio at all" * 20)
    (clip_tree / "mid" / "empty.flac").write_bytes(b"")
    with Library(tmp_path / "lib.sqlite") as lib:
        s = import_files(lib, [clip_tree])
        assert len(s.imported) == 9
        failed = {Path(p).name: r for p, r in s.failed}
        assert set(failed) == {"broken.wav", "empty.flac"}
        assert "not a recognised audio format" in failed["broken.wav"]
        assert "empty" in failed["empty.flac"]
        assert lib.count() == 9 and lib.count(include_failed=True) == 11
        # Re-import reports them again without re-reading them.
        s = import_files(lib, [clip_tree])
        assert len(s.failed) == 2 and len(s.skipped) == 9


def test_labels_csv_overrides_folders(tmp_path, clip_tree):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + f"{clip_tree}/low/low_0.wav,bass\nclips/mid/mid_1.wav,middle\n")
    labels = read_labels_csv(csv)
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree], labels=labels)
        by_name = {c.name: c.label for c in lib.clips()}
        assert by_name["low_0.wav"] == "bass" and by_name["mid_1.wav"] == "middle"
        assert by_name["high_0.wav"] == "high"


def test_bad_labels_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("just-one-column\n")
    with pytest.raises(ValueError, match="bad.csv:1: expected 'path,label'"):
        read_labels_csv(bad)
    with pytest.raises(ValueError, match="cannot read labels CSV"):
        read_labels_csv(tmp_path / "missing.csv")


def test_scan_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan([tmp_path / "nowhere"])


def test_cancel_keeps_what_was_done(tmp_path, clip_tree):
    with Library(tmp_path / "lib.sqlite") as lib:
        seen = []
        with pytest.raises(Cancelled):
            import_files(lib, [clip_tree], progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) > 4)
        assert lib.count() == 4
        s = import_files(lib, [clip_tree])
        assert len(s.imported) == 5 and len(s.skipped) == 4


def test_corrupt_feature_blob_is_recomputed(tmp_path, clip_tree):
    cfg = FeatureConfig()
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree])
        clip = lib.clips()[0]
        good = clip_image(lib, clip, cfg)
        lib.conn.execute("UPDATE features SET data = ? WHERE content_hash = ?",
                         (b"\x00garbage" * 10, clip.content_hash))
        assert lib.get_features(clip.content_hash, cfg.hash) is None  # detected, dropped
        np.testing.assert_array_equal(clip_image(lib, clip, cfg), good)  # recomputed
        assert lib.get_features(clip.content_hash, cfg.hash) is not None  # and stored again
        # A flipped byte with the right length is caught by the checksum.
        blob = bytearray(lib.conn.execute("SELECT data FROM features WHERE content_hash = ?",
                                          (clip.content_hash,)).fetchone()[0])
        blob[100] ^= 0xFF
        lib.conn.execute("UPDATE features SET data = ? WHERE content_hash = ?", (bytes(blob), clip.content_hash))
        np.testing.assert_array_equal(clip_image(lib, clip, cfg), good)


def test_moved_file_without_cache_is_a_clear_error(tmp_path, clip_tree):
    from perceptlab.audio.decode import AudioError

    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree])
        clip = lib.clips()[0]
        lib.drop_features(clip.content_hash)
        os.remove(clip.path)
        with pytest.raises(AudioError, match="moved or been deleted"):
            clip_image(lib, clip)


def test_excerpts_stack(tmp_path, clip_tree):
    with Library(tmp_path / "lib.sqlite") as lib:
        import_files(lib, [clip_tree])
        x = clip_excerpts(lib, lib.clips(), n_frames=64)
        assert x.shape == (9, 1, 128, 64) and x.dtype == np.float32


def test_not_a_library(tmp_path):
    p = tmp_path / "notes.sqlite"
    p.write_text("hello, I am a text file pretending to be a database" * 100)
    with pytest.raises(LibraryError, match="not a usable perceptlab library"):
        Library(p)
    assert p.read_text().startswith("hello")  # untouched


def test_newer_schema_is_refused(tmp_path):
    p = tmp_path / "future.sqlite"
    Library(p).close()
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.close()
    with pytest.raises(LibraryError, match="newer than this perceptlab understands"):
        Library(p)


def test_default_location_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPTLAB_LIBRARY", str(tmp_path / "x.sqlite"))
    assert default_library_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("PERCEPTLAB_LIBRARY")
    assert default_library_path().name == "library.sqlite"
    assert str(default_library_path()).startswith(os.environ["XDG_DATA_HOME"])


def test_import_killed_midway_then_rerun_equals_uninterrupted(tmp_path):
    root = tmp_path / "many"
    for i in range(60):
        write_clip(root / f"l{i % 3}" / f"c{i:02d}.flac", seconds=3.0, rate=44100, channels=2,
                   freq=100.0 + 37 * i, fmt="FLAC")
    killed = tmp_path / "killed.sqlite"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "perceptlab.cli", "import", str(root), "--library", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if killed.exists():
                try:
                    con = sqlite3.connect(f"file:{killed}?mode=ro", uri=True, timeout=5)
                    n = con.execute("SELECT COUNT(*) FROM clips").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    continue
                if n >= 5:
                    break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    with Library(killed) as lib:
        n_killed = lib.count()
        assert 5 <= n_killed < 60, f"the import was not interrupted midway ({n_killed} clips)"
        # Consistent: every clip row has its features, no orphan features.
        hashes = {c.content_hash for c in lib.clips()}
        feats = {r[0] for r in lib.conn.execute("SELECT content_hash FROM features")}
        assert hashes == feats
        s = import_files(lib, [root])
        assert len(s.skipped) == n_killed and len(s.imported) == 60 - n_killed
        state_resumed = _state(lib)
    with Library(tmp_path / "clean.sqlite") as lib:
        import_files(lib, [root])
        assert _state(lib) == state_resumed


def test_migration_from_version_1_keeps_clips(tmp_path, clip_tree):
    """A version-1 file (clips and features only) upgrades in place."""
    from perceptlab.library import schema

    p = tmp_path / "old.sqlite"
    con = sqlite3.connect(p, isolation_level=None)
    for stmt in schema._split_sql(schema.MIGRATIONS[0]):
        con.execute(stmt)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO clips (path, name, content_hash, size, mtime, label, imported_at) "
                "VALUES ('/x/a.wav', 'a.wav', 'abc', 10, 1.0, 'l', 0)")
    con.close()
    with Library(p) as lib:
        assert lib.schema_version == SCHEMA_VERSION
        assert [c.name for c in lib.clips()] == ["a.wav"]
        lib.register_model("m1", "demo", "/m.pt", {"loss": "nlpd"})
        lib.put_embeddings("m1", {"abc": np.arange(4, dtype=np.float32)})
        np.testing.assert_array_equal(lib.get_embeddings("m1")["abc"], np.arange(4))
        run = lib.add_run("r", {"epochs": 1}, "/out")
        lib.update_run(run, status="completed", final_metrics={"val_loss": 0.1})
        assert lib.runs()[0]["final_metrics"] == {"val_loss": 0.1}


def test_migration_statements_are_split_by_sqlites_tokenizer():
    """A ';' or '--' inside a string literal neither ends a statement nor starts a comment."""
    from perceptlab.library import schema

    script = (
        "-- a leading comment; with a semicolon\n"
        "CREATE TABLE t (a TEXT DEFAULT 'x; -- not a comment');  -- trailing\n"
        "INSERT INTO t VALUES ('a;b');\n"
        "INSERT INTO t DEFAULT VALUES;\n"
    )
    statements = list(schema._split_sql(script))
    assert len(statements) == 3
    con = sqlite3.connect(":memory:")
    for stmt in statements:
        con.execute(stmt)
    assert [r[0] for r in con.execute("SELECT a FROM t")] == ["a;b", "x; -- not a comment"]
    with pytest.raises(ValueError, match="unfinished statement"):
        list(schema._split_sql("CREATE TABLE u (a TEXT"))
