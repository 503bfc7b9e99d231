"""Content hashes of files: the key that ties clips, stimuli and caches together.

A leaf module (standard library only), so any layer can hash a file without
pulling in the store.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_hash"]


def file_hash(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """blake2b-128 of a file's bytes, read in blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()
