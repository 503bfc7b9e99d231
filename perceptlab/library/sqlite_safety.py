"""SQLite connections that never write into a damaged file, and say how to recover.

:class:`_Connection` and :class:`_Cursor` turn a corruption error met while
reading into a :class:`~perceptlab.library.errors.LibraryDamaged` naming the
file and the way back, and refuse every later statement on that connection;
:func:`_enable_wal` switches a new library to WAL while another process may
be creating it too. Used by :mod:`perceptlab.library.store` only.
"""

from __future__ import annotations

import shlex
import sqlite3
import threading
import time
from pathlib import Path

from perceptlab.library.errors import LibraryDamaged, LibraryError

def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL (a no-op once it is), waiting out a concurrent creator.

    The switch needs the file to itself for a moment; another process opening
    or creating the same library at that moment makes it fail with "database
    is locked" without waiting on the busy timeout, so it is retried.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if _code(exc) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code of an error (-1 if unknown)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return -1 if code is None else code & 0xFF



# PRAGMA quick_check reads every page of the b-trees, blob overflow pages
# included: on a 56 MB library (the 48 demo clips plus 500 fake feature rows)
# it took 18 ms with the file in the page cache on an idle machine (50 ms with
# both cores busy) and 140 ms cold, growing linearly (about 2.5 s cold per
# GB, extrapolated). So it runs when a library is opened for writing, and again only once
# the file has changed (the GUI's workers open their own connections all the
# time); read-only opens skip it, and a corruption error met while reading is
# reported instead (see _Connection).
_checked: dict[str, tuple] = {}  # path -> the file's state when it last passed
_checked_lock = threading.Lock()


def _file_state(path: Path) -> tuple:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _damage_detail(conn: sqlite3.Connection) -> str | None:
    """The first problem ``PRAGMA quick_check`` reports, or None if the file is sound."""
    try:
        # One problem is enough, and more rows would be lost anyway: the
        # sqlite3 module raises on the step after a row instead of returning it.
        rows = sqlite3.Connection.execute(conn, "PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    lines = [ln for r in rows for ln in str(r[0]).splitlines() if ln and not ln.startswith("*** in database")]
    return None if lines in ([], ["ok"]) else lines[0]


def damage_message(path: Path, detail: str, written: bool = False) -> str:
    """The one line that says a library is damaged and how to recover it."""
    recovered = path.with_name(f"{path.stem}.recovered{path.suffix or '.sqlite'}")
    done = ("the command stopped and nothing more is written to it" if written
            else "nothing was written")
    # Debian's and Ubuntu's sqlite3 are built without the page reader .recover
    # needs: there it prints part of the database and stops with an error.
    return (
        f"{path}: the library file is damaged ({detail}); {done}. Recover with: "
        f"sqlite3 {shlex.quote(str(path))} .recover | sqlite3 {shlex.quote(str(recovered))} "
        "(an sqlite3 from sqlite.org; some Linux builds lack .recover) and open the recovered file, "
        "or restore a backup"
    )


_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class _Connection(sqlite3.Connection):
    """A connection whose errors name the library and say what to do.

    Corruption met by any statement, here or in a later layer that uses
    ``library.conn`` directly, becomes :class:`LibraryDamaged`; after it the
    connection refuses every statement but ROLLBACK. A write to a read-only
    file or a full disk becomes a :class:`LibraryError`.
    """

    library_path: Path = Path("library.sqlite")
    damage: str | None = None
    opened = False  # set once the library is open: damage met earlier means nothing was written

    def cursor(self, factory=None):
        return super().cursor(factory or _Cursor)

    def execute(self, sql, parameters=(), /):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters, /):
        return self.cursor().executemany(sql, seq_of_parameters)

    def explain(self, exc: sqlite3.DatabaseError) -> Exception:
        code = _code(exc)
        if code in _DAMAGE_CODES:
            if self.damage is None:
                detail = _damage_detail(self) or str(exc)
                self.damage = damage_message(self.library_path, detail, written=self.opened)
            return LibraryDamaged(self.damage)
        if code == sqlite3.SQLITE_READONLY:
            return LibraryError(f"{self.library_path}: cannot write the library: {exc}")
        if code == sqlite3.SQLITE_FULL:
            return LibraryError(f"{self.library_path}: the disk is full; the last change was not written")
        return exc

    def refuse_if_damaged(self, sql: str) -> None:
        if self.damage is not None and not sql.lstrip().upper().startswith("ROLLBACK"):
            raise LibraryDamaged(self.damage)


class _Cursor(sqlite3.Cursor):
    def execute(self, sql, parameters=(), /):
        self.connection.refuse_if_damaged(sql)
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise self.connection.explain(exc) from None

    def executemany(self, sql, seq_of_parameters, /):
        self.connection.refuse_if_damaged(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            raise self.connection.explain(exc) from None

    def __next__(self):
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            raise self.connection.explain(exc) from None

    def fetchone(self):
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            raise self.connection.explain(exc) from None

    def fetchmany(self, size=None):
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as exc:
            raise self.connection.explain(exc) from None

    def fetchall(self):
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            raise self.connection.explain(exc) from None
