"""Training data: library clips -> cached log-mel images -> patches.

The split into training and validation clips is made BY CLIP (a clip's
patches never straddle the split), per label, from content hashes and a fixed
seed, so it does not depend on import order, paths or the machine. Clips with
identical content count once.

Patches are not copied: a :class:`PatchSet` keeps each clip's image once and
a list of (clip, start frame) pairs whose starts follow
:func:`perceptlab.audio.features.windows` exactly (last window aligned to the
end, a clip shorter than a patch looped to one patch).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from perceptlab.audio.features import FeatureConfig, excerpt
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report


class DataError(ValueError):
    """The library cannot provide training data; the message says why and what to do."""


def window_starts(n_frames: int, patch: int, hop: int) -> list[int]:
    """Start frames of :func:`~perceptlab.audio.features.windows` for a clip of ``n_frames``."""
    if n_frames <= patch:
        return [0]
    starts = list(range(0, n_frames - patch + 1, hop))
    if starts[-1] != n_frames - patch:
        starts.append(n_frames - patch)
    return starts


class PatchSet:
    """Patches of a set of clip images, gathered into batches on demand.

    Parameters
    ----------
    images : list of numpy.ndarray
        (F, T_i) float32 images in [0, 1].
    patch, hop : int
        Patch width and hop in frames.
    """

    def __init__(self, images: list[np.ndarray], patch: int, hop: int):
        self.patch = patch
        self.images: list[torch.Tensor] = []
        index = []
        for ci, img in enumerate(images):
            if img.shape[1] < patch:
                img = excerpt(img, patch)  # looped, as windows() does
            self.images.append(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)))
            index += [(ci, s) for s in window_starts(img.shape[1], patch, hop)]
        self.index = torch.tensor(index, dtype=torch.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def batch(self, indices, augment: "Augment | None" = None, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Stack patches: (B, 1, F, patch) float32.

        With ``augment`` (and its ``rng``), each patch is cut at a start
        moved by up to ``augment.shift`` frames either way (kept inside its
        clip) and its level changed by up to ``augment.gain_db`` either way:
        what a listener ignores, so the encoder learns to ignore it too.
        """
        rows = self.index[torch.as_tensor(indices, dtype=torch.int64)].tolist()
        if augment is None or not augment.active:
            return torch.stack([self.images[c][:, s : s + self.patch] for c, s in rows]).unsqueeze(1)
        if rng is None:
            raise ValueError("augmentation needs a random generator")
        out = []
        for c, s in rows:
            img = self.images[c]
            if augment.shift:
                s = int(np.clip(s + rng.integers(-augment.shift, augment.shift + 1), 0, img.shape[1] - self.patch))
            p = img[:, s : s + self.patch]
            if augment.gain_db:
                p = augment.apply_gain(p, float(rng.uniform(-augment.gain_db, augment.gain_db)))
            out.append(p)
        return torch.stack(out).unsqueeze(1)  # (B, 1, F, T)


    def other_views(self, indices, augment: "Augment", rng: np.random.Generator) -> torch.Tensor:
        """A second patch of each patch's clip: a random crop anywhere in it, at its own level.

        (B, 1, F, patch), in the order of ``indices``; the partner views of
        the view-agreement term. A clip one patch long gives the same crop,
        moved by nothing, at another level. With ``augment.transpose``, each
        view is also transposed by up to that many semitones either way.
        """
        rows = self.index[torch.as_tensor(indices, dtype=torch.int64)].tolist()
        out = []
        for c, _ in rows:
            img = self.images[c]
            s = int(rng.integers(0, img.shape[1] - self.patch + 1))
            p = img[:, s : s + self.patch]
            if augment.gain_db:
                p = augment.apply_gain(p, float(rng.uniform(-augment.gain_db, augment.gain_db)))
            if augment.transpose:
                p = augment.apply_transpose(p, float(rng.uniform(-augment.transpose, augment.transpose)))
            out.append(p)
        return torch.stack(out).unsqueeze(1)


@dataclass(frozen=True)
class Augment:
    """Training-time changes a listener ignores.

    Attributes
    ----------
    shift : int
        Largest move of a patch's start, in frames (a random crop).
    gain_db : float
        Largest level change in dB. The image is dB above a floor scaled to
        [0, 1] (``(dB - floor) / (ceiling - floor)``), so a gain of g dB adds
        ``g / (ceiling - floor)``; pixels at the floor (silence) stay there,
        and the result is clipped to [0, 1] as the features are.
    db_range : float
        ``ceiling - floor`` of the feature config, in dB.
    transpose : float
        Largest transposition of a PARTNER view (:meth:`PatchSet.other_views`),
        in semitones either way: an instrument a few semitones higher is still
        the same instrument, so view agreement should not lean on the exact
        pitch. The patches they are partners of are never transposed.
    band_hz : numpy.ndarray, optional
        Centre frequency of each mel band (``mel_frequencies``); needed when
        ``transpose`` is on.
    """

    shift: int = 0
    gain_db: float = 0.0
    db_range: float = 83.0
    transpose: float = 0.0
    band_hz: "np.ndarray | None" = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return bool(self.shift or self.gain_db)

    def apply_gain(self, patch: torch.Tensor, gain_db: float) -> torch.Tensor:
        moved = (patch + gain_db / self.db_range).clamp(0.0, 1.0)
        return torch.where(patch > 0, moved, patch)

    def apply_transpose(self, patch: torch.Tensor, semitones: float) -> torch.Tensor:
        """``patch`` (F, T) with every frequency multiplied by ``2 ** (semitones / 12)``.

        Band b of the result reads the input at ``band_hz[b] / ratio``,
        interpolated linearly between the two nearest bands; what would come
        from outside the bands is silence (0).
        """
        if self.band_hz is None or len(self.band_hz) != patch.shape[0]:
            have = "none" if self.band_hz is None else f"{len(self.band_hz)}"
            raise ValueError(f"transposing needs the centre frequency of each of the patch's {patch.shape[0]} "
                             f"mel bands (Augment.band_hz has {have})")
        src = self.band_hz / 2.0 ** (semitones / 12.0)
        pos = np.interp(src, self.band_hz, np.arange(len(self.band_hz), dtype=np.float64))
        outside = (src < self.band_hz[0]) | (src > self.band_hz[-1])
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, len(pos) - 1)
        w = torch.from_numpy(np.where(outside, 0.0, pos - lo).astype(np.float32)).unsqueeze(1)
        keep = torch.from_numpy((~outside).astype(np.float32)).unsqueeze(1)
        out = patch[torch.from_numpy(lo)] * (1.0 - w) + patch[torch.from_numpy(hi)] * w
        return out * keep


@dataclass
class TrainingData:
    """Everything the loop needs from the library."""

    train: PatchSet
    val: PatchSet | None
    train_clips: list[Clip]
    val_clips: list[Clip]
    library: str
    fingerprint: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def selection_hash(self) -> str:
        """Hash of exactly which clips are in each part (checked on resume)."""
        h = hashlib.sha256()
        for part, clips in (("train", self.train_clips), ("val", self.val_clips)):
            for c in clips:
                h.update(f"{part}\t{c.content_hash}\t{c.label or ''}\n".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "library": self.library,
            "fingerprint": self.fingerprint,
            "selection_hash": self.selection_hash,
            "n_train_clips": len(self.train_clips),
            "n_val_clips": len(self.val_clips),
            "n_train": len(self.train),
            "n_val": len(self.val) if self.val is not None else 0,
            "train_hashes": [c.content_hash for c in self.train_clips],
            "val_hashes": [c.content_hash for c in self.val_clips],
            # What the encoder heard, by file: lets anyone check that an
            # evaluated library was not part of its training.
            "train_files": [_file_row(c) for c in self.train_clips],
            "val_files": [_file_row(c) for c in self.val_clips],
        }


def _file_row(c: Clip) -> dict:
    return {"path": c.path, "name": Path(c.path).name, "content_hash": c.content_hash, "label": c.label or "",
            "duration": round(float(c.duration or 0.0), 3)}


def split_clips(clips: list[Clip], val_fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Split clips into (train, val), per label, deterministically.

    Within each label the clips are ordered by content hash and shuffled
    with ``seed``; ``round(val_fraction * n)`` of them go to validation. When
    that rounds to 0 everywhere but ``val_fraction > 0``, the largest label
    gives one clip. Both lists come back ordered by (label, content hash).
    """
    by_label: dict[str, list[Clip]] = {}
    for c in clips:
        by_label.setdefault(c.label or "", []).append(c)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda c: c.content_hash)
        order = rng.permutation(len(group))
        n_val = int(np.floor(val_fraction * len(group) + 0.5)) if val_fraction > 0 else 0
        n_val = min(n_val, len(group) - 1) if len(group) > 1 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    if val_fraction > 0 and not val and len(train) > 1:
        counts: dict[str, int] = {}
        for c in train:
            counts[c.label or ""] = counts.get(c.label or "", 0) + 1
        biggest = max(sorted(counts), key=lambda k: counts[k])
        pick = next(c for c in sorted(train, key=lambda c: c.content_hash) if (c.label or "") == biggest)
        train.remove(pick)
        val.append(pick)
    key = lambda c: (c.label or "", c.content_hash)  # noqa: E731
    return sorted(train, key=key), sorted(val, key=key)


def load_training_data(
    library_path: str | Path,
    *,
    labels: list[str],
    val_fraction: float,
    split_seed: int,
    patch: int,
    hop: int,
    min_frames: int,
    features: FeatureConfig,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> TrainingData:
    """Open the library, pick and split the clips, load their images.

    Raises
    ------
    DataError
        No library, no clips, no clips with the wanted labels, every clip too
        short or unreadable, or too few clips to split.
    """
    from perceptlab.audio.decode import AudioError
    from perceptlab.library.features import clip_image
    from perceptlab.library.store import LibraryError

    path = Path(library_path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no library here; create one with `perceptlab import DIR --library {path}`")
    try:
        lib = Library(path)
    except LibraryError as exc:
        raise DataError(str(exc)) from None
    with lib:
        clips = lib.clips()
        if not clips:
            raise DataError(
                f"{lib.path}: the library has no usable clips; import audio first with "
                f"`perceptlab import DIR --library {lib.path}`"
            )
        if labels:
            chosen = [c for c in clips if c.label in set(labels)]
            if not chosen:
                have = ", ".join(lib.labels()) or "(no labels)"
                raise DataError(f"data.labels: no clips with labels {labels} in {lib.path} (labels there: {have})")
            clips = chosen
        unique: dict[str, Clip] = {}
        for c in clips:
            unique.setdefault(c.content_hash, c)
        clips = list(unique.values())

        skipped: list[tuple[str, str]] = []
        images: dict[str, np.ndarray] = {}
        n_short = 0
        report(progress, 0, len(clips))
        for i, c in enumerate(clips):
            check_cancel(cancel)
            try:
                img = clip_image(lib, c, features)
            except AudioError as exc:
                skipped.append((c.path, str(exc)))
            else:
                if img.shape[1] < min_frames:
                    n_short += 1
                    skipped.append((c.path, f"{img.shape[1]} frames, shorter than {min_frames}"))
                else:
                    images[c.content_hash] = img
            report(progress, i + 1, len(clips))
        fingerprint = lib.fingerprint()
        lib_path = str(lib.path)

    usable = [c for c in clips if c.content_hash in images]
    if not usable:
        secs = min_frames * features.hop_length / features.sample_rate
        if n_short == len(clips):
            raise DataError(
                f"data: all {len(clips)} clips are too short: each is under data.min_clip_frames = "
                f"{min_frames} frames ({secs:.2f} s); use longer clips, or lower data.min_clip_frames "
                f"or data.patch_frames"
            )
        raise DataError(f"data: none of the {len(clips)} clips could be read (first: {skipped[0][0]}: "
                        f"{skipped[0][1]})")
    train_clips, val_clips = split_clips(usable, val_fraction, split_seed)
    if val_fraction > 0 and not val_clips:
        raise DataError(
            f"data.val_fraction: {len(usable)} usable clip(s) are too few to hold any out for "
            "validation; add clips or set data.val_fraction = 0"
        )
    train = PatchSet([images[c.content_hash] for c in train_clips], patch, hop)
    val = PatchSet([images[c.content_hash] for c in val_clips], patch, hop) if val_clips else None
    return TrainingData(train, val, train_clips, val_clips, lib_path, fingerprint, skipped)


def embedding_stats(model, patches, batch_size: int, device, limit: int = 2048) -> dict:
    """Mean and std of the patch embeddings over (up to ``limit``, evenly spaced) training patches.

    The encoder standardises embeddings with them: the raw latent means
    share a large common offset that makes every cosine distance ~0.
    ``patches`` is a :class:`~perceptlab.train.data.PatchSet`.
    """
    n = len(patches)
    idx = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
    was_training = model.training
    model.eval()
    zs = []
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            x = patches.batch(idx[i : i + batch_size]).to(device)
            zs.append(model.embed(x).double().cpu())  # (b, D)
    model.train(was_training)
    z = torch.cat(zs)
    return {"mean": z.mean(0).float(), "std": z.std(0, unbiased=False).float(), "n": int(z.shape[0])}
