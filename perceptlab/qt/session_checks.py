"""What the session dialog says about its choices: why they cannot make a session, and what they give.

:class:`FormState` is what :class:`perceptlab.qt.session_dialog.QtSessionDialog`
shows at one moment (read from its widgets); :func:`form_errors` and
:func:`capacity_text` are plain functions of it, so the wording and the counting
are one place and need no widget to check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from perceptlab.audio.distort import Recipe, anchor_recipes
from perceptlab.listening.designs import MUSHRA_MAX_CONDITIONS, TRIPLET

ALL, LABEL, CHOSEN = "all", "label", "chosen"


def recipe_key(text: str) -> str:
    """The canonical key of a recipe's text (two spellings of one distortion share it)."""
    return Recipe.parse(text).key


@dataclass(frozen=True)
class FormState:
    """The dialog's choices.

    Attributes
    ----------
    design : str
        ``"triplet"`` or ``"mushra"``.
    listener : str
        The listener's name, stripped.
    clip_mode : str
        ``ALL``, ``LABEL`` or ``CHOSEN``.
    label : str or None
        The label chosen (``LABEL`` mode).
    clip_ids : tuple of int or None
        The clips of the plan (None: the whole library).
    n_clips : int
        How many clips that is.
    recipes : tuple of str
        The checked recipes.
    n : int
        Trials (triplet) or items (MUSHRA) asked for.
    source : str
        ``"clips"`` or ``"stimuli"`` (triplet).
    references : int
        Stimuli references asked for (0: automatic).
    active : bool
        Active selection (triplet).
    n_metrics : int
        Metrics checked for active selection.
    anchors : bool
        The two MUSHRA low-pass anchors.
    stimuli_dir : str
        The stimuli folder typed (empty: the default).
    """

    design: str
    listener: str
    clip_mode: str
    label: str | None
    clip_ids: tuple[int, ...] | None
    n_clips: int
    recipes: tuple[str, ...]
    n: int
    source: str
    references: int
    active: bool
    n_metrics: int
    anchors: bool
    stimuli_dir: str


def stimuli_triplets(s: FormState) -> tuple[int, int, int]:
    """Triplets of stimuli: (references, distinct distortions checked, pairs of them)."""
    r = len({recipe_key(t) for t in s.recipes if Recipe.parse(t).kind != "identity"})
    refs = s.n_clips if s.clip_ids else min(s.n_clips, s.references or max(2, math.ceil(s.n / 5)))
    return refs, r, r * (r - 1) // 2


def mushra_conditions(s: FormState) -> tuple[int, set[str]]:
    """A MUSHRA item's conditions besides the hidden reference: (anchors, keys of the test recipes)."""
    anchor_keys = {a.key for a in anchor_recipes()} if s.anchors else set()
    tests = {recipe_key(t) for t in s.recipes if Recipe.parse(t).kind != "identity" and recipe_key(t) not in anchor_keys}
    return (2 if s.anchors else 0), tests


def form_errors(s: FormState) -> list[str]:
    """What stops these choices from becoming a session, each naming the field and why."""
    out = []
    if not s.listener:
        out.append("Listener: enter the listener's name or code (the answers are stored under it)")
    m, n = s.n_clips, s.n
    which = {ALL: f"the library's {m} clips", LABEL: f"the {m} clips labelled {s.label}",
             CHOSEN: f"the chosen {m} clips"}[s.clip_mode]
    if s.clip_mode == CHOSEN and not s.clip_ids:
        out.append("Clips: none checked; check some clips, or use all clips or a label")
    elif m == 0:
        out.append("Clips: the library has no playable clips; import some first")
    if s.design == TRIPLET:
        if s.source == "clips":
            if 0 < m < 3:
                out.append(f"Clips: triplets need at least 3 clips, {which} are too few")
            elif m >= 3:
                possible = m * (m - 1) * (m - 2) // 2
                if n > possible:
                    out.append(f"Trials: {n} asked, but {which} give at most {possible} triplets")
        else:
            refs, r, pairs = stimuli_triplets(s)
            if r < 2:
                out.append(f"Recipes: triplets of stimuli need at least 2 distortions, {r} checked")
            elif m > 0 and n > refs * pairs:
                out.append(f"Trials: {n} asked, but {refs} reference{'s' if refs != 1 else ''} × "
                           f"{pairs} pairs of the {r} recipes give at most {refs * pairs} triplets")
        if s.active and s.n_metrics < 2:
            out.append(f"Metrics: active selection compares at least 2 metrics, {s.n_metrics} checked")
    else:
        n_anchors, tests = mushra_conditions(s)
        conds = 1 + n_anchors + len(tests)
        if conds > MUSHRA_MAX_CONDITIONS:
            out.append(f"Recipes: {conds} conditions per item (hidden reference, {n_anchors} anchors, "
                       f"{len(tests)} test conditions); BS.1534-3 allows at most {MUSHRA_MAX_CONDITIONS}")
        if conds < 2:
            out.append("Recipes: check at least one recipe or the anchors; the hidden reference alone "
                       "is nothing to rate")
        if s.clip_ids is None and m > 0 and n > m:
            out.append(f"Items: {n} asked, but the library has {m} clips to use as references")
    d = s.stimuli_dir
    if d and Path(d).expanduser().exists() and not Path(d).expanduser().is_dir():
        out.append(f"Stimuli folder: {d} is a file, not a folder")
    return out


def capacity_text(s: FormState) -> str:
    """What the choices can give: distinct triplets, or conditions per MUSHRA item."""
    m = s.n_clips
    if s.design == TRIPLET:
        if s.source == "clips":
            return f"{m} clips give at most {m * (m - 1) * (m - 2) // 2 if m >= 3 else 0} distinct triplets"
        refs, r, pairs = stimuli_triplets(s)
        return (f"{refs} reference{'s' if refs != 1 else ''} × {pairs} pairs of the {r} recipes: "
                f"at most {refs * pairs} triplets")
    n_anchors, tests = mushra_conditions(s)
    return (f"{1 + n_anchors + len(tests)} conditions per item: hidden reference, {n_anchors} anchors, "
            f"{len(tests)} recipes")
