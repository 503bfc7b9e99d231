"""Importing files and folders into a library.

One file is one transaction (its clip row and its cached features together),
so an import killed at any moment leaves a consistent library and running
the same import again completes it. Unchanged files (same path, size and
modification time) are skipped. A file that cannot be decoded is recorded
with the reason and never stops the import.
"""

from __future__ import annotations

import csv
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from perceptlab.audio.decode import AUDIO_EXTENSIONS, AudioError, probe
from perceptlab.audio.features import FeatureConfig
from perceptlab.library.features import file_analysis
from perceptlab.library.store import Library, file_hash
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report


@dataclass
class ImportSummary:
    """What an import did."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def to_json(self) -> dict:
        return {
            "imported": len(self.imported),
            "skipped": len(self.skipped),
            "relabelled": len(self.relabelled),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
        }

    def text(self) -> str:
        lines = [
            f"imported {len(self.imported)}, skipped {len(self.skipped)} unchanged, "
            f"relabelled {len(self.relabelled)}, failed {len(self.failed)}"
        ]
        lines += [f"  failed: {p}: {r}" for p, r in self.failed]
        return "\n".join(lines)


def scan(paths: Iterable[str | os.PathLike], problems: list[tuple[str, str]] | None = None) -> list[Path]:
    """Audio files under the given files and folders, recursively, sorted.

    Files are recognised by extension; other files are ignored. A path given
    on its own that does not exist raises FileNotFoundError naming it. An
    entry that cannot be followed (a symlink loop, a link whose target is
    gone, a folder that cannot be listed) never stops the scan: it is left
    out and, if ``problems`` is a list, recorded there as (the entry's own
    path, reason).
    """
    found: list[Path] = []
    problems = [] if problems is None else problems
    for p in paths:
        p = Path(p).expanduser()
        if not p.exists() and not p.is_symlink():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if p.is_dir():
            for root, dirs, files in os.walk(p, onerror=lambda e: problems.append(_walk_problem(e))):
                dirs.sort()
                for name in sorted(files):
                    if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                        _add_resolved(Path(root, name), found, problems)
        else:
            _add_resolved(p, found, problems)
    # A file reachable twice (overlapping folders) is imported once.
    return list(dict.fromkeys(found))


def _add_resolved(path: Path, found: list[Path], problems: list[tuple[str, str]]) -> None:
    """Append ``path`` resolved, or record why it cannot be followed."""
    try:
        found.append(path.resolve(strict=True))
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        problems.append((str(path.absolute()), "symlink loop: the link leads back to itself"))
    except FileNotFoundError:
        target = os.readlink(path) if path.is_symlink() else None
        reason = f"broken symlink: its target {target} does not exist" if target else "no such file"
        problems.append((str(path.absolute()), reason))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            problems.append((str(path.absolute()), "symlink loop: the link leads back to itself"))
        else:
            problems.append((str(path.absolute()), f"cannot be followed ({exc.strerror or exc})"))


def _walk_problem(exc: OSError) -> tuple[str, str]:
    return (str(exc.filename), f"folder cannot be read ({exc.strerror or exc})")


def read_labels_csv(path: str | os.PathLike) -> dict[str, str]:
    """Read ``path,label`` rows (an optional header row is skipped).

    Relative paths are taken relative to the CSV's folder. Returns
    {resolved path: label}.
    """
    path = Path(path)
    labels: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.reader(fh), start=1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if len(row) < 2:
                    raise ValueError(f"{path}:{i}: expected 'path,label', got {row!r}")
                file_, label = row[0].strip(), row[1].strip()
                if i == 1 and file_.lower() == "path" and label.lower() == "label":
                    continue
                labels[str((path.parent / file_).resolve())] = label
    except OSError as exc:
        raise ValueError(f"{path}: cannot read labels CSV ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: labels CSV is not UTF-8 text") from None
    return labels


def import_files(
    library: Library,
    paths: Iterable[str | os.PathLike],
    *,
    labels: dict[str, str] | None = None,
    config: FeatureConfig = FeatureConfig(),
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ImportSummary:
    """Import files and folders into ``library``.

    Parameters
    ----------
    library : Library
    paths : iterable of path
        Files and/or folders (scanned recursively).
    labels : dict, optional
        {resolved path: label}; files not in it take their parent folder's
        name (so ``genres/<genre>/<file>.wav`` is labelled by genre).
    config : FeatureConfig
        Features computed and cached at import time.
    progress, cancel : callables
        See :mod:`perceptlab.tasks`.

    Raises
    ------
    Cancelled
        If ``cancel()`` turned true; files done so far are kept.
    """
    summary = ImportSummary()
    files = scan(paths, problems=summary.failed)
    total = len(files)
    report(progress, 0, total)
    for i, f in enumerate(files):
        check_cancel(cancel)
        _import_one(library, f, labels, config, summary)
        report(progress, i + 1, total)
    return summary


def _import_one(library: Library, path: Path, labels, config: FeatureConfig, summary: ImportSummary) -> None:
    key = str(path)
    label = (labels or {}).get(key, path.parent.name)
    try:
        st = path.stat()
    except OSError as exc:
        summary.failed.append((key, f"cannot read file ({exc.strerror or exc})"))
        return
    old = library.clip_by_path(path)
    unchanged = old is not None and old.size == st.st_size and old.mtime == st.st_mtime
    if unchanged and old.error is None and (
        old.loudness is None or not library.has_features(old.content_hash, config.hash)
    ):
        # Imported before loudness was measured, or under another feature
        # config: analyse it again (same clip id, labels kept).
        unchanged = False
        label = old.label if labels is None else label
    if unchanged:
        if old.label != label and labels is not None:
            library.set_label(old.id, label)
            summary.relabelled.append(key)
        elif old.error is not None:
            summary.failed.append((key, old.error))
        else:
            summary.skipped.append(key)
        return

    row = dict(path=key, name=path.name, size=st.st_size, mtime=st.st_mtime, label=label)
    image = None
    try:
        row["content_hash"] = file_hash(path)
        info = probe(path)
        row.update(
            duration=info.duration, sample_rate=info.sample_rate, channels=info.channels, format=info.format
        )
        cached = library.get_features(row["content_hash"], config.hash)
        if cached is None or old is None or old.loudness is None or old.content_hash != row["content_hash"]:
            # Decoding the whole file is also the check that it is intact.
            image, row["loudness"] = file_analysis(path, config)
        else:
            row["loudness"] = old.loudness
    except AudioError as exc:
        row["error"] = exc.reason
    except (OSError, MemoryError, ValueError) as exc:
        row["error"] = f"cannot be imported ({type(exc).__name__}: {exc})"
    with library.transaction():
        library.upsert_clip(**row)
        if image is not None:
            library.put_features(row["content_hash"], config.hash, image)
    if row.get("error"):
        summary.failed.append((key, row["error"]))
    else:
        summary.imported.append(key)
