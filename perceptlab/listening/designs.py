"""Listening-test designs: what is asked, independent of who answers.

Two designs:

* **Triplet** (2AFC similarity): a reference X and two candidates; "which of
  A and B is closer to X?". Items come from library clips (random triplets,
  seeded), or from generated stimuli (X is the reference rendered as is, the
  candidates two different distortions of it). The ACTIVE mode scores a pool
  of candidate items by how much the metrics disagree on them
  (:func:`select_active`) and keeps the most contested ones.
* **MUSHRA** (ITU-R BS.1534-3): per item the open reference, a hidden
  reference, the 3.5 kHz low anchor, the 7 kHz mid anchor and the test
  conditions, at most 12 conditions in all, each rated 0-100 on the five
  labelled bands of :data:`MUSHRA_BANDS`.

Catch trials screen listeners: a triplet whose candidate is X itself (it must
be chosen), and in MUSHRA the hidden reference (see the post-screening rule
in :mod:`perceptlab.analysis.agreement`).

An item names its sounds as plain JSON dicts ("sound dicts")::

    {"path", "name", "content_hash", "clip_id", "stimulus_id", "condition", "role"}

``condition`` is what the sound is (``"clip"``, a recipe label such as
``"lowpass:cutoff_hz=3500"``, ``"hidden_reference"``); ``role`` is its part
in the trial (``x``, ``candidate``, ``reference``, ``hidden_reference``,
``low_anchor``, ``mid_anchor``, ``condition``). Neither is ever shown to a
listener: :mod:`perceptlab.listening.session` presents neutral labels.
Per-listener randomisation (trial order, A/B sides, MUSHRA condition order)
happens when a session is created, not here.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.audio.distort import Recipe, anchor_recipes
from perceptlab.library.stimuli import Stimulus, render_stimulus
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

TRIPLET = "triplet"
MUSHRA = "mushra"
DESIGNS = (TRIPLET, MUSHRA)

#: ITU-R BS.1534-3 continuous quality scale: (label, low, high), best first.
MUSHRA_BANDS: tuple[tuple[str, int, int], ...] = (
    ("Excellent", 80, 100),
    ("Good", 60, 80),
    ("Fair", 40, 60),
    ("Poor", 20, 40),
    ("Bad", 0, 20),
)
MUSHRA_MIN, MUSHRA_MAX = 0, 100
#: BS.1534-3 allows at most 12 conditions per item (hidden reference and anchors included).
MUSHRA_MAX_CONDITIONS = 12

HIDDEN_REFERENCE = "hidden_reference"

#: Default test conditions of a generated MUSHRA test (besides hidden reference and anchors).
DEFAULT_MUSHRA_RECIPES = (
    "white_noise:snr_db=20",
    "pink_noise:snr_db=10",
    "mp3:bitrate_kbps=32",
    "reverb:rt60_s=1.2,wet=0.5",
    "clip:threshold=0.3",
)
#: Default distortions that generated triplets choose between.
DEFAULT_TRIPLET_RECIPES = (
    "white_noise:snr_db=10",
    "white_noise:snr_db=25",
    "pink_noise:snr_db=10",
    "lowpass:cutoff_hz=3500",
    "lowpass:cutoff_hz=7000",
    "mp3:bitrate_kbps=32",
    "reverb:rt60_s=0.8,wet=0.4",
    "eq_tilt:db_per_octave=3",
    "clip:threshold=0.3",
    "pitch_shift:semitones=1",
)


def band_of(score: float) -> str:
    """The BS.1534-3 band a 0-100 score falls in (a boundary belongs to the upper band)."""
    for name, lo, hi in MUSHRA_BANDS:
        if score >= lo:
            return name
    return MUSHRA_BANDS[-1][0]


# ---------------------------------------------------------------------------
# Sound dicts
# ---------------------------------------------------------------------------


def clip_sound(clip, role: str = "candidate") -> dict:
    """A sound dict for a library clip."""
    return {"path": clip.path, "name": clip.name, "content_hash": clip.content_hash, "clip_id": clip.id,
            "stimulus_id": None, "condition": "clip", "role": role}


def stimulus_sound(stim: Stimulus, role: str = "candidate", condition: str | None = None) -> dict:
    """A sound dict for a rendered stimulus."""
    return {"path": stim.path, "name": stim.name, "content_hash": stim.content_hash, "clip_id": None,
            "stimulus_id": stim.id, "condition": condition or stim.recipe.label, "role": role,
            "recipe": stim.recipe.to_json()}


def sound_id(sound: dict) -> str:
    """What makes two sounds the same audio: the content hash, else the path."""
    return sound.get("content_hash") or str(sound["path"])


# ---------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TripletItem:
    """X and two candidates; which candidate is which side is decided per listener.

    ``catch`` items have ``a`` identical to ``x``: the listener must pick it.
    ``score`` is the metric-disagreement score of an actively chosen item.
    """

    x: dict
    a: dict
    b: dict
    catch: bool = False
    source: str = "clips"
    score: float | None = None
    detail: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of the question, independent of the A/B sides."""
        c = sorted([sound_id(self.a), sound_id(self.b)])
        return hashlib.sha256("\t".join([sound_id(self.x), *c]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MushraItem:
    """One MUSHRA screen: an open reference and up to 12 conditions."""

    name: str
    reference: dict
    conditions: tuple[dict, ...]

    def __post_init__(self):
        n = len(self.conditions)
        if not 1 <= n <= MUSHRA_MAX_CONDITIONS:
            raise ValueError(
                f"MUSHRA item {self.name}: {n} conditions; BS.1534-3 allows 1 to {MUSHRA_MAX_CONDITIONS} "
                "(hidden reference and anchors included)"
            )
        names = [c["condition"] for c in self.conditions]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"MUSHRA item {self.name}: duplicate conditions {sorted(dup)}")

    @property
    def key(self) -> str:
        return sound_id(self.reference)


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------


def _good_clips(library, clips) -> list:
    clips = list(library.clips() if clips is None else clips)
    return [c for c in clips if c.ok]


def triplets_from_clips(library, n: int, seed: int = 0, clips: Sequence | None = None) -> list[TripletItem]:
    """``n`` distinct random triplets (X, A, B all different clips), seeded.

    Raises
    ------
    ValueError
        Fewer than 3 usable clips, or fewer distinct triplets than asked for.
    """
    pool = _good_clips(library, clips)
    if n < 1:
        raise ValueError(f"need at least 1 trial, got {n}")
    if len(pool) < 3:
        raise ValueError(f"{library.path}: triplets need at least 3 clips, found {len(pool)}")
    m = len(pool)
    possible = m * (m - 1) * (m - 2) // 2
    if n > possible:
        raise ValueError(f"asked for {n} triplets but {m} clips give only {possible} distinct ones")
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        i, j, k = rng.choice(m, 3, replace=False)
        item = TripletItem(clip_sound(pool[i], "x"), clip_sound(pool[j]), clip_sound(pool[k]), source="clips")
        if item.key not in seen:
            seen.add(item.key)
            out.append(item)
    return out


def render_sets(library, references: Sequence, recipes: Sequence[Recipe | str], out_dir,
                *, progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> list[dict]:
    """Render the identity and every recipe for each reference (reusing earlier renders).

    Returns
    -------
    list of dict
        One per reference: ``{"reference": Stimulus (identity), "stimuli": [Stimulus per recipe]}``.
    """
    recipes = [Recipe.parse(r) if isinstance(r, str) else r for r in recipes]
    total = len(references) * (1 + len(recipes))
    done = 0
    report(progress, 0, total)
    out = []
    for ref in references:
        check_cancel(cancel)
        ident = render_stimulus(library, ref, Recipe("identity"), out_dir)
        done += 1
        report(progress, done, total)
        stims = []
        for r in recipes:
            check_cancel(cancel)
            stims.append(render_stimulus(library, ref, r, out_dir))
            done += 1
            report(progress, done, total)
        out.append({"reference": ident, "stimuli": stims})
    return out


def triplets_from_stimuli(sets: Sequence[dict], n: int | None = None, seed: int = 0) -> list[TripletItem]:
    """Triplets X = reference, A/B = two different distortions of it.

    ``sets`` is :func:`render_sets`' output. All (reference, pair) combinations
    are candidates; ``n`` of them are drawn at random (seeded), or all when
    ``n`` is None.
    """
    pool = []
    for s in sets:
        ref = stimulus_sound(s["reference"], "x", condition="reference")
        uniq = {st.content_hash: st for st in s["stimuli"] if st.content_hash != s["reference"].content_hash}
        for p, q in itertools.combinations(sorted(uniq.values(), key=lambda st: st.id), 2):
            pool.append(TripletItem(ref, stimulus_sound(p), stimulus_sound(q), source="stimuli"))
    if not pool:
        raise ValueError("generated triplets need at least one reference and two different distortions")
    if n is None:
        return pool
    if n < 1:
        raise ValueError(f"need at least 1 trial, got {n}")
    if n > len(pool):
        raise ValueError(f"asked for {n} triplets but the stimuli give only {len(pool)} distinct ones")
    idx = np.random.default_rng(seed).choice(len(pool), n, replace=False)
    return [pool[i] for i in sorted(idx)]


def catch_triplets(items: Sequence[TripletItem], n: int, seed: int = 0) -> list[TripletItem]:
    """``n`` catch items built from the sounds of ``items``: X, A = X, B another sound.

    The listener must choose the candidate identical to X.
    """
    if n <= 0:
        return []
    rng = np.random.default_rng([seed, 0xC47C4])
    out = []
    for t in range(n):
        base = items[int(rng.integers(len(items)))]
        x = dict(base.x)
        other = base.a if rng.integers(2) else base.b
        if sound_id(other) == sound_id(x):
            other = base.b if other is base.a else base.a
        same = dict(x, role="candidate")
        out.append(TripletItem(dict(x, role="x"), same, dict(other, role="candidate"), catch=True,
                               source=base.source))
    return out


def mushra_items(sets: Sequence[dict], *, anchors: bool = True) -> list[MushraItem]:
    """MUSHRA items from rendered sets (see :func:`render_sets`).

    Each item: the identity render as the open reference, the same file as the
    hidden reference, the 3.5 kHz and 7 kHz anchors (rendered into ``sets``
    by :func:`mushra_sets`; ``anchors=False`` leaves them out) and the test
    conditions.
    """
    low, mid = anchor_recipes()
    out = []
    for s in sets:
        ref = s["reference"]
        conds = [stimulus_sound(ref, HIDDEN_REFERENCE, HIDDEN_REFERENCE)]
        for st in s["stimuli"]:
            if st.recipe.key == low.key:
                if anchors:
                    conds.append(stimulus_sound(st, "low_anchor"))
            elif st.recipe.key == mid.key:
                if anchors:
                    conds.append(stimulus_sound(st, "mid_anchor"))
            else:
                conds.append(stimulus_sound(st, "condition"))
        name = s["reference"].info.get("reference", {}).get("name") or Path(ref.path).name
        out.append(MushraItem(name, stimulus_sound(ref, "reference", "reference"), tuple(conds)))
    return out


def mushra_sets(library, references: Sequence, recipes: Sequence[Recipe | str], out_dir, *,
                anchors: bool = True, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> list[dict]:
    """Render what :func:`mushra_items` needs: identity, anchors and the test recipes.

    Raises
    ------
    ValueError
        More than 12 conditions per item, or a reference whose sample rate is
        too low for the 7 kHz anchor (its Nyquist frequency must exceed 7 kHz).
    """
    recipes = [Recipe.parse(r) if isinstance(r, str) else r for r in recipes]
    anchor = list(anchor_recipes()) if anchors else []
    keys = {a.key for a in anchor}
    recipes = [r for r in recipes if r.key not in keys and r.kind != "identity"]
    n = 1 + len(anchor) + len(recipes)
    if n > MUSHRA_MAX_CONDITIONS:
        raise ValueError(
            f"{n} conditions per item (hidden reference, {len(anchor)} anchors, {len(recipes)} test conditions); "
            f"BS.1534-3 allows at most {MUSHRA_MAX_CONDITIONS}"
        )
    return render_sets(library, references, anchor + recipes, out_dir, progress=progress, cancel=cancel)


# ---------------------------------------------------------------------------
# Active selection
# ---------------------------------------------------------------------------


def disagreement(d_xa: np.ndarray, d_xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score how much metrics disagree on triplets.

    Parameters
    ----------
    d_xa, d_xb : numpy.ndarray
        (M, N): each of M metrics' distance from X to A and to B, N items.

    Returns
    -------
    split : numpy.ndarray
        (N,) fraction of metrics in the minority vote (0: all agree; 0.5: an
        even split). A tie (equal distances) votes for neither side.
    spread : numpy.ndarray
        (N,) half the range of the normalised margins
        ``(d_xa - d_xb) / (d_xa + d_xb)`` across metrics (scale-free, in [0, 1]).
    score : numpy.ndarray
        (N,) ``split + spread / 2``: ranks split votes first, then the
        strength of the disagreement.
    """
    d_xa = np.asarray(d_xa, dtype=np.float64)
    d_xb = np.asarray(d_xb, dtype=np.float64)
    total = d_xa + d_xb
    margin = np.divide(d_xa - d_xb, total, out=np.zeros_like(total), where=total > 0)  # (M, N)
    votes_a = (margin < 0).sum(0)
    votes_b = (margin > 0).sum(0)
    m = d_xa.shape[0]
    split = np.minimum(votes_a, votes_b) / m
    spread = (margin.max(0) - margin.min(0)) / 2.0
    return split, spread, split + spread / 2.0


def select_active(items: Sequence[TripletItem], distances: dict[str, np.ndarray], n: int) -> list[TripletItem]:
    """The ``n`` items on which the metrics disagree most.

    Parameters
    ----------
    items : sequence of TripletItem
        The candidate pool.
    distances : dict
        {metric: (N, 2) array of (d(X, A), d(X, B))} for the pool, e.g. from
        :func:`perceptlab.analysis.agreement.triplet_distances`.
    n : int
        How many to keep. Ties in the score keep pool order.

    Returns
    -------
    list of TripletItem
        Highest score first, each with ``score`` and ``detail`` ({"split",
        "spread", "votes": {metric: "a" | "b" | "tie"}}) filled in.
    """
    if len(distances) < 2:
        raise ValueError("active selection needs at least two metrics to compare")
    names = list(distances)
    d = np.stack([np.asarray(distances[k], dtype=np.float64) for k in names])  # (M, N, 2)
    if d.shape[1] != len(items):
        raise ValueError(f"distances cover {d.shape[1]} items, the pool has {len(items)}")
    split, spread, score = disagreement(d[..., 0], d[..., 1])
    order = np.argsort(-score, kind="stable")[: max(0, n)]
    out = []
    for i in order:
        votes = {k: ("a" if d[m, i, 0] < d[m, i, 1] else "b" if d[m, i, 0] > d[m, i, 1] else "tie")
                 for m, k in enumerate(names)}
        it = items[i]
        out.append(TripletItem(it.x, it.a, it.b, it.catch, it.source, float(score[i]),
                               {"split": float(split[i]), "spread": float(spread[i]), "votes": votes}))
    return out


def references_from_library(library, n: int | None = None, seed: int = 0, clip_ids: Sequence[int] | None = None):
    """Reference clips for generated stimuli: the given ids, or ``n`` random good clips (seeded)."""
    if clip_ids:
        clips = []
        for i in clip_ids:
            c = library.clip(int(i))
            if not c.ok:
                raise ValueError(f"{c.path}: was not imported: {c.error}")
            clips.append(c)
        return clips
    pool = _good_clips(library, None)
    if not pool:
        raise ValueError(f"{library.path}: no clips to use as references")
    if n is None or n >= len(pool):
        return pool
    idx = np.random.default_rng([seed, 0x5EF]).choice(len(pool), n, replace=False)
    return [pool[i] for i in sorted(idx)]


def default_stimuli_dir(library) -> Path:
    """Where generated stimuli go by default: ``stimuli/`` beside the library file."""
    return Path(library.path).parent / "stimuli"


__all__ = [
    "DEFAULT_MUSHRA_RECIPES", "DEFAULT_TRIPLET_RECIPES", "DESIGNS", "HIDDEN_REFERENCE", "MUSHRA",
    "MUSHRA_BANDS", "MUSHRA_MAX", "MUSHRA_MAX_CONDITIONS", "MUSHRA_MIN", "MushraItem", "TRIPLET",
    "TripletItem", "band_of", "catch_triplets", "clip_sound", "default_stimuli_dir", "disagreement",
    "mushra_items", "mushra_sets", "references_from_library", "render_sets", "select_active",
    "sound_id", "stimulus_sound", "triplets_from_clips", "triplets_from_stimuli",
]
