"""The feature cache of a :class:`~perceptlab.library.store.Library`: log-mel images by content and config.

Cached images are keyed by (content hash, feature-config hash) and carry a
CRC-32 checksum. A damaged entry is dropped and recomputed, never fatal; a
library opened read-only skips every write, so what it computes is simply not
kept. :class:`FeatureRows` is one of the row groups :class:`Library` is made
of; it uses the library's connection and transactions.
"""

from __future__ import annotations

import time
import zlib

import numpy as np


class FeatureRows:
    """The ``features`` table's methods of :class:`~perceptlab.library.store.Library`."""

    def has_features(self, content_hash: str, config_hash: str) -> bool:
        """Whether an image is cached (without reading or checking it)."""
        return self.conn.execute(
            "SELECT 1 FROM features WHERE content_hash = ? AND config_hash = ?", (content_hash, config_hash)
        ).fetchone() is not None

    def feature_widths(self, config_hash: str) -> dict[str, int]:
        """{content hash: frames} of every image cached under one feature config."""
        return dict(self.conn.execute(
            "SELECT content_hash, n_cols FROM features WHERE config_hash = ?", (config_hash,)
        ))

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
        """Cache an image; skipped (the image is just not kept) when opened read-only."""
        image = np.ascontiguousarray(image, dtype="<f4")
        if image.ndim != 2:
            raise ValueError(f"feature images are 2-D (n_mels, T), got shape {image.shape}")
        if self.read_only:
            return
        data = image.tobytes()
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?)",
                (content_hash, config_hash, image.shape[0], image.shape[1], zlib.crc32(data), data, time.time()),
            )

    def drop_features(self, content_hash: str, config_hash: str | None = None) -> None:
        """Remove cached images (skipped when opened read-only: a bad row is then just not used)."""
        if self.read_only:
            return
        with self.transaction():
            if config_hash is None:
                self.conn.execute("DELETE FROM features WHERE content_hash = ?", (content_hash,))
            else:
                self.conn.execute(
                    "DELETE FROM features WHERE content_hash = ? AND config_hash = ?",
                    (content_hash, config_hash),
                )
