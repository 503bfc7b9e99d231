"""The library's SQLite schema and its migrations.

``PRAGMA user_version`` is the schema version; entry i of :data:`MIGRATIONS`
upgrades a file from version i to i + 1, all pending ones in one
``BEGIN IMMEDIATE`` transaction that re-reads the version under the lock
(see :func:`_migrate`). ``meta.format`` marks a file as a perceptlab library.
Adding a table or column is appending a migration here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

from perceptlab.library.errors import LibraryError

#: ``meta.format`` of a perceptlab library (written on creation).
FORMAT = "perceptlab-library"


_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE clips (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,     -- absolute, resolved
    name         TEXT NOT NULL,            -- file name, for display
    content_hash TEXT,                     -- blake2b of the bytes; NULL if unreadable
    size         INTEGER NOT NULL,
    mtime        REAL NOT NULL,
    duration     REAL,                     -- seconds
    sample_rate  INTEGER,                  -- the file's own rate
    channels     INTEGER,
    format       TEXT,
    label        TEXT,
    error        TEXT,                     -- why the file could not be imported
    imported_at  REAL NOT NULL
);
CREATE INDEX clips_hash ON clips(content_hash);
CREATE INDEX clips_label ON clips(label);
CREATE TABLE features (
    content_hash TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    n_rows       INTEGER NOT NULL,
    n_cols       INTEGER NOT NULL,
    checksum     INTEGER NOT NULL,         -- crc32 of data
    data         BLOB NOT NULL,            -- float32, C order, (n_rows, n_cols)
    created_at   REAL NOT NULL,
    PRIMARY KEY (content_hash, config_hash)
);
"""

_V2 = """
CREATE TABLE models (
    model_hash   TEXT PRIMARY KEY,         -- hash of the checkpoint's weights
    name         TEXT NOT NULL,            -- the metric is 'embedding:<name>'
    path         TEXT NOT NULL,            -- checkpoint file
    info         TEXT NOT NULL,            -- JSON: loss, latent size, feature config ...
    created_at   REAL NOT NULL
);
CREATE TABLE embeddings (
    content_hash TEXT NOT NULL,
    model_hash   TEXT NOT NULL REFERENCES models(model_hash) ON DELETE CASCADE,
    dim          INTEGER NOT NULL,
    checksum     INTEGER NOT NULL,         -- crc32 of data
    data         BLOB NOT NULL,            -- float32 (dim,)
    created_at   REAL NOT NULL,
    PRIMARY KEY (content_hash, model_hash)
);
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    config         TEXT NOT NULL,          -- JSON of the full training config
    status         TEXT NOT NULL,          -- running | completed | cancelled | failed
    out_dir        TEXT NOT NULL,
    started_at     REAL NOT NULL,
    ended_at       REAL,
    final_metrics  TEXT,                   -- JSON
    best_checkpoint TEXT,
    last_checkpoint TEXT,
    error          TEXT
);
"""

_V3 = """
CREATE TABLE stimuli (
    id             INTEGER PRIMARY KEY,
    reference_hash TEXT,                   -- content hash of the reference clip
    recipe         TEXT NOT NULL,          -- JSON: kind, parameters, seed, versions
    path           TEXT NOT NULL,          -- the rendered file
    content_hash   TEXT NOT NULL,
    created_at     REAL NOT NULL
);
CREATE TABLE listening_sessions (
    id          INTEGER PRIMARY KEY,
    design      TEXT NOT NULL,             -- triplet | mushra
    listener    TEXT NOT NULL,
    config      TEXT NOT NULL,             -- JSON: options, seeds, provenance
    status      TEXT NOT NULL,             -- open | completed
    created_at  REAL NOT NULL,
    ended_at    REAL
);
CREATE TABLE listening_trials (
    session_id  INTEGER NOT NULL REFERENCES listening_sessions(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,          -- order of presentation, 0-based
    spec        TEXT NOT NULL,             -- JSON: stimuli, roles, presentation order
    PRIMARY KEY (session_id, position)
);
CREATE TABLE listening_answers (
    session_id  INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    answer      TEXT NOT NULL,             -- JSON: {"choice": "A"} or {"scores": {...}}
    answered_at REAL NOT NULL,
    PRIMARY KEY (session_id, position),
    FOREIGN KEY (session_id, position) REFERENCES listening_trials(session_id, position) ON DELETE CASCADE
);
"""

#: Ordered migrations; entry i upgrades a file from version i to i + 1.
_V4 = """
ALTER TABLE clips ADD COLUMN loudness REAL;  -- integrated loudness, LUFS (BS.1770-4); NULL: not measured
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4]

SCHEMA_VERSION = len(MIGRATIONS)


def _inspect(conn: sqlite3.Connection, path: Path, allow_empty: bool = True) -> tuple[int, bool]:
    """``(schema version, has the format key)`` of a perceptlab library.

    Version 0 means an empty database (no tables at all): the file this
    process is creating, or, with ``allow_empty``, one another process is.
    Raises LibraryError for another program's database (an empty one of a
    file that was not new included) or a newer schema. Reads only.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and not tables and allow_empty:
        return 0, False
    fmt = None
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        fmt = row[0] if row else None
    ours = fmt == FORMAT or (fmt is None and version >= 1 and {"meta", "clips"} <= tables)
    if not ours:
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        what = f"tables {listed}" if tables else "no tables, not created by perceptlab"
        raise LibraryError(
            f"{path}: not a usable perceptlab library (an SQLite database of another program: {what}); "
            "nothing was written to it. Choose another file, or a new name to create a library"
        )
    if version > SCHEMA_VERSION:
        raise LibraryError(
            f"{path}: library schema version {version} is newer than this perceptlab "
            f"understands ({SCHEMA_VERSION}); upgrade perceptlab to open it"
        )
    return version, fmt is not None


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create or upgrade the schema, safely against another process doing the same."""
    version, has_format = _inspect(conn, path)
    if version == SCHEMA_VERSION and has_format:
        return  # the usual case: no write lock taken
    # executescript() would commit on its own; run statement by statement
    # (split by SQLite's tokenizer, see _split_sql) inside one explicit transaction so a failed upgrade rolls back whole.
    # BEGIN IMMEDIATE takes the write lock first and the version is read
    # again under it: a concurrent creator that got there first has already
    # done the work (CREATE TABLE IF NOT EXISTS would not be enough: it
    # would still run a half-done upgrade twice).
    conn.execute("BEGIN IMMEDIATE")
    try:
        version, has_format = _inspect(conn, path)
        for v in range(version, SCHEMA_VERSION):
            for stmt in _split_sql(MIGRATIONS[v]):
                conn.execute(stmt)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if not has_format:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('format', ?)", (FORMAT,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _split_sql(script: str) -> Iterator[str]:
    """The statements of a migration script, cut where SQLite's own tokenizer says one ends.

    ``sqlite3.complete_statement`` is SQLite's tokenizer: a ``;`` inside a
    string literal or a comment does not end a statement, and comments are
    left for SQLite to skip. (``executescript`` would do the splitting for
    us, but it commits any open transaction first, which would release the
    lock :func:`_migrate` holds between reading the version and upgrading.)
    """
    buf: list[str] = []
    for line in script.splitlines(keepends=True):
        buf.append(line)
        stmt = "".join(buf).strip()
        if sqlite3.complete_statement(stmt):
            buf = []
            yield stmt
    rest = "".join(buf).strip()
    if rest and not _only_comments(rest):
        raise ValueError(f"migration script ends with an unfinished statement: {rest[:80]!r}")


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())
