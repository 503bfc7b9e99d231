"""A library's persistent search indexes: which exist, building, updating, checking.

The storage is :mod:`perceptlab.library.indexes`; the search is
:mod:`perceptlab.metrics.search`. This module ties them to a library:

- ``images`` (one per feature config) serves every spectrogram metric:
  each clip's whole log-mel image (exactly the feature cache's) and its
  sketch for the candidate stage;
- ``logmel-stats`` and ``mfcc-stats`` keep each clip's RAW statistics; the
  z-scores over the library are taken when searching (they change with
  every clip added), from these rows.

Encoder metrics (``embedding:<name>``) keep their vectors in the library
itself and are searched exactly from there (N x D, small).

:func:`library_index` opens an index, drops and rebuilds it when it is
damaged (with a warning in the log and in :data:`LAST_EVENTS`), and brings
it up to date with the library: new clips appended, removed ones
tombstoned. :func:`update_library_indexes` does that for every kind, with
``progress(done, total)`` and ``cancel()``: the call to make after an import.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.audio.features import FeatureConfig
from perceptlab.library.features import clip_image
from perceptlab.library.indexes import ClipIndex, IndexDamaged, drop, index_dir, index_root
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, report

log = logging.getLogger("perceptlab.indexes")

IMAGES = "images"


def index_kinds() -> tuple[str, ...]:
    """The kinds of index a library can have: :data:`IMAGES` (every spectrogram
    metric), then one per built-in baseline (its raw statistics), from the registry."""
    from perceptlab.metric_names import BASELINES

    return (IMAGES, *BASELINES)


#: What happened to damaged or unusable indexes in this process (newest last),
#: for a status line or a test: (directory, reason).
LAST_EVENTS: list[tuple[str, str]] = []

# Open indexes, kept per process: (directory) -> ClipIndex.
_OPEN: dict[str, ClipIndex] = {}


def index_kind(metric_name: str) -> str | None:
    """The index kind that serves ``metric_name`` (None: searched without one)."""
    from perceptlab.metrics.registry import get_metric

    m = get_metric(metric_name)
    if m.input_kind == "spectrogram":
        return IMAGES
    if m.params.get("baseline", False) and metric_name in index_kinds():
        return metric_name
    return None


def _dim(kind: str, config: FeatureConfig) -> int:
    if kind == IMAGES:
        from perceptlab.metrics.search import SKETCH_DIM

        return SKETCH_DIM
    from perceptlab.metrics.baselines import vector_dim

    return vector_dim(kind, config)


def vector_of(kind: str, image: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The row vector an index of ``kind`` keeps for one whole image."""
    if kind == IMAGES:
        from perceptlab.metrics.search import sketch

        return sketch(image)
    from perceptlab.metrics.baselines import raw_vector

    return raw_vector(kind, image, config)


def _event(directory: Path, reason: str) -> None:
    LAST_EVENTS.append((str(directory), reason))
    del LAST_EVENTS[:-20]
    log.warning("%s", reason)


def _info(kind: str) -> dict:
    if kind == IMAGES:
        from perceptlab.metrics.search import SKETCH_VERSION

        return {"sketch_version": SKETCH_VERSION}
    return {}


def _create(directory: Path, kind: str, config: FeatureConfig) -> ClipIndex:
    return ClipIndex.create(directory, kind, config.to_dict(), config.hash, _dim(kind, config), config.n_mels,
                            with_images=(kind == IMAGES), info=_info(kind))


def open_index(library_path: str | os.PathLike, kind: str, config: FeatureConfig = FeatureConfig(),
               create: bool = True) -> ClipIndex | None:
    """Open (or create) an index; a damaged one is dropped and started afresh.

    Returns None when there is none and ``create`` is False.
    """
    directory = index_dir(library_path, kind, config.hash)
    # Whatever this process held open for the folder is stale now (and gone if it is).
    _OPEN.pop(str(directory), None)
    try:
        index = ClipIndex.open(directory)
        if index.kind != kind or index.manifest.get("config_hash") != config.hash \
                or index.dim != _dim(kind, config) or int(index.manifest["n_mels"]) != config.n_mels:
            raise IndexDamaged(f"{directory}: made for another kind or feature config")
        if index.manifest.get("info", {}) != _info(kind):
            raise IndexDamaged(f"{directory}: made by another version of the sketch")
    except FileNotFoundError:
        if not create:
            return None
        index = _create(directory, kind, config)
    except IndexDamaged as exc:
        _event(directory, f"search index damaged, dropped and rebuilt: {exc}")
        index = _create(directory, kind, config)
    _remember(index)
    return index


def rebuild_damaged(index: ClipIndex, reason: str) -> None:
    """Drop an index found damaged while in use (the next :func:`library_index` rebuilds it)."""
    _event(index.directory, f"search index damaged, dropped and rebuilt: {reason}")
    _OPEN.pop(str(index.directory), None)
    drop(index.directory)


def _remember(index: ClipIndex) -> None:
    st = (index.directory / "manifest.json").stat()
    index._manifest_stat = (st.st_size, st.st_mtime_ns)
    _OPEN[str(index.directory)] = index


def _library_hashes(clips: Sequence[Clip]) -> list[str]:
    return list(dict.fromkeys(c.content_hash for c in clips if c.ok))


def library_index(library: Library, kind: str, config: FeatureConfig = FeatureConfig(),
                  progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                  clips: Sequence[Clip] | None = None, *, hashes: Sequence[str | None] | None = None
                  ) -> ClipIndex:
    """The index of ``kind`` for ``library``, up to date with its good clips.

    Incremental: only clips whose content is not in the index are read
    (from the feature cache, or decoded); clips gone from the library are
    tombstoned. An index whose image fails its checksum while this runs is
    rebuilt.

    Parameters
    ----------
    clips : sequence of Clip, optional
        The library's clips, when the caller has read them.
    hashes : sequence of str, optional
        Else their content hashes (:meth:`~perceptlab.library.store.Library.clip_keys`),
        when the caller has read those. With neither, the hashes are read; the
        clips themselves only when some must be added.
    """
    if clips is None:
        # Only the content hashes to see whether the index is current (the whole rows,
        # five times the cost in a large library, only when clips have to be added).
        if hashes is None:
            hashes = [h for _, h in library.clip_keys()]
        wanted = list(dict.fromkeys(h for h in hashes if h is not None))
    else:
        clips = list(clips)
        wanted = _library_hashes(clips)
    index = _OPEN.get(str(index_dir(library.path, kind, config.hash)))
    if index is not None and not _still_current(index):
        index = None
    if index is None:
        index = open_index(library.path, kind, config)
    if len(index.row_of) == len(wanted) and all(h in index.row_of for h in wanted):
        return index
    if clips is None:
        clips = library.clips()
        wanted = _library_hashes(clips)
    by_hash = {}
    for c in clips:
        by_hash.setdefault(c.content_hash, c)

    def compute(h: str):
        image = clip_image(library, by_hash[h], config)
        return image, vector_of(kind, image, config)

    try:
        index.update(wanted, compute, progress, cancel)
    except IndexDamaged as exc:  # an image failed its checksum while compacting
        rebuild_damaged(index, str(exc))
        index = open_index(library.path, kind, config)
        index.update(wanted, compute, progress, cancel)
    _remember(index)
    return index


def _still_current(index: ClipIndex) -> bool:
    """Whether the manifest on disk is still the one this process opened (another process may have updated it)."""
    try:
        st = (index.directory / "manifest.json").stat()
    except OSError:
        return False
    return getattr(index, "_manifest_stat", None) == (st.st_size, st.st_mtime_ns)


def forget(library_path: str | os.PathLike | None = None) -> None:
    """Forget the open indexes (of one library, or all): the next use reopens them from disk."""
    root = None if library_path is None else str(index_root(library_path))
    for k in [k for k in _OPEN if root is None or k.startswith(root)]:
        del _OPEN[k]


def update_library_indexes(library_path: str | os.PathLike, config: FeatureConfig = FeatureConfig(),
                           progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                           kinds: Sequence[str] | None = None) -> dict:
    """Bring every search index of a library up to date (the call to make after an import).

    Returns {kind: index status}. Baseline indexes need at least 2 clips to
    be used, but are kept from the first. ``kinds``: which (default: every
    one of :func:`index_kinds`).
    """
    kinds = index_kinds() if kinds is None else kinds
    out = {}
    with Library(library_path) as lib:
        clips = lib.clips()
        total = len(kinds)
        report(progress, 0, total)
        for i, kind in enumerate(kinds):
            def sub(done, n, i=i):
                report(progress, i * 1000 + (1000 * done // max(n, 1)), total * 1000)

            index = library_index(lib, kind, config, sub if progress else None, cancel, clips)
            out[kind] = index.status()
            report(progress, (i + 1) * 1000, total * 1000)
    return out


def index_status(library_path: str | os.PathLike, config: FeatureConfig = FeatureConfig()) -> dict:
    """{kind: status or None} of a library's indexes, without building any."""
    out = {}
    for kind in index_kinds():
        directory = index_dir(library_path, kind, config.hash)
        try:
            out[kind] = ClipIndex.open(directory).status()
        except FileNotFoundError:
            out[kind] = None
        except IndexDamaged as exc:
            out[kind] = {"directory": str(directory), "damaged": str(exc)}
    return out


def drop_library_indexes(library_path: str | os.PathLike) -> list[str]:
    """Delete every index folder of a library (they are rebuilt when next needed)."""
    root = index_root(library_path)
    forget(library_path)
    gone = []
    if root.exists():
        for d in sorted(root.iterdir()):
            if d.is_dir() and drop(d):
                gone.append(str(d))
        if not any(root.iterdir()):
            root.rmdir()
    return gone
