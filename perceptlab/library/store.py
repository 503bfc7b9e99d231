"""The project store: one SQLite file holding clips and cached features.

Design notes
------------
* WAL journal, so the GUI can read while a worker thread imports.
* ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` upgrades
  an older file in one transaction each, so an interrupted upgrade leaves the
  previous version intact. Later layers (embeddings, runs, listening tests)
  add their tables by appending a migration.
* Every write is a transaction: a process killed at any point leaves a
  consistent library, and the next import finishes the job.
* Cached features are keyed by (content hash, feature-config hash) and carry
  a checksum. A damaged entry is dropped and recomputed, never fatal.

A :class:`Library` wraps one connection, which belongs to the thread that
opened it; a worker thread opens its own (cheap) with :meth:`Library.open`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

#: Environment variable that overrides the default library location.
LIBRARY_ENV = "PERCEPTLAB_LIBRARY"


class LibraryError(Exception):
    """The library file cannot be used (not SQLite, newer schema, locked ...)."""


def default_library_path() -> Path:
    """Where the library lives when no ``--library`` is given.

    ``$PERCEPTLAB_LIBRARY`` if set, else ``library.sqlite`` in the user data
    folder that platformdirs reports for this OS.
    """
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("perceptlab", appauthor=False) / "library.sqlite"


# --------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------

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
MIGRATIONS: list[str] = [_V1, _V2, _V3]

SCHEMA_VERSION = len(MIGRATIONS)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LibraryError(
            f"{path}: library schema version {version} is newer than this perceptlab "
            f"understands ({SCHEMA_VERSION}); upgrade perceptlab to open it"
        )
    for v in range(version, SCHEMA_VERSION):
        # executescript() would commit on its own; run statement by statement
        # inside one explicit transaction so a failed upgrade rolls back whole.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _split_sql(MIGRATIONS[v]):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {v + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split_sql(script: str) -> Iterator[str]:
    buf = []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            buf = []
            if sqlite3.complete_statement(stmt):
                yield stmt
    rest = "\n".join(buf).strip()
    if rest:
        yield rest


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One row of the clips table."""

    id: int
    path: str
    name: str
    content_hash: str | None
    size: int
    mtime: float
    duration: float | None
    sample_rate: int | None
    channels: int | None
    format: str | None
    label: str | None
    error: str | None
    imported_at: float

    @property
    def ok(self) -> bool:
        """True if the clip imported without error."""
        return self.error is None and self.content_hash is not None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "name": self.name,
            "label": self.label,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "format": self.format,
            "content_hash": self.content_hash,
            "size": self.size,
            "error": self.error,
        }


_CLIP_COLUMNS = (
    "id, path, name, content_hash, size, mtime, duration, sample_rate, channels, "
    "format, label, error, imported_at"
)


def file_hash(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """blake2b-128 of a file's bytes, read in blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


class Library:
    """A perceptlab library file.

    Parameters
    ----------
    path : str or Path
        The SQLite file; created (with its folder) if missing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().resolve()
        if self.path.is_dir():
            raise LibraryError(f"{self.path}: is a folder; a library is a single .sqlite file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            _migrate(self.conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path}: not a usable perceptlab library ({exc})") from None

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> "Library":
        """Open ``path`` or the default library."""
        return cls(default_library_path() if path is None else path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ----------------------------------------------------
    def transaction(self):
        """Context manager for one write transaction."""
        return _Transaction(self.conn)

    # -- meta -------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # -- clips ------------------------------------------------------------
    def clips(self, *, include_failed: bool = False, label: str | None = None) -> list[Clip]:
        """All clips, ordered by label then name (a stable, readable order)."""
        where, args = [], []
        if not include_failed:
            where.append("error IS NULL")
        if label is not None:
            where.append("label = ?")
            args.append(label)
        sql = f"SELECT {_CLIP_COLUMNS} FROM clips"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY label, name, id"
        return [Clip(*row) for row in self.conn.execute(sql, args)]

    def clip(self, clip_id: int) -> Clip:
        row = self.conn.execute(f"SELECT {_CLIP_COLUMNS} FROM clips WHERE id = ?", (clip_id,)).fetchone()
        if row is None:
            raise KeyError(f"no clip with id {clip_id} in {self.path}")
        return Clip(*row)

    def clip_by_path(self, path: str | os.PathLike) -> Clip | None:
        key = str(Path(path).expanduser().resolve())
        row = self.conn.execute(f"SELECT {_CLIP_COLUMNS} FROM clips WHERE path = ?", (key,)).fetchone()
        return Clip(*row) if row else None

    def labels(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT label FROM clips WHERE error IS NULL AND label IS NOT NULL ORDER BY label"
            )
        ]

    def count(self, *, include_failed: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM clips" + ("" if include_failed else " WHERE error IS NULL")
        return self.conn.execute(sql).fetchone()[0]

    def upsert_clip(self, **fields) -> int:
        """Insert or replace the row for ``fields['path']``; returns its id.

        The id of an existing path is kept, so references to it stay valid.
        """
        cols = [
            "path", "name", "content_hash", "size", "mtime", "duration", "sample_rate",
            "channels", "format", "label", "error",
        ]
        values = [fields.get(c) for c in cols] + [time.time()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:] + ["imported_at"])
        cur = self.conn.execute(
            f"INSERT INTO clips ({', '.join(cols)}, imported_at) VALUES ({', '.join('?' * (len(cols) + 1))}) "
            f"ON CONFLICT(path) DO UPDATE SET {updates} RETURNING id",
            values,
        )
        return cur.fetchone()[0]

    def set_label(self, clip_id: int, label: str | None) -> None:
        with self.transaction():
            self.conn.execute("UPDATE clips SET label = ? WHERE id = ?", (label, clip_id))

    def remove_clips(self, ids: Iterable[int]) -> None:
        with self.transaction():
            self.conn.executemany("DELETE FROM clips WHERE id = ?", [(i,) for i in ids])

    def fingerprint(self) -> str:
        """A hash of the (content hash, label) pairs of all good clips.

        Identifies the data a model was trained or evaluated on.
        """
        h = hashlib.sha256()
        for content, label in self.conn.execute(
            "SELECT content_hash, COALESCE(label, '') FROM clips WHERE error IS NULL ORDER BY content_hash, label"
        ):
            h.update(f"{content}\t{label}\n".encode())
        return h.hexdigest()[:16]

    # -- feature cache ------------------------------------------------------
    def get_features(self, content_hash: str, config_hash: str) -> np.ndarray | None:
        """The cached image, or None if missing or damaged (damaged rows are dropped)."""
        row = self.conn.execute(
            "SELECT n_rows, n_cols, checksum, data FROM features WHERE content_hash = ? AND config_hash = ?",
            (content_hash, config_hash),
        ).fetchone()
        if row is None:
            return None
        n_rows, n_cols, checksum, data = row
        ok = (
            isinstance(data, (bytes, memoryview))
            and len(data) == n_rows * n_cols * 4
            and zlib.crc32(data) == checksum
        )
        arr = np.frombuffer(data, dtype="<f4").reshape(n_rows, n_cols) if ok else None
        if arr is None or not np.isfinite(arr).all():
            self.drop_features(content_hash, config_hash)
            return None
        return arr.copy()

    def put_features(self, content_hash: str, config_hash: str, image: np.ndarray) -> None:
        image = np.ascontiguousarray(image, dtype="<f4")
        if image.ndim != 2:
            raise ValueError(f"feature images are 2-D (n_mels, T), got shape {image.shape}")
        data = image.tobytes()
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?)",
                (content_hash, config_hash, image.shape[0], image.shape[1], zlib.crc32(data), data, time.time()),
            )

    def drop_features(self, content_hash: str, config_hash: str | None = None) -> None:
        with self.transaction():
            if config_hash is None:
                self.conn.execute("DELETE FROM features WHERE content_hash = ?", (content_hash,))
            else:
                self.conn.execute(
                    "DELETE FROM features WHERE content_hash = ? AND config_hash = ?",
                    (content_hash, config_hash),
                )


    # -- models and embeddings ---------------------------------------------
    def register_model(self, model_hash: str, name: str, path: str, info: dict) -> None:
        """Record an encoder checkpoint (its embeddings are keyed by ``model_hash``)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?) ON CONFLICT(model_hash) DO UPDATE SET "
                "name = excluded.name, path = excluded.path, info = excluded.info",
                (model_hash, name, str(path), json.dumps(info, sort_keys=True), time.time()),
            )

    def models(self) -> list[dict]:
        """Registered encoders: [{model_hash, name, path, info}], newest first."""
        return [
            {"model_hash": h, "name": n, "path": p, "info": json.loads(i)}
            for h, n, p, i in self.conn.execute(
                "SELECT model_hash, name, path, info FROM models ORDER BY created_at DESC"
            )
        ]

    def put_embeddings(self, model_hash: str, vectors: dict[str, np.ndarray]) -> None:
        """Store {content_hash: (dim,) vector} for one model, in one transaction."""
        rows = []
        for content_hash, vec in vectors.items():
            data = np.ascontiguousarray(vec, dtype="<f4").ravel().tobytes()
            rows.append((content_hash, model_hash, len(data) // 4, zlib.crc32(data), data, time.time()))
        with self.transaction():
            self.conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?)", rows)

    def get_embeddings(self, model_hash: str) -> dict[str, np.ndarray]:
        """{content_hash: vector} for one model; damaged rows are dropped and left out."""
        out, bad = {}, []
        for content_hash, dim, checksum, data in self.conn.execute(
            "SELECT content_hash, dim, checksum, data FROM embeddings WHERE model_hash = ?", (model_hash,)
        ):
            if len(data) != dim * 4 or zlib.crc32(data) != checksum:
                bad.append(content_hash)
                continue
            out[content_hash] = np.frombuffer(data, dtype="<f4").copy()
        if bad:
            with self.transaction():
                self.conn.executemany(
                    "DELETE FROM embeddings WHERE content_hash = ? AND model_hash = ?",
                    [(h, model_hash) for h in bad],
                )
        return out

    # -- training runs --------------------------------------------------------
    def add_run(self, name: str, config: dict, out_dir: str) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (name, config, status, out_dir, started_at) VALUES (?, ?, 'running', ?, ?)",
                (name, json.dumps(config, sort_keys=True), str(out_dir), time.time()),
            )
            return cur.lastrowid

    def update_run(self, run_id: int, **fields) -> None:
        """Update status, ended_at, final_metrics (dict), best/last_checkpoint, error."""
        allowed = {"status", "ended_at", "final_metrics", "best_checkpoint", "last_checkpoint", "error", "config"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        for key in ("final_metrics", "config"):
            if key in fields and not isinstance(fields[key], (str, type(None))):
                fields[key] = json.dumps(fields[key], sort_keys=True)
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def runs(self) -> list[dict]:
        """All training runs, newest first, JSON columns decoded."""
        cols = ["id", "name", "config", "status", "out_dir", "started_at", "ended_at", "final_metrics",
                "best_checkpoint", "last_checkpoint", "error"]
        out = []
        for row in self.conn.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY id DESC"):
            d = dict(zip(cols, row))
            d["config"] = json.loads(d["config"])
            d["final_metrics"] = json.loads(d["final_metrics"]) if d["final_metrics"] else None
            out.append(d)
        return out


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.outer = False

    def __enter__(self):
        # Nested use joins the outer transaction instead of failing.
        self.outer = not self.conn.in_transaction
        if self.outer:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if not self.outer:
            return False
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False

