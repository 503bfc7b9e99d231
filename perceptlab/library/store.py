"""The project store: one SQLite file holding clips and cached features.

Design notes
------------
* WAL journal, so the GUI can read while a worker thread imports.
* ``PRAGMA user_version`` is the schema version and ``meta.format`` says the
  file is a perceptlab library (older libraries lack the key: they are known
  by a version >= 1 and their ``meta`` and ``clips`` tables). Nothing is
  written to a file that is neither a perceptlab library nor new (missing or
  0 bytes): another program's database is refused before the first write,
  the switch to WAL included.
* :data:`MIGRATIONS` upgrade an older file in one ``BEGIN IMMEDIATE``
  transaction that re-reads the version under the lock, so an interrupted
  upgrade leaves the previous version intact and two processes creating the
  same new library at once both succeed. Later layers (embeddings, runs,
  listening tests) add their tables by appending a migration.
* ``Library(path, read_only=True)`` opens the file ``mode=ro`` (in a folder
  that cannot hold the WAL's ``-shm`` file: ``immutable=1``): it never
  creates, migrates or writes, and cache writes (features, repairs of
  damaged cache rows) are skipped, so what it computes is simply not kept.
* A damaged file (``PRAGMA quick_check``) is refused for writing, and a
  corruption error met later while reading becomes a :class:`LibraryDamaged`
  that says how to recover; every further statement on that connection is
  refused, so nothing more is written into a damaged file.
* Every write is a transaction: a process killed at any point leaves a
  consistent library, and the next import finishes the job.
* Cached features are keyed by (content hash, feature-config hash) and carry
  a checksum. A damaged entry is dropped and recomputed, never fatal.

A :class:`Library` wraps one connection, which belongs to the thread that
opened it; a worker thread opens its own (cheap) with :meth:`Library.open`.

This module opens the file and holds the clips and meta rows; the other
tables' methods come from the row groups the class is made of:
:class:`~perceptlab.library.feature_rows.FeatureRows` (the feature cache),
:class:`~perceptlab.library.model_rows.ModelRows` (encoders, embeddings,
training runs) and :class:`~perceptlab.library.listening_rows.ListeningRows`
(stimuli, listening sessions).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from perceptlab.library.errors import LibraryDamaged, LibraryError
from perceptlab.library.feature_rows import FeatureRows
from perceptlab.library.hashing import file_hash
from perceptlab.library.listening_rows import ListeningRows
from perceptlab.library.model_rows import ModelRows
from perceptlab.library.schema import FORMAT, MIGRATIONS, SCHEMA_VERSION, _inspect, _migrate
from perceptlab.library.sqlite_safety import (
    _DAMAGE_CODES,
    _checked,
    _checked_lock,
    _code,
    _Connection,
    _damage_detail,
    _enable_wal,
    _file_state,
    damage_message,
)

__all__ = ["FORMAT", "LIBRARY_ENV", "MIGRATIONS", "SCHEMA_VERSION", "Clip", "Library", "LibraryDamaged",
           "LibraryError", "damage_message", "default_library_path", "file_hash"]

#: Environment variable that overrides the default library location.
LIBRARY_ENV = "PERCEPTLAB_LIBRARY"


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
    #: Integrated loudness in LUFS (ITU-R BS.1770-4, the mono downmix at the
    #: project rate); -inf for digital silence, None if not measured yet.
    loudness: float | None = None

    @property
    def ok(self) -> bool:
        """True if the clip imported without error."""
        return self.error is None and self.content_hash is not None

    @property
    def failure(self) -> str:
        """Why the clip failed to import, for a sentence such as "<name> could not be decoded: <failure>".

        The decoder's "cannot be decoded (...)" wrapper is taken off, so the
        sentence does not say it twice.
        """
        if not self.error:
            return "it was not imported"
        text = self.error.strip()
        prefix = "cannot be decoded ("
        if text.startswith(prefix) and text.endswith(")"):
            return text[len(prefix):-1]
        return text

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
            "loudness_lufs": None if self.loudness is None or self.loudness == float("-inf") else self.loudness,
            "error": self.error,
        }


_CLIP_COLUMNS = (
    "id, path, name, content_hash, size, mtime, duration, sample_rate, channels, "
    "format, label, error, imported_at, loudness"
)


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


class Library(FeatureRows, ModelRows, ListeningRows):
    """A perceptlab library file.

    Parameters
    ----------
    path : str or Path
        The SQLite file; created (with its folder) if missing, unless
        ``read_only``.
    read_only : bool
        Open for reading only: nothing is created, migrated or written
        (cache writes are skipped). A library with an older schema is refused
        with a message saying how to upgrade it.

    Raises
    ------
    LibraryError
        The file cannot be used: not a perceptlab library, damaged
        (:class:`LibraryDamaged`), newer or (read-only) older schema, a folder
        that cannot be written, ... The message says which and what to do.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, timeout: float = 30.0):
        self.path = Path(path).expanduser().resolve()
        self.read_only = read_only
        if self.path.is_dir():
            raise LibraryError(f"{self.path}: is a folder; a library is a single .sqlite file")
        try:
            if read_only:
                self.conn = self._connect_read_only(timeout)
            else:
                self.conn = self._connect_for_writing(timeout)
        except LibraryError:
            raise
        except sqlite3.DatabaseError as exc:
            if _code(exc) in _DAMAGE_CODES:
                raise LibraryDamaged(damage_message(self.path, str(exc))) from None
            raise LibraryError(f"{self.path}: not a usable perceptlab library ({exc})") from None
        except OSError as exc:
            raise LibraryError(f"{self.path}: cannot open the library ({exc.strerror or exc})") from None

    # -- opening ------------------------------------------------------------
    def _size(self) -> int | None:
        """The file's size, None if it does not exist."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return None

    def _check_magic(self, timeout: float) -> None:
        """Refuse a file that is not an SQLite database, asking SQLite itself.

        Not with ``open()``: closing any descriptor of the file in this process
        drops every POSIX lock that the process's open connections to it hold
        (the GUI's, a worker's), after which they fail with "disk I/O error"
        or worse. SQLite's own connections keep such a close pending.
        """
        probe = sqlite3.connect(self._uri(mode="ro"), timeout=timeout, uri=True, isolation_level=None)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if _code(exc) == sqlite3.SQLITE_NOTADB:
                raise LibraryError(
                    f"{self.path}: not a usable perceptlab library (not an SQLite database file, or its "
                    "header is damaged); nothing was written to it"
                ) from None
            # Anything else (locked, unreadable) the caller's own connection reports.
        finally:
            probe.close()

    def _connection(self, target: str, timeout: float, *, uri: bool = False) -> _Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = sqlite3.connect(target, timeout=timeout, isolation_level=None, uri=uri, factory=_Connection)
        conn.library_path = self.path
        return conn

    def _uri(self, **params: str) -> str:
        from urllib.parse import quote

        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"file:{quote(str(self.path))}?{query}"

    def _writable_folder(self) -> None:
        """Create the folder if missing; refuse one that cannot hold the library."""
        folder = self.path.parent
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise LibraryError(f"{existing}: is a file, not a folder; cannot create the library {self.path} in it")
        if existing != folder:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LibraryError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
        # The WAL keeps two files beside the library: a folder that cannot take
        # them cannot take writes, even where the file itself could.
        if not os.access(folder, os.W_OK | os.X_OK):
            raise LibraryError(
                f"{folder}: folder is read-only; cannot write the library {self.path.name} "
                "(commands that only read it still work)"
            )
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise LibraryError(f"{self.path}: file is read-only; cannot write the library")

    def _connect_for_writing(self, timeout: float) -> _Connection:
        self._writable_folder()
        size = self._size()
        if size:
            # Decide through a read-only connection first: another program's
            # file, or a damaged one, then sees no write at all (a read-write
            # connection would checkpoint a WAL left beside it on close).
            self._check_magic(timeout)
            probe = self._connection(self._uri(mode="ro"), timeout, uri=True)
            try:
                # A creator gives the file its tables before anything else
                # (rollback journal, one transaction), so another process never
                # sees a non-empty file without them: such a file is not ours.
                _inspect(probe, self.path, allow_empty=False)
                state = _file_state(self.path)
                with _checked_lock:
                    checked = _checked.get(str(self.path)) == state
                if not checked:
                    detail = _damage_detail(probe)
                    if detail is not None:
                        raise LibraryDamaged(damage_message(self.path, detail))
                    with _checked_lock:
                        _checked[str(self.path)] = state
            finally:
                probe.close()
        conn = self._connection(str(self.path), timeout)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            # The schema first, then WAL: a concurrent opener sees either an
            # empty file or a whole library, never a header without tables.
            _migrate(conn, self.path)
            _enable_wal(conn, timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        if not size:
            with _checked_lock:
                _checked[str(self.path)] = _file_state(self.path)  # just created: nothing to check
        conn.opened = True
        return conn

    def _connect_read_only(self, timeout: float) -> _Connection:
        size = self._size()
        if size is None:
            raise LibraryError(f"{self.path}: no library here yet")
        if size == 0:
            raise LibraryError(f"{self.path}: an empty file, no library yet")
        self._check_magic(timeout)
        conn = None
        try:
            conn = self._connection(self._uri(mode="ro"), timeout, uri=True)
            conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            # A WAL library in a folder we cannot write: SQLite cannot create
            # the -shm file it reads through. Nobody can be writing there, so
            # the file can be read as immutable, unless a WAL holds changes
            # not yet in the file itself (a writer that did not close).
            if _code(exc) != sqlite3.SQLITE_CANTOPEN or os.access(self.path.parent, os.W_OK):
                raise
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise LibraryError(
                    f"{self.path}: the folder is read-only and {wal.name} holds changes not yet in the library; "
                    "open it once where the folder can be written"
                ) from None
            conn = self._connection(self._uri(mode="ro", immutable="1"), timeout, uri=True)
        try:
            version, _ = _inspect(conn, self.path)
            if version == 0:
                raise LibraryError(f"{self.path}: an empty SQLite database, no library yet")
            if version < SCHEMA_VERSION:
                raise LibraryError(
                    f"{self.path}: library schema {version} is older than {SCHEMA_VERSION}; run any writing "
                    f"command (e.g. `perceptlab import DIR --library {self.path}`) to upgrade it"
                )
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        conn.opened = True
        return conn

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, read_only: bool = False) -> "Library":
        """Open ``path`` or the default library."""
        return cls(default_library_path() if path is None else path, read_only=read_only)

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

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        """Every (key, value) of the meta table whose key starts with ``prefix`` (exactly), by key."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key", (prefix,))]

    def delete_meta(self, key: str) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

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

    def clip_keys(self) -> list[tuple[int, str | None]]:
        """(id, content hash) of every clip :meth:`clips` returns, in its order.

        What a search over the whole library needs of each clip (the rest of
        a :class:`Clip` only for the few it returns: :meth:`clips_by_ids`),
        at a fraction of the cost of reading every row whole.
        """
        return self.conn.execute(
            "SELECT id, content_hash FROM clips WHERE error IS NULL ORDER BY label, name, id").fetchall()

    def clips_by_ids(self, ids: Iterable[int]) -> list[Clip]:
        """The clips with these ids, in the order given.

        Raises
        ------
        KeyError
            An id is not in the library, naming it.
        """
        ids = [int(i) for i in ids]
        found: dict[int, Clip] = {}
        for s in range(0, len(ids), 500):  # under SQLite's limit on bound parameters
            part = ids[s : s + 500]
            for row in self.conn.execute(
                    f"SELECT {_CLIP_COLUMNS} FROM clips WHERE id IN ({', '.join('?' * len(part))})", part):
                found[row[0]] = Clip(*row)
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"no clip with id {', '.join(map(str, missing[:5]))}"
                           f"{' and others' if len(missing) > 5 else ''} in {self.path}")
        return [found[i] for i in ids]

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
            "channels", "format", "label", "error", "loudness",
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

