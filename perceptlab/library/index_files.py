"""The files of an index folder: names, durable writes, checksums, the verified record, the lock.

What :mod:`perceptlab.library.indexes` keeps on disk and how, file by file;
what the files mean (blocks, rows, tombstones) stays there.

- Names: ``manifest.json``, the blocks' ``bNNNNNN.<part>.npy``
  (:func:`block_path`, :func:`block_files`), ``verified.json``, ``.lock``
  and the temporary names they are written under (:func:`temp_path`);
  :func:`is_index_file` tells them from anything else in a folder, and
  :func:`remove_orphans` deletes the block files no manifest names.
- Durable writes: a file is written under its temporary name, flushed,
  fsynced and renamed into place (:func:`write_npy`, :func:`write_json`,
  :func:`finish_file`); the manifest's rename is followed by an fsync of
  the folder. :func:`npy_header` is the fixed-length header an images file
  is streamed behind.
- Checksums: :func:`file_problem` checks a file's size and CRC-32 against
  its manifest entry. A version verified once is not read again: in this
  process (by path, size and mtime) nor in a new one, which finds it in
  ``verified.json`` by size, times and inode (:func:`read_verified`,
  :func:`write_verified`); any write to a file changes its ctime.
- :func:`folder_lock`: the folder's exclusive write lock (``fcntl.flock``).
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from pathlib import Path
from typing import IO, Iterator

import numpy as np

#: The index's manifest: its blocks, their files' sizes and checksums, the tombstones.
MANIFEST = "manifest.json"
#: The versions of the rows and vectors files whose checksums were verified:
#: {file name: [size, mtime_ns, ctime_ns, inode, crc32]}.
VERIFIED = "verified.json"
#: Locked (``fcntl.flock``) by whoever writes the folder.
LOCK = ".lock"
_CRC_CHUNK = 1 << 24

# Files whose checksum this process has verified: (path, size, mtime_ns).
_VERIFIED: set = set()


def block_path(directory: Path, block: str, part: str) -> Path:
    """The file of one part (``rows``, ``vectors``, ``images``) of block ``block``."""
    return directory / f"{block}.{part}.npy"


def block_files(manifest: dict) -> set:
    """The names of every block file a manifest lists."""
    return {f"{b['name']}.{part}.npy" for b in manifest["blocks"] for part in b["files"]}


def temp_path(path: Path) -> Path:
    """The name ``path`` is written under before it is renamed into place."""
    return path.with_name(path.name + ".tmp")


def is_index_file(name: str) -> bool:
    """Whether an index ever writes a file of this name (the test before deleting a folder)."""
    return (name in (MANIFEST, MANIFEST + ".tmp", LOCK, VERIFIED)
            or (name.startswith(VERIFIED + ".") and name.endswith(".tmp"))
            or (name.startswith("b") and (name.endswith(".npy") or name.endswith(".npy.tmp"))))


def remove_orphans(directory: Path, blocks: set) -> None:
    """Delete the block files (and their temporary files) of blocks not in ``blocks``.

    What a process killed while writing a block leaves behind.
    """
    for p in directory.iterdir():
        if p.name.startswith("b") and p.name.split(".")[0] not in blocks:
            p.unlink(missing_ok=True)


# -- durable writes -------------------------------------------------------------
def npy_header(rows: int, cols: int) -> bytes:
    """A fixed-length (128-byte) .npy 1.0 header for a C-order (rows, cols) float32 array."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    body = text.ljust(128 - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def fsync_dir(path: Path) -> None:
    """Make the renames in a folder durable (best effort: not every platform can)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def finish_file(f: IO, tmp: Path, path: Path) -> None:
    """Flush, fsync and close ``f`` (open on ``tmp``), then rename ``tmp`` to ``path``."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, path)


def write_npy(path: Path, arr: np.ndarray) -> dict:
    """Write ``arr`` to ``path`` durably; returns its manifest entry ``{"bytes", "crc32"}``."""
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"bytes": path.stat().st_size, "crc32": _crc_file(path)}


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` durably, the folder's rename included."""
    tmp = temp_path(path)
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# -- checksums and the verified record --------------------------------------------
def _crc_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CRC_CHUNK)
            if not chunk:
                return crc
            crc = zlib.crc32(chunk, crc)


def _file_mark(st: os.stat_result, crc: int) -> list:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, crc]


def read_verified(directory: Path) -> dict:
    """A folder's record of verified file versions (empty if it has none or it is unreadable)."""
    try:
        stamp = json.loads((directory / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def write_verified(directory: Path, stamp: dict, names: set) -> None:
    """Record the verified versions of the files ``names``.

    Best effort: a folder that cannot be written is verified again next time.
    """
    tmp = directory / f"{VERIFIED}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({k: v for k, v in stamp.items() if k in names}))
        os.replace(tmp, directory / VERIFIED)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def file_problem(path: Path, meta: dict, stamp: dict | None = None) -> str | None:
    """What is wrong with ``path`` against its manifest entry ``meta``, or None.

    ``meta`` gives ``bytes`` and, for the small files, ``crc32``. A file
    whose version was verified before (in this process, or as recorded in
    ``stamp``) is not read again; one verified now is added to ``stamp``.
    """
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if st.st_size != int(meta["bytes"]):
        return f"{st.st_size} bytes, the manifest says {meta['bytes']} (truncated or overwritten)"
    if "crc32" in meta:
        key = (str(path), st.st_size, st.st_mtime_ns)
        mark = _file_mark(st, int(meta["crc32"]))
        if key not in _VERIFIED and (stamp is None or stamp.get(path.name) != mark):
            if _crc_file(path) != int(meta["crc32"]):
                return "checksum mismatch (the file is damaged)"
            if stamp is not None:
                stamp[path.name] = mark
        _VERIFIED.add(key)
    return None


@contextlib.contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold an index folder's exclusive write lock."""
    import fcntl

    with open(directory / LOCK, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
