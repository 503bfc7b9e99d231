"""The library against a hostile world, driven through the real CLI.

Another program's SQLite file, a damaged file, an older schema, a read-only
folder, two processes creating one library at once, paths through files,
closed pipes and nonsense options: each either works or fails with one line
``perceptlab: error: ...`` and status 2, and nothing already stored is lost
or altered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from perceptlab.cli import main
from perceptlab.library.store import FORMAT, SCHEMA_VERSION, Library
from conftest import run_cli


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def siblings(path: Path) -> list[str]:
    """The library file and whatever SQLite keeps beside it (-wal, -shm, -journal)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def cli(capsys, *args) -> tuple[int, str, str]:
    """``perceptlab ARGS`` in this process: (status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def one_line_error(status: int, err: str, *needles: str) -> str:
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perceptlab: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def stored(path: Path, sql: str):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def foreign_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes (body) VALUES ('keep me')")
    con.commit()
    con.close()
    return path


def version_1_library(path: Path) -> Path:
    """A library as the first perceptlab wrote it: clips and features, no format key."""
    from perceptlab.library import schema

    con = sqlite3.connect(path, isolation_level=None)
    for stmt in schema._split_sql(schema.MIGRATIONS[0]):
        con.execute(stmt)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO clips (path, name, content_hash, size, mtime, label, imported_at) "
                "VALUES ('/x/old.wav', 'old.wav', 'abc', 10, 1.0, 'old', 0)")
    con.close()
    return path


def damage(path: Path, table: str, seed: int = 7) -> None:
    """4 KB of random bytes over one b-tree page of ``table``, as a failing disk would leave."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    pages = [r[0] for r in con.execute(
        "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,))]
    con.close()
    page = pages[len(pages) // 2]
    with open(path, "r+b") as fh:
        fh.seek((page - 1) * page_size)
        fh.write(np.random.default_rng(seed).bytes(page_size))
    assert stored(path, "PRAGMA quick_check(1)") != [("ok",)]


# ---------------------------------------------------------------------------
# another program's file
# ---------------------------------------------------------------------------


def test_another_programs_sqlite_file_is_refused_byte_for_byte(tmp_path, clip_tree, monkeypatch, capsys):
    other = foreign_db(tmp_path / "other.db")
    before = digest(other)
    monkeypatch.setenv("PERCEPTLAB_LIBRARY", str(other))
    out = run_cli("clips", check=False)  # a user's PERCEPTLAB_LIBRARY=other.db perceptlab clips
    one_line_error(out.returncode, out.stderr, "other.db", "not a usable perceptlab library",
                   "another program", "notes", "nothing was written")
    for args in (["import", clip_tree], ["listen", "list"], ["metrics"], ["neighbours", "1"],
                 ["stimuli", "1", "--recipe", "lowpass:cutoff_hz=3000", "--out", tmp_path / "s"]):
        status, _, err = cli(capsys, *args)
        one_line_error(status, err, "not a usable perceptlab library")
    assert digest(other) == before
    assert siblings(other) == ["other.db"]  # no -wal, -shm or -journal either
    assert stored(other, "SELECT body FROM notes") == [("keep me",)]


def test_an_sqlite_file_without_tables_is_not_taken_over(tmp_path, capsys, clip_tree):
    empty_db = tmp_path / "empty.db"
    con = sqlite3.connect(empty_db)
    con.execute("PRAGMA application_id = 1234")  # a header, no tables: another program's new file
    con.close()
    before = digest(empty_db)
    status, _, err = cli(capsys, "import", clip_tree, "--library", empty_db)
    one_line_error(status, err, "not a usable perceptlab library", "no tables")
    assert digest(empty_db) == before and siblings(empty_db) == ["empty.db"]


def test_a_new_or_zero_byte_file_becomes_a_library_that_says_so(tmp_path, clip_tree, capsys):
    zero = tmp_path / "zero.sqlite"
    zero.touch()
    for path in (zero, tmp_path / "new" / "lib.sqlite"):
        status, _, err = cli(capsys, "import", clip_tree, "--library", path)
        assert status == 0, err
        assert stored(path, "SELECT value FROM meta WHERE key = 'format'") == [(FORMAT,)]
        assert stored(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert stored(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_library_from_before_the_format_key_still_opens(tmp_path, clip_library, capsys):
    con = sqlite3.connect(clip_library)
    con.execute("DELETE FROM meta WHERE key = 'format'")
    con.commit()
    con.close()
    status, out, err = cli(capsys, "clips", "--library", clip_library)
    assert status == 0 and "9 clips" in out, err
    assert stored(clip_library, "SELECT value FROM meta WHERE key = 'format'") == []  # a reader added nothing
    with Library(clip_library) as lib:  # a writer adds it
        assert lib.get_meta("format") == FORMAT and lib.count() == 9


# ---------------------------------------------------------------------------
# commands that only read
# ---------------------------------------------------------------------------


def test_commands_that_only_read_change_nothing(tmp_path, clip_library, capsys):
    status, out, err = cli(capsys, "listen", "create", "--design", "triplet", "--listener", "ann",
                           "--n-trials", "2", "--library", clip_library)
    assert status == 0, err
    session = out.split()[0]
    with Library(clip_library) as lib:  # one clip not cached: reading it computes, but must not store
        uncached = lib.clips()[0]
        lib.drop_features(uncached.content_hash)
        ids = [str(c.id) for c in lib.clips()]
    before, n_features = digest(clip_library), stored(clip_library, "SELECT COUNT(*) FROM features")
    commands = [
        ["clips"], ["clips", "--all", "--json"], ["metrics"],
        ["distance", ids[0], ids[1], "--metric", "mse"],
        ["neighbours", str(uncached.id), "-k", "2", "--metric", "mse,nlpd"],
        ["matrix", "--metric", "mse"],
        ["listen", "list"], ["listen", "show", session],
        ["listen", "export", session, "--out", tmp_path / "answers.csv"],
        ["agreement", "--metric", "mse", "--boot", "10"],
    ]
    for args in commands:
        status, _, err = cli(capsys, *args, "--library", clip_library)
        assert status == 0, (args, err)
    assert digest(clip_library) == before
    assert stored(clip_library, "SELECT COUNT(*) FROM features") == n_features
    assert (tmp_path / "answers.csv").exists()


def test_reading_a_missing_library_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "lib.sqlite"
    for args in (["clips"], ["matrix"], ["neighbours", "1"], ["listen", "list"], ["listen", "show", "1"]):
        status, _, err = cli(capsys, *args, "--library", missing)
        one_line_error(status, err, "no library here yet")
    status, out, err = cli(capsys, "metrics", "--library", missing)
    assert status == 0 and "nlpd" in out, err
    assert not missing.parent.exists()


def test_an_older_schema_is_read_only_refused_with_the_upgrade_command(tmp_path, clip_tree, capsys):
    old = version_1_library(tmp_path / "old.sqlite")
    before = digest(old)
    for args in (["clips"], ["listen", "list"]):
        status, _, err = cli(capsys, *args, "--library", old)
        one_line_error(status, err, f"library schema 1 is older than {SCHEMA_VERSION}",
                       "run any writing command", "perceptlab import")
    assert digest(old) == before and siblings(old) == ["old.sqlite"]
    status, _, err = cli(capsys, "import", clip_tree, "--library", old)  # a writing command upgrades it
    assert status == 0, err
    status, out, err = cli(capsys, "clips", "--json", "--library", old)
    assert status == 0, err
    names = {c["name"] for c in json.loads(out)["clips"]}
    assert "old.wav" in names and len(names) == 10


# ---------------------------------------------------------------------------
# damage
# ---------------------------------------------------------------------------


def test_damaged_features_refuse_writes_and_say_how_to_recover(clip_library, clip_tree, capsys):
    damage(clip_library, "features")
    before = digest(clip_library)
    status, out, err = cli(capsys, "clips", "--library", clip_library)  # pages it does not touch read fine
    assert status == 0 and "9 clips" in out, err
    for args in (["matrix", "--metric", "mse"], ["neighbours", "1", "-k", "2", "--metric", "mse"]):
        status, _, err = cli(capsys, *args, "--library", clip_library)
        one_line_error(status, err, str(clip_library), "the library file is damaged",
                       f"sqlite3 {clip_library} .recover | sqlite3 ", "restore a backup")
    for args in (["import", clip_tree],
                 ["listen", "create", "--design", "triplet", "--listener", "ann", "--n-trials", "2"]):
        status, _, err = cli(capsys, *args, "--library", clip_library)
        line = one_line_error(status, err, "the library file is damaged", "nothing was written", ".recover")
        assert "invalid page" in line or "malformed" in line or "Page" in line  # quick_check's first finding
    assert digest(clip_library) == before


def test_damaged_clip_table_is_one_line_for_readers_too(clip_library):
    damage(clip_library, "clips")
    before = digest(clip_library)
    out = run_cli("clips", "--library", clip_library, check=False)  # the real CLI, no traceback
    one_line_error(out.returncode, out.stderr, "the library file is damaged", ".recover")
    assert digest(clip_library) == before


@pytest.mark.qt
def test_the_window_shows_why_a_library_cannot_be_opened(main_window, tmp_path):
    pytest.importorskip("PySide6.QtWidgets")
    window = main_window
    good = window.library.path
    damaged = tmp_path / "damaged.sqlite"
    src = sqlite3.connect(f"file:{good}?mode=ro", uri=True)
    dst = sqlite3.connect(damaged)
    src.backup(dst)
    src.close()
    dst.close()
    damage(damaged, "clips")
    touched = tmp_path / "x.wav"
    touched.write_bytes(b"RIFF")
    cases = [(damaged, "the library file is damaged"),
             (foreign_db(tmp_path / "other.db"), "not a usable perceptlab library"),
             (touched / "lib.sqlite", "is a file, not a folder")]
    for path, reason in cases:
        before = digest(path) if path.exists() else None
        assert window.open_library(path) is False
        assert reason in window.status_label.text()
        box = window.library_problem_box  # told in a box that does not block the window
        assert box.isVisible() and not box.isModal() and reason in box.text()
        assert window.library.path == good  # the open library stays open
        assert (digest(path) if path.exists() else None) == before
    box.close()


# ---------------------------------------------------------------------------
# two creators at once
# ---------------------------------------------------------------------------

_CREATE = r"""
import os, sys, time
from perceptlab.library.store import Library
path, ready, go = sys.argv[1:4]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.0005)
try:
    Library(path).close()
except Exception as exc:
    print(exc)
    sys.exit(1)
"""


def test_two_processes_creating_one_new_library_both_succeed(tmp_path):
    """Both start together from a shared signal, folder and file missing; 20 rounds."""
    flags = tmp_path / "flags"
    flags.mkdir()
    for rnd in range(20):
        lib = tmp_path / f"round{rnd}" / "lib.sqlite"
        go = flags / f"go{rnd}"
        ready = [flags / f"ready{rnd}-{i}" for i in range(2)]
        procs = [subprocess.Popen([sys.executable, "-c", _CREATE, str(lib), str(r), str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for r in ready]
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.002)
        go.touch()
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0, f"round {rnd}: {out}"
        assert stored(lib, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert stored(lib, "PRAGMA journal_mode") == [("wal",)]
        assert stored(lib, "SELECT value FROM meta WHERE key = 'format'") == [(FORMAT,)]


# ---------------------------------------------------------------------------
# a read-only folder
# ---------------------------------------------------------------------------


def _set_read_only(paths: list[Path], on: bool) -> None:
    if os.geteuid() == 0:  # root ignores permission bits; the immutable flag stops root too
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        r = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True, text=True)
        if r.returncode != 0:
            if on:
                pytest.skip(f"chattr +i refused here: {r.stderr.strip()}")
            raise AssertionError(r.stderr)
    else:
        for p in paths:
            p.chmod((0o555 if p.is_dir() else 0o444) if on else (0o755 if p.is_dir() else 0o644))


@pytest.fixture(params=["closed", "reader-left-wal"])
def read_only_library(request, tmp_path, clip_tree):
    """A library in a folder nobody can write: closed cleanly, or with a reader's -wal/-shm beside it."""
    from perceptlab.library.importer import import_files

    folder = tmp_path / "shared"
    lib = folder / "lib.sqlite"
    with Library(lib) as library:
        import_files(library, [clip_tree])
    if request.param == "reader-left-wal":
        with Library(lib, read_only=True) as library:
            library.count()
        assert siblings(lib) == ["lib.sqlite", "lib.sqlite-shm", "lib.sqlite-wal"]
    locked = [folder, *folder.iterdir()]
    _set_read_only(locked, True)
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            (folder / "probe").unlink()
            pytest.skip("this file system lets us write into a read-only folder")
        yield lib
    finally:
        _set_read_only(locked, False)


def test_a_read_only_folder_reads_and_refuses_writes_in_one_line(read_only_library, clip_tree, capsys):
    lib = read_only_library
    before, files = digest(lib), siblings(lib)
    status, out, err = cli(capsys, "clips", "--library", lib)
    assert status == 0 and "9 clips" in out, err
    status, out, err = cli(capsys, "neighbours", "1", "-k", "2", "--metric", "mse", "--library", lib)
    assert status == 0, err
    for args in (["import", clip_tree],
                 ["listen", "create", "--design", "triplet", "--listener", "ann", "--n-trials", "2"]):
        status, _, err = cli(capsys, *args, "--library", lib)
        one_line_error(status, err, f"{lib.parent}: folder is read-only; cannot write the library")
    assert digest(lib) == before and siblings(lib) == files


# ---------------------------------------------------------------------------
# paths through files, closed pipes, nonsense options
# ---------------------------------------------------------------------------


def test_paths_through_a_file_are_one_line(tmp_path, clip_library, clip_tree, capsys):
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"RIFF....")
    for args in (["clips"], ["import", clip_tree], ["gui"]):
        status, _, err = cli(capsys, *args, "--library", wav / "lib.sqlite")
        one_line_error(status, err, "x.wav")
    status, _, err = cli(capsys, "import", clip_tree, "--library", wav / "lib.sqlite")
    one_line_error(status, err, "is a file, not a folder")
    started = time.perf_counter()
    status, _, err = cli(capsys, "matrix", "--out", "/nonexistent/dir/m.npy", "--library", clip_library)
    one_line_error(status, err, "--out /nonexistent/dir/m.npy", "does not exist")
    assert time.perf_counter() - started < 5  # refused before the matrix is computed
    status, _, err = cli(capsys, "matrix", "--out", wav / "m.npy", "--library", clip_library)
    one_line_error(status, err, "is a file, not a folder")
    status, _, err = cli(capsys, "listen", "export", "1", "--out", wav / "a.csv", "--library", clip_library)
    one_line_error(status, err, "is a file, not a folder")
    status, _, err = cli(capsys, "stimuli", "1", "--recipe", "lowpass:cutoff_hz=3000", "--out", wav / "s",
                         "--library", clip_library)
    one_line_error(status, err, "is a file, not a folder")
    assert not (wav.parent / "s").exists()


def test_listening_options_are_checked_before_anything_is_stored(tmp_path, clip_library, capsys):
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"RIFF....")
    before = digest(clip_library)
    create = ["listen", "create", "--listener", "ann", "--library", clip_library]
    cases = [
        (["--design", "triplet", "--clips", "99999,1,2"], "--clips: no clip with id 99999"),
        (["--design", "mushra", "--clips", "1,424242"], "--clips: no clip with id 424242"),
        (["--design", "triplet", "--stimuli-dir", wav / "s"], "--stimuli-dir"),
        (["--design", "triplet", "--n-trials", "0"], "--n-trials must be at least 1, got 0"),
        (["--design", "mushra", "--n-trials", "0"], "--n-trials must be at least 1, got 0"),
        (["--design", "triplet", "--catch", "-1"], "--catch must be 0 (no catch trials) or more, got -1"),
        (["--design", "mushra", "--catch", "2"], "--catch applies to triplet tests only"),
        (["--design", "triplet", "--source", "stimuli", "--n-references", "0"], "--n-references must be at least 1"),
    ]
    for extra, needle in cases:
        status, _, err = cli(capsys, *create, *extra)
        one_line_error(status, err, needle)
    assert digest(clip_library) == before
    status, out, err = cli(capsys, *create, "--design", "triplet", "--n-trials", "3", "--catch", "1", "--json")
    assert status == 0, err
    session = json.loads(out)["session"]
    assert session["n_trials"] == 4


def _many_clips(path: Path, n: int = 3000) -> Path:
    with Library(path) as lib, lib.transaction():
        for i in range(n):
            lib.upsert_clip(path=f"/music/clip{i:05d}.wav", name=f"clip{i:05d}.wav", content_hash=f"h{i}",
                            size=1, mtime=0.0, duration=1.0, sample_rate=22050, channels=1, format="WAV",
                            label="x")
    return path


def test_a_closed_pipe_ends_quietly(tmp_path):
    lib = _many_clips(tmp_path / "big.sqlite")
    cmd = [sys.executable, "-m", "perceptlab.cli"]
    # perceptlab clips | head -1: the reader goes away after one line of ~200 kB.
    proc = subprocess.Popen([*cmd, "clips", "--library", str(lib)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert b"id" in first and proc.returncode == 141 and err == "", err
    # perceptlab metrics --json | head -c 10, with the reader gone before the first byte.
    proc = subprocess.Popen([*cmd, "metrics", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == 141 and err == "", err
