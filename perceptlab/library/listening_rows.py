"""Stimuli and listening sessions in a :class:`~perceptlab.library.store.Library`.

Rendered stimulus files are recorded with their recipe; listening sessions
keep their trials' specs, answers and configs as JSON, and an answer is
committed and synced before :meth:`ListeningRows.put_listening_answer`
returns. :class:`ListeningRows` is one of the row groups :class:`Library` is
made of; :mod:`perceptlab.library.stimuli` and
:mod:`perceptlab.listening.session` build their records on it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterable


class ListeningRows:
    """The ``stimuli`` and ``listening_*`` tables' methods of :class:`~perceptlab.library.store.Library`."""

    # -- stimuli --------------------------------------------------------------
    # Rows are (id, reference_hash, info, path, content_hash, created_at), info
    # the decoded JSON (recipe, rate, format, reference, versions);
    # perceptlab.library.stimuli turns them into Stimulus records.
    _STIMULUS_COLUMNS = "id, reference_hash, recipe, path, content_hash, created_at"

    @staticmethod
    def _stimulus_row(row) -> tuple:
        sid, ref_hash, info, path, content_hash, created = row
        return sid, ref_hash, json.loads(info), path, content_hash, created

    def put_stimulus(self, reference_hash: str | None, info: dict, path: str | os.PathLike,
                     content_hash: str) -> int:
        """Record a rendered stimulus file; returns its id."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO stimuli (reference_hash, recipe, path, content_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (reference_hash, json.dumps(info, sort_keys=True), str(path), content_hash, time.time()),
            )
            return cur.lastrowid

    def stimulus(self, stimulus_id: int) -> tuple:
        """The stimulus row with this id (KeyError if none)."""
        row = self.conn.execute(
            f"SELECT {self._STIMULUS_COLUMNS} FROM stimuli WHERE id = ?", (stimulus_id,)).fetchone()
        if row is None:
            raise KeyError(f"no stimulus with id {stimulus_id} in {self.path}")
        return self._stimulus_row(row)

    def stimuli(self, reference_hash: str | None = None) -> list[tuple]:
        """All stimulus rows (or those of one reference), oldest first."""
        if reference_hash is None:
            rows = self.conn.execute(f"SELECT {self._STIMULUS_COLUMNS} FROM stimuli ORDER BY id")
        else:
            rows = self.conn.execute(
                f"SELECT {self._STIMULUS_COLUMNS} FROM stimuli WHERE reference_hash = ? ORDER BY id",
                (reference_hash,))
        return [self._stimulus_row(r) for r in rows]

    # -- listening sessions -----------------------------------------------------
    # Specs, answers and configs are JSON in the tables; these methods take and
    # return dicts. perceptlab.listening.session builds Session objects on them.
    def add_listening_session(self, design: str, listener: str, config: dict, status: str,
                              created_at: float) -> int:
        """Insert a session row; returns its id."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO listening_sessions (design, listener, config, status, created_at) VALUES (?, ?, ?, ?, ?)",
                (design, listener, json.dumps(config, sort_keys=True), status, created_at),
            )
            return cur.lastrowid

    def set_listening_config(self, session_id: int, config: dict) -> None:
        with self.transaction():
            self.conn.execute("UPDATE listening_sessions SET config = ? WHERE id = ?",
                              (json.dumps(config, sort_keys=True), session_id))

    def add_listening_trials(self, session_id: int, specs: Iterable[tuple[int, dict]]) -> None:
        """Insert the trials (position, spec) of a session."""
        rows = [(session_id, int(pos), json.dumps(spec, sort_keys=True)) for pos, spec in specs]
        with self.transaction():
            self.conn.executemany("INSERT INTO listening_trials (session_id, position, spec) VALUES (?, ?, ?)", rows)

    def listening_session(self, session_id: int) -> tuple | None:
        """(id, design, listener, config, status, created_at, ended_at), or None if there is no such session."""
        row = self.conn.execute(
            "SELECT id, design, listener, config, status, created_at, ended_at FROM listening_sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        return (*row[:3], json.loads(row[3]), *row[4:])

    def listening_status(self, session_id: int) -> tuple[str, float | None]:
        """(status, ended_at) of a session."""
        return tuple(self.conn.execute(
            "SELECT status, ended_at FROM listening_sessions WHERE id = ?", (session_id,)).fetchone())

    def set_listening_status(self, session_id: int, status: str, ended_at: float | None) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE listening_sessions SET status = ?, ended_at = ? WHERE id = ?", (status, ended_at, session_id))

    def listening_sessions(self, design: str | None = None) -> list[tuple]:
        """Every session, newest first: (id, design, listener, status, created_at, ended_at, n_trials,
        n_answered, config)."""
        sql = ("SELECT s.id, s.design, s.listener, s.status, s.created_at, s.ended_at, "
               "(SELECT COUNT(*) FROM listening_trials t WHERE t.session_id = s.id), "
               "(SELECT COUNT(*) FROM listening_answers a WHERE a.session_id = s.id), s.config "
               "FROM listening_sessions s")
        args: tuple = ()
        if design is not None:
            sql += " WHERE s.design = ?"
            args = (design,)
        sql += " ORDER BY s.id DESC"
        return [(*r[:8], json.loads(r[8])) for r in self.conn.execute(sql, args)]

    def delete_listening_session(self, session_id: int) -> None:
        """Remove a session with its trials and answers."""
        with self.transaction():
            self.conn.execute("DELETE FROM listening_answers WHERE session_id = ?", (session_id,))
            self.conn.execute("DELETE FROM listening_trials WHERE session_id = ?", (session_id,))
            self.conn.execute("DELETE FROM listening_sessions WHERE id = ?", (session_id,))

    def count_listening_trials(self, session_id: int) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM listening_trials WHERE session_id = ?", (session_id,)).fetchone()[0]

    def listening_spec(self, session_id: int, position: int) -> dict | None:
        """The stored spec of one trial, None if there is no such trial."""
        row = self.conn.execute(
            "SELECT spec FROM listening_trials WHERE session_id = ? AND position = ?",
            (session_id, position)).fetchone()
        return json.loads(row[0]) if row else None

    def listening_answer(self, session_id: int, position: int) -> dict | None:
        """The stored answer of one trial, None if it is unanswered."""
        row = self.conn.execute(
            "SELECT answer FROM listening_answers WHERE session_id = ? AND position = ?",
            (session_id, position)).fetchone()
        return json.loads(row[0]) if row else None

    def count_listening_answers(self, session_id: int) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM listening_answers WHERE session_id = ?", (session_id,)).fetchone()[0]

    def first_unanswered(self, session_id: int) -> int | None:
        """The lowest trial position of a session without an answer, None when all are answered."""
        return self.conn.execute(
            "SELECT MIN(t.position) FROM listening_trials t LEFT JOIN listening_answers a "
            "ON a.session_id = t.session_id AND a.position = t.position "
            "WHERE t.session_id = ? AND a.position IS NULL", (session_id,)).fetchone()[0]

    def put_listening_answer(self, session_id: int, position: int, answer: dict, answered_at: float) -> None:
        """Store (or replace) a trial's answer, committed and synced before returning.

        The commit runs under ``PRAGMA synchronous=FULL`` (the WAL is fsynced
        at this commit, so even a power cut keeps the answer); the previous
        setting is restored afterwards.
        """
        previous = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        self.conn.execute("PRAGMA synchronous=FULL")
        try:
            with self.transaction():
                self.conn.execute(
                    "INSERT INTO listening_answers (session_id, position, answer, answered_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(session_id, position) DO UPDATE SET answer = excluded.answer, "
                    "answered_at = excluded.answered_at",
                    (session_id, int(position), json.dumps(answer, sort_keys=True), answered_at),
                )
        finally:
            self.conn.execute(f"PRAGMA synchronous={int(previous)}")

    def listening_trials(self, session_id: int) -> list[tuple[int, dict, dict | None, float | None]]:
        """Every trial of a session in position order: (position, spec, answer or None, answered_at or None)."""
        rows = self.conn.execute(
            "SELECT t.position, t.spec, a.answer, a.answered_at FROM listening_trials t "
            "LEFT JOIN listening_answers a ON a.session_id = t.session_id AND a.position = t.position "
            "WHERE t.session_id = ? ORDER BY t.position", (session_id,))
        return [(pos, json.loads(spec), json.loads(ans) if ans else None, at) for pos, spec, ans, at in rows]
