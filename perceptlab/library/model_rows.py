"""Encoders, their embeddings and training runs in a :class:`~perceptlab.library.store.Library`.

Embeddings are keyed by (content hash, model hash) and carry a CRC-32
checksum; damaged rows are dropped (unless the library is read-only) and left
out. Runs keep their config and final metrics as JSON. :class:`ModelRows` is
one of the row groups :class:`Library` is made of.
"""

from __future__ import annotations

import json
import time
import zlib

import numpy as np


class ModelRows:
    """The ``models``, ``embeddings`` and ``runs`` tables' methods of :class:`~perceptlab.library.store.Library`."""

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
        if bad and not self.read_only:
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
