"""Persistent, memory-mapped, incremental clip indexes stored next to a library.

A library ``lib.sqlite`` keeps its indexes in the folder ``lib.sqlite.indexes/``,
one sub-folder per (kind, feature config): ``<kind>-<config hash>/``. The
kind is ``images`` for the spectrogram metrics (MSE, NLPD, MS-SSIM compare
the same whole log-mel images, so they share one store and one candidate
sketch) or the name of a vector metric (``logmel-stats``, ``mfcc-stats``).
Everything in the folder is derived data: it can be deleted at any time and
is rebuilt from the library (its feature cache, or the audio files).

This module is the index itself: :class:`ClipIndex` (opening and checking
its blocks, reading vectors and images, :meth:`~ClipIndex.gather`, updates
and compaction), :class:`IndexDamaged`, where the folders lie
(:func:`index_root`, :func:`index_dir`) and :func:`drop`. The files'
mechanics (names, durable writes, checksums, the verified record, the lock)
are :mod:`perceptlab.library.index_files`.

What an index holds
-------------------
Rows keyed by content hash (two clips with the same content share a row),
in blocks. Block ``bNNNNNN`` is three ``.npy`` files:

- ``bNNNNNN.rows.npy``: (n, 3) int64: frames T, offset of the image in the
  block's image file, CRC-32 of the image's bytes;
- ``bNNNNNN.vectors.npy``: (D, n) float32: one vector per row (the
  candidate sketch, or a baseline's raw statistics), stored by dimension so
  that a search reading some of the dimensions reads only those pages;
- ``bNNNNNN.images.npy`` (optional): (sum T, F) float32: each row's whole
  (F, T) image, stored transposed so that one clip is one contiguous slice.

``manifest.json`` names the blocks with their content hashes, the byte size
and CRC-32 of every rows and vectors file, the byte size of every image file,
and the tombstones (``dead``: positions of removed rows). The files are
opened with ``np.load(mmap_mode="r")``: opening an index reads its manifest
and checks its small files, never the images into memory.

Safety
------
How each file is written, checksummed, recorded as verified and locked is
:mod:`perceptlab.library.index_files`; what this module relies on:

- Every file is written under a temporary name, fsynced and renamed into
  place; a block's files are never rewritten; the manifest is replaced
  last. A process killed at any point leaves either the old manifest (the
  half-written block is an orphan, removed by the next update) or the new
  one.
- :meth:`ClipIndex.open` checks the format, the sizes of every file, the
  CRC-32 of the rows and vectors files (once per file version, recorded in
  ``verified.json``, so the app's cold start does not read them whole) and
  the shapes; an image's own CRC-32 is checked each time it is read. A
  failure raises :class:`IndexDamaged`; the caller drops the folder and
  rebuilds it (:func:`drop`). Nothing here ever touches the library file.
- Updates take an exclusive lock on the folder (:meth:`ClipIndex.locked`),
  so the GUI and a CLI command never write the same index at once.

Incremental updates
-------------------
:meth:`ClipIndex.update` appends new rows as new blocks (at most
:data:`BLOCK_ROWS` rows each, so cancelling a long build keeps what was
done) and tombstones removed ones; when tombstones exceed a quarter of the
rows, or there are more than :data:`MAX_BLOCKS` blocks, the live rows are
compacted into one block.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from perceptlab.library import index_files
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

#: Version of the on-disk layout; an index of another version is rebuilt.
INDEX_FORMAT = 1
#: Rows written per block while building (a cancelled build keeps whole blocks).
BLOCK_ROWS = 2048
#: More blocks than this are compacted into one.
MAX_BLOCKS = 16
#: Compact when more than this fraction of the rows are tombstones.
MAX_DEAD_FRACTION = 0.25


class IndexDamaged(Exception):
    """An index folder is unreadable, inconsistent or fails a checksum.

    Raised while reading an open index's images, it carries that
    :class:`ClipIndex` as ``index`` (the one to drop and rebuild).
    """

    index = None


def index_root(library_path: str | os.PathLike) -> Path:
    """The folder that holds a library's indexes: ``<library>.indexes``."""
    return Path(str(library_path) + ".indexes")


def index_dir(library_path: str | os.PathLike, kind: str, config_hash: str) -> Path:
    """The folder of one index: ``<library>.indexes/<kind>-<config hash>``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in kind)
    return index_root(library_path) / f"{safe}-{config_hash}"


@dataclass
class _Block:
    name: str
    hashes: list
    rows: np.ndarray  # (n, 3) int64: frames, offset, crc
    vectors: np.ndarray  # (D, n) float32 (memory-mapped)
    images: np.ndarray | None  # (sum T, F) float32 (memory-mapped)


class ClipIndex:
    """One persistent index folder (see the module notes).

    Use :meth:`open` (or :meth:`create`), then :meth:`update`, :meth:`vectors`,
    :meth:`image`. Row positions are global over the blocks, in block order;
    :attr:`alive` marks the rows not tombstoned.
    """

    def __init__(self, directory: Path, manifest: dict, blocks: list[_Block]):
        self.directory = Path(directory)
        self.manifest = manifest
        self._blocks = blocks
        self._refresh()

    # -- opening ---------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike, kind: str, config: dict, config_hash: str,
               dim: int, n_mels: int, with_images: bool, info: dict | None = None) -> "ClipIndex":
        """An empty index (its manifest written), replacing whatever the folder held."""
        directory = Path(directory)
        drop(directory)
        directory.mkdir(parents=True)
        manifest = {
            "format": INDEX_FORMAT, "kind": kind, "config_hash": config_hash, "config": config,
            "dim": int(dim), "n_mels": int(n_mels), "with_images": bool(with_images),
            "info": info or {}, "generation": 0, "blocks": [], "dead": [], "updated_at": time.time(),
        }
        index = cls(directory, manifest, [])
        index._write_manifest()
        return index

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "ClipIndex":
        """Open an index, checking its manifest, file sizes, shapes and small-file checksums.

        Raises
        ------
        FileNotFoundError
            No index in ``directory``.
        IndexDamaged
            Anything inconsistent, with the reason.
        """
        directory = Path(directory)
        path = directory / index_files.MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"no index in {directory}")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexDamaged(f"{path}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
            raise IndexDamaged(f"{path}: index format {manifest.get('format') if isinstance(manifest, dict) else '?'}"
                               f", this version reads {INDEX_FORMAT}")
        stamp = index_files.read_verified(directory)
        known = dict(stamp)
        try:
            blocks = [cls._open_block(directory, b, manifest, stamp) for b in manifest["blocks"]]
            dead = [int(i) for i in manifest["dead"]]
        except IndexDamaged:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexDamaged(f"{path}: malformed manifest ({exc})") from None
        if stamp != known:
            index_files.write_verified(directory, stamp, index_files.block_files(manifest))
        index = cls(directory, manifest, blocks)
        if dead and (min(dead) < 0 or max(dead) >= index.n_rows):
            raise IndexDamaged(f"{path}: a tombstone points past the {index.n_rows} rows")
        return index

    @staticmethod
    def _open_block(directory: Path, entry: dict, manifest: dict, stamp: dict | None = None) -> _Block:
        name, n = entry["name"], int(entry["n"])
        hashes = list(entry["hashes"])
        if len(hashes) != n:
            raise IndexDamaged(f"{directory}: block {name} lists {len(hashes)} hashes for {n} rows")
        arrays = {}
        for part, meta in entry["files"].items():
            p = index_files.block_path(directory, name, part)
            problem = index_files.file_problem(p, meta, stamp)
            if problem:
                raise IndexDamaged(f"{p}: {problem}")
            try:
                arrays[part] = np.load(p, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise IndexDamaged(f"{p}: unreadable ({exc})") from None
        rows, vectors = arrays.get("rows"), arrays.get("vectors")
        if rows is None or vectors is None:
            raise IndexDamaged(f"{directory}: block {name} lacks its rows or vectors file")
        if rows.shape != (n, 3) or vectors.shape != (int(manifest["dim"]), n) or vectors.dtype != np.float32:
            raise IndexDamaged(f"{directory}: block {name} has rows {rows.shape}, vectors {vectors.shape} "
                               f"{vectors.dtype}; expected ({n}, 3) and ({manifest['dim']}, {n}) float32")
        rows = np.array(rows, dtype=np.int64)  # small: n x 3
        images = arrays.get("images")
        if manifest.get("with_images"):
            if images is None:
                raise IndexDamaged(f"{directory}: block {name} lacks its images file")
            total = int(rows[:, 0].sum()) if n else 0
            if images.shape != (total, int(manifest["n_mels"])) or images.dtype != np.float32:
                raise IndexDamaged(f"{directory}: block {name} images {images.shape} {images.dtype}, expected "
                                   f"({total}, {manifest['n_mels']}) float32")
            ends = rows[:, 1] + rows[:, 0]
            if n and (rows[:, 0].min() < 1 or rows[:, 1].min() < 0 or ends.max() > total):
                raise IndexDamaged(f"{directory}: block {name} has image offsets outside its file")
        return _Block(name, hashes, rows, vectors, images)

    def _refresh(self) -> None:
        self.hashes = [h for b in self._blocks for h in b.hashes]
        self.n_rows = len(self.hashes)
        self.alive = np.ones(self.n_rows, dtype=bool)
        dead = self.manifest.get("dead", [])
        if dead:
            self.alive[np.asarray(dead, dtype=np.int64)] = False
        self.lengths = (np.concatenate([b.rows[:, 0] for b in self._blocks]) if self._blocks
                        else np.zeros(0, np.int64))
        # First global row of each block (a row's block is found by bisection, no per-row table).
        self._starts = np.cumsum([0] + [len(b.hashes) for b in self._blocks]).tolist()
        self.row_of = {h: i for i, h in enumerate(self.hashes) if self.alive[i]}
        self._vectors = None
        # Plain array views of the image maps: slicing them makes no memmap objects (cheaper per read).
        self._image_views = [None if b.images is None else b.images.view(np.ndarray) for b in self._blocks]

    # -- reading -----------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def n_alive(self) -> int:
        return int(self.alive.sum())

    def _where(self, row: int) -> tuple[int, int]:
        """(block, row within it) of global row ``row``."""
        if not 0 <= row < self.n_rows:
            raise IndexError(f"{self.directory}: row {row} outside the {self.n_rows} rows")
        bi = bisect.bisect_right(self._starts, row) - 1
        return bi, row - self._starts[bi]

    def vectors(self) -> np.ndarray:
        """(n_rows, D) float32 (a Fortran-order view): a memory map for one block, else the blocks joined (kept)."""
        if self._vectors is None:
            if not self._blocks:
                self._vectors = np.zeros((0, self.dim), np.float32)
            elif len(self._blocks) == 1:
                self._vectors = self._blocks[0].vectors.T
            else:
                self._vectors = np.concatenate([b.vectors for b in self._blocks], axis=1).T
        return self._vectors

    def image(self, row: int) -> np.ndarray:
        """Row ``row``'s whole (F, T) image, float32, its checksum verified.

        Raises
        ------
        IndexDamaged
            The image's bytes fail their checksum.
        """
        return np.ascontiguousarray(self._checked_image(row).T)  # (F, T)

    def _checked_image(self, row: int) -> np.ndarray:
        """Row ``row``'s (T, F) image as a view of its memory map, its checksum verified (no copy)."""
        bi, i = self._where(row)
        b, images = self._blocks[bi], self._image_views[bi]
        if images is None:
            raise ValueError(f"{self.directory}: this index keeps no images")
        t, off, crc = b.rows[i].tolist()
        part = images[off : off + t]  # (T, F), one contiguous slice of the file
        if zlib.crc32(part) != crc:
            exc = IndexDamaged(f"{self.directory}: block {b.name} image of row {i} fails its checksum")
            exc.index = self  # which index to drop and rebuild
            raise exc
        return part

    def gather(self, rows: Sequence[int], width: int) -> np.ndarray:
        """(R, 1, F, width) float32: the images of ``rows`` padded with silence to ``width`` frames.

        What an exact re-ranking needs of many candidates at once: the rows
        are read in file order, each straight from its memory map into the
        batch (one copy), each checksum verified as in :meth:`image`.

        Raises
        ------
        ValueError
            A row's image is longer than ``width`` frames, or a row is out of range.
        IndexDamaged
            An image fails its checksum.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        f, width = int(self.manifest["n_mels"]), int(width)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise ValueError(f"{self.directory}: rows must lie in 0..{self.n_rows - 1}, got "
                             f"{int(rows.min())}..{int(rows.max())}")
        long = rows[self.lengths[rows] > width] if rows.size else rows
        if long.size:
            raise ValueError(f"{self.directory}: row {int(long[0])} has {int(self.lengths[long[0]])} frames, "
                             f"more than the {width} to pad to")
        out = np.zeros((len(rows), 1, f, width), dtype=np.float32)  # (R, 1, F, W)
        self._will_need(rows)
        for j in np.argsort(rows, kind="stable"):
            part = self._checked_image(int(rows[j]))  # (T, F)
            out[j, 0, :, : part.shape[0]] = part.T
        return out

    def _will_need(self, rows: np.ndarray) -> None:
        """Ask the kernel to read the images of ``rows`` ahead, all at once (``MADV_WILLNEED``).

        Candidates lie scattered over the file; a page cache that does not
        hold them yet would otherwise read them one page fault at a time.
        Only a hint: where the platform has no ``madvise`` nothing happens.
        """
        import mmap

        advice = getattr(mmap, "MADV_WILLNEED", None)
        if advice is None or len(rows) < 2:
            return
        page = mmap.PAGESIZE
        for r in rows.tolist():
            bi, i = self._where(r)
            images = self._blocks[bi].images
            mm = getattr(images, "_mmap", None)
            if mm is None:
                continue
            t, off, _ = self._blocks[bi].rows[i].tolist()
            row_bytes = images.shape[1] * 4
            # The map starts at the allocation boundary at or before the array's data.
            start = images.offset % mmap.ALLOCATIONGRANULARITY + off * row_bytes
            first = start - start % page
            try:
                mm.madvise(advice, first, start + t * row_bytes - first)
            except (OSError, ValueError):
                return

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def status(self) -> dict:
        return {"directory": str(self.directory), "kind": self.kind, "rows": self.n_rows,
                "alive": self.n_alive, "dead": self.n_rows - self.n_alive, "blocks": len(self._blocks),
                "bytes": self.size_bytes(), "generation": self.manifest.get("generation", 0)}

    # -- writing -----------------------------------------------------------------
    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the folder's exclusive write lock."""
        return index_files.folder_lock(self.directory)

    def _write_manifest(self) -> None:
        self.manifest["updated_at"] = time.time()
        self.manifest["generation"] = int(self.manifest.get("generation", 0)) + 1
        index_files.write_json(self.directory / index_files.MANIFEST, self.manifest)

    def _next_name(self) -> str:
        used = [int(b["name"][1:]) for b in self.manifest["blocks"]]
        return f"b{(max(used) + 1 if used else 1):06d}"

    def write_block(self, hashes: Sequence[str], items: Iterable[tuple[np.ndarray, np.ndarray]],
                    cancel: CancelFn | None = None) -> dict:
        """Write one block's files (not yet in the manifest); returns its manifest entry.

        ``items`` yields ``(image (F, T), vector (D,))`` per row, in the
        order of ``hashes``; the images are streamed to disk, never held
        together in memory (an index without images keeps only T).
        """
        name = self._next_name()
        n, dim, f = len(hashes), self.dim, int(self.manifest["n_mels"])
        with_images = bool(self.manifest["with_images"])
        rows = np.zeros((n, 3), dtype=np.int64)
        vectors = np.zeros((dim, n), dtype=np.float32)
        img_path = index_files.block_path(self.directory, name, "images")
        tmp_img = index_files.temp_path(img_path)
        files: dict = {}
        fimg = None
        try:
            if with_images:
                fimg = open(tmp_img, "wb")
                fimg.write(index_files.npy_header(0, f))  # rewritten below with the real row count
            count, offset = 0, 0
            for i, (image, vec) in enumerate(items):
                check_cancel(cancel)
                if i >= n:
                    raise ValueError(f"block {name}: more items than its {n} rows")
                vectors[:, i] = vec
                im = np.asarray(image, dtype="<f4")
                if im.ndim != 2 or im.shape[0] != f or im.shape[1] < 1:
                    raise ValueError(f"row {i} ({hashes[i]}): image {im.shape}, expected ({f}, T >= 1)")
                rows[i, 0], rows[i, 1] = im.shape[1], offset
                offset += im.shape[1]
                if fimg is not None:
                    data = np.ascontiguousarray(im.T).tobytes()
                    rows[i, 2] = zlib.crc32(data)
                    fimg.write(data)
                count += 1
            if count != n:
                raise ValueError(f"block {name}: {count} items for {n} rows")
            if fimg is not None:
                fimg.seek(0)
                fimg.write(index_files.npy_header(offset, f))
                index_files.finish_file(fimg, tmp_img, img_path)
                fimg = None
                files["images"] = {"bytes": img_path.stat().st_size}
            for part, arr in (("rows", rows), ("vectors", vectors)):
                files[part] = index_files.write_npy(index_files.block_path(self.directory, name, part), arr)
        except BaseException:
            if fimg is not None:
                fimg.close()
            for p in self.directory.glob(f"{name}.*"):
                p.unlink(missing_ok=True)
            raise
        return {"name": name, "n": n, "hashes": list(hashes), "files": files}

    def commit(self, new_blocks: Sequence[dict] = (), dead: Iterable[int] = (),
               drop_blocks: Sequence[str] = ()) -> None:
        """Make written blocks and tombstones part of the index (one manifest replace)."""
        keep = [b for b in self.manifest["blocks"] if b["name"] not in set(drop_blocks)]
        if drop_blocks:
            self.manifest["dead"] = []
        else:
            self.manifest["dead"] = sorted(set(self.manifest["dead"]) | {int(i) for i in dead})
        self.manifest["blocks"] = keep + list(new_blocks)
        self._write_manifest()
        stamp = index_files.read_verified(self.directory)
        self._blocks = [self._open_block(self.directory, b, self.manifest, stamp)
                        for b in self.manifest["blocks"]]
        index_files.write_verified(self.directory, stamp, index_files.block_files(self.manifest))
        self._refresh()
        index_files.remove_orphans(self.directory, {b["name"] for b in self.manifest["blocks"]})

    def update(self, wanted: Iterable[str], compute: Callable[[str], tuple[np.ndarray, np.ndarray]],
               progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> dict:
        """Bring the index to the content hashes ``wanted``: append the missing, tombstone the gone.

        Parameters
        ----------
        wanted : iterable of str
            Every content hash the index should hold.
        compute : callable
            ``compute(content_hash) -> (image (F, T), vector (D,))``.
        progress, cancel
            House style; progress counts the rows added. A cancelled update
            keeps the blocks already committed.

        Returns
        -------
        dict
            ``{"added": n, "removed": n, "compacted": bool}``.
        """
        with self.locked():
            want = dict.fromkeys(wanted)
            gone = [i for i, h in enumerate(self.hashes) if self.alive[i] and h not in want]
            new = [h for h in want if h not in self.row_of]
            report(progress, 0, len(new))
            if gone:
                self.commit(dead=gone)
            for s in range(0, len(new), BLOCK_ROWS):
                part = new[s : s + BLOCK_ROWS]

                def items(part=part, s=s):
                    for j, h in enumerate(part):
                        yield compute(h)
                        report(progress, s + j + 1, len(new))

                entry = self.write_block(part, items(), cancel)
                self.commit([entry])
            compacted = self._maybe_compact(cancel)
        return {"added": len(new), "removed": len(gone), "compacted": compacted}

    def _maybe_compact(self, cancel: CancelFn | None) -> bool:
        dead = self.n_rows - self.n_alive
        if not (len(self._blocks) > MAX_BLOCKS or (dead > 0 and dead > MAX_DEAD_FRACTION * self.n_rows)):
            return False
        live = np.flatnonzero(self.alive)
        with_images = bool(self.manifest["with_images"])
        vec = self.vectors()
        f = int(self.manifest["n_mels"])

        def items():
            for r in live:
                # Without images only the frame count is kept: a stand-in image carries it.
                im = self.image(int(r)) if with_images else np.zeros((f, int(self.lengths[r])), np.float32)
                yield im, np.asarray(vec[r])

        entry = self.write_block([self.hashes[r] for r in live], items(), cancel)
        self.commit([entry], drop_blocks=[b["name"] for b in self.manifest["blocks"]])
        return True


def drop(directory: str | os.PathLike) -> bool:
    """Delete an index folder (derived data only); True if there was one.

    Raises
    ------
    ValueError
        The folder holds files an index never writes (it is left alone).
    """
    directory = Path(directory)
    if not directory.exists():
        return False
    strangers = [p.name for p in directory.iterdir() if not index_files.is_index_file(p.name)]
    if strangers:
        raise ValueError(f"{directory}: not an index folder (it holds {', '.join(sorted(strangers)[:3])}); "
                         "refusing to delete it")
    shutil.rmtree(directory)
    return True
