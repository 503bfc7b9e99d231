"""Rendered stimuli: distortions of library clips kept as files and recorded in the library.

:func:`render_stimulus` applies a :class:`~perceptlab.audio.distort.Recipe`
to a reference (a library clip or any audio file), writes the result as a
FLAC file (24-bit; a WAV float file when the distortion pushes the peak above
full scale, so nothing is silently clipped) and records it in the library's
``stimuli`` table with the full recipe and the package versions. Listening
tests and the probe play these files; the signal processing itself lives in
:mod:`perceptlab.audio.distort`, the SQL in :class:`~perceptlab.library.store.Library`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perceptlab.atomic import atomic_path
from perceptlab.audio.distort import Recipe, apply
from perceptlab.library.hashing import file_hash
from perceptlab.versions import package_versions

__all__ = ["Stimulus", "find_stimulus", "get_stimulus", "list_stimuli", "render_stimulus"]


@dataclass(frozen=True)
class Stimulus:
    """One row of the library's ``stimuli`` table.

    ``info`` is the stored JSON: the recipe (``kind``, ``params``, ``seed``)
    plus ``rate``, ``format``, ``reference`` ({path, name, content_hash,
    clip_id}) and ``versions`` of the packages that rendered it.
    """

    id: int
    reference_hash: str | None
    recipe: Recipe
    path: str
    content_hash: str
    created_at: float
    info: dict

    @property
    def name(self) -> str:
        return Path(self.path).name

    def to_json(self) -> dict:
        return {"id": self.id, "reference_hash": self.reference_hash, "path": self.path,
                "content_hash": self.content_hash, "recipe": self.recipe.to_json(),
                "label": self.recipe.label, "info": self.info, "created_at": self.created_at}


def _from_row(row: tuple) -> Stimulus:
    sid, ref_hash, info, path, content_hash, created = row
    return Stimulus(sid, ref_hash, Recipe.from_json(info), path, content_hash, created, info)


def get_stimulus(library, stimulus_id: int) -> Stimulus:
    """The stimulus with this id (KeyError if none)."""
    return _from_row(library.stimulus(stimulus_id))


def list_stimuli(library, reference_hash: str | None = None) -> list[Stimulus]:
    """All stimuli (or those of one reference), oldest first."""
    return [_from_row(r) for r in library.stimuli(reference_hash)]


def find_stimulus(library, reference_hash: str | None, recipe: Recipe) -> Stimulus | None:
    """An already rendered stimulus of this reference and recipe whose file is intact, or None."""
    for s in reversed(list_stimuli(library, reference_hash)):
        if s.recipe.key == recipe.key and s.reference_hash == reference_hash:
            p = Path(s.path)
            if p.exists() and file_hash(p) == s.content_hash:
                return s
    return None


def render_stimulus(library, reference, recipe: Recipe, out_dir: str | os.PathLike, *,
                    reuse: bool = True) -> Stimulus:
    """Render ``recipe`` applied to ``reference`` into ``out_dir`` and record it.

    Parameters
    ----------
    library : perceptlab.library.store.Library
    reference : Clip or path
        A library clip, or any audio file. It is decoded to mono at its own
        sample rate.
    recipe : Recipe
    out_dir : path
        Folder for the rendered file (created if missing). The file name is
        ``<stem>-<hash8>__<recipe slug>.flac`` (``.wav`` when the peak
        exceeds full scale), written atomically.
    reuse : bool
        Return the existing row when this reference and recipe were rendered
        before and the file is intact (rendering is deterministic anyway).

    Returns
    -------
    Stimulus
    """
    import soundfile as sf

    from perceptlab.audio.decode import load

    if hasattr(reference, "content_hash") and hasattr(reference, "path"):
        if getattr(reference, "ok", True) is False:
            raise ValueError(f"{reference.path}: was not imported: {reference.error}")
        ref_path, ref_hash, clip_id = Path(reference.path), reference.content_hash, getattr(reference, "id", None)
    else:
        ref_path = Path(reference).expanduser().resolve()
        if not ref_path.is_file():
            raise ValueError(f"{ref_path}: no such file")
        ref_hash, clip_id = file_hash(ref_path), None
        clip = library.clip_by_path(ref_path)
        if clip is not None and clip.ok and clip.content_hash == ref_hash:
            clip_id = clip.id
    if reuse:
        old = find_stimulus(library, ref_hash, recipe)
        if old is not None:
            return old
    wave = load(ref_path, sample_rate=None)
    rate = sf.info(str(ref_path)).samplerate
    y = apply(recipe, wave, rate)
    peak = float(np.abs(y).max()) if y.size else 0.0
    fmt, subtype, ext = ("FLAC", "PCM_24", ".flac") if peak <= 1.0 else ("WAV", "FLOAT", ".wav")
    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{ref_path.stem}-{ref_hash[:8]}__{recipe.slug}{ext}"
    with atomic_path(out) as tmp:
        sf.write(str(tmp), y, rate, format=fmt, subtype=subtype)
    content = file_hash(out)
    info = {**recipe.to_json(), "label": recipe.label, "rate": rate, "format": f"{fmt}/{subtype}",
            "frames": int(y.size), "peak": peak,
            "reference": {"path": str(ref_path), "name": ref_path.name, "content_hash": ref_hash,
                          "clip_id": clip_id},
            "versions": package_versions()}
    sid = library.put_stimulus(ref_hash, info, out, content)
    return get_stimulus(library, sid)
