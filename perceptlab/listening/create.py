"""Build a whole session in one call: the CLI's ``listen create`` and the GUI's "New test".

:class:`TripletPlan` and :class:`MushraPlan` are the settings (dataclasses,
JSON-serialisable via :func:`dataclasses.asdict`). The same plan with the
same seed gives the same items for every listener -- which is what
inter-listener agreement needs -- while the presentation order is
randomised per listener by :meth:`perceptlab.listening.session.Session.create`.

Rendering stimuli and (in active mode) computing metric distances can take a
while: both functions take ``progress`` and ``cancel`` (see
:mod:`perceptlab.tasks`); rendered stimuli are kept and reused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from perceptlab import metric_names
from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig
from perceptlab.listening.designs import (
    DEFAULT_MUSHRA_RECIPES,
    DEFAULT_TRIPLET_RECIPES,
    MUSHRA,
    TRIPLET,
    MushraItem,
    TripletItem,
    catch_triplets,
    default_stimuli_dir,
    mushra_items,
    mushra_sets,
    references_from_library,
    render_sets,
    select_active,
    triplets_from_clips,
    triplets_from_stimuli,
)
from perceptlab.listening.session import Session
from perceptlab.tasks import CancelFn, ProgressFn

SOURCES = ("clips", "stimuli")


@dataclass(frozen=True)
class TripletPlan:
    """How to build a triplet session.

    Attributes
    ----------
    n_trials : int
        Scored trials (catch trials come on top).
    source : {"clips", "stimuli"}
        Random triplets of library clips, or X = a reference clip and A/B two
        distortions of it (``recipes``).
    active : bool
        Pick the ``n_trials`` items on which ``metrics`` disagree most out of
        a pool of ``pool_factor * n_trials`` candidates (clips), or out of
        every (reference, pair of distortions) (stimuli).
    metrics : tuple of str
        Metrics compared by the active mode (at least two); by default the
        built-in image metrics (``registry.image_metric_names``).
    n_catch : int or None
        Catch trials (X vs a copy of X vs another sound). None: 10 % of
        ``n_trials``, at least 1.
    recipes : tuple of str
        Distortions for ``source="stimuli"`` (``kind:param=value,...``).
    clip_ids : tuple of int or None
        Clips to draw from (clips) or references (stimuli); None: the library.
    n_references : int or None
        Stimuli: how many random references when ``clip_ids`` is None
        (None: ``max(2, ceil(n_trials / 5))``).
    stimuli_dir : str or None
        Where stimuli are rendered (default ``stimuli/`` beside the library).
    seed : int
        Item selection seed (the same for every listener of a test).
    must_play : bool
        Require playing A and B before answering.
    shuffle : bool
        Randomise trial order and sides per listener.
    """

    n_trials: int = 20
    source: str = "clips"
    active: bool = False
    pool_factor: int = 5
    metrics: tuple[str, ...] = field(default_factory=metric_names.IMAGE_METRICS.names)
    n_catch: int | None = None
    recipes: tuple[str, ...] = DEFAULT_TRIPLET_RECIPES
    clip_ids: tuple[int, ...] | None = None
    n_references: int | None = None
    stimuli_dir: str | None = None
    seed: int = 0
    must_play: bool = False
    shuffle: bool = True

    def catch_count(self) -> int:
        return max(1, round(self.n_trials / 10)) if self.n_catch is None else int(self.n_catch)


@dataclass(frozen=True)
class MushraPlan:
    """How to build a MUSHRA session.

    Attributes
    ----------
    n_items : int
        Items (references) drawn at random (seeded) when ``clip_ids`` is None.
    clip_ids : tuple of int or None
        Reference clips.
    recipes : tuple of str
        Test conditions besides the hidden reference and the two anchors
        (12 conditions at most in all).
    anchors : bool
        Include the 3.5 kHz and 7 kHz low-pass anchors.
    must_play : bool
        Require playing every condition before rating (BS.1534 practice).
    """

    n_items: int = 4
    clip_ids: tuple[int, ...] | None = None
    recipes: tuple[str, ...] = DEFAULT_MUSHRA_RECIPES
    anchors: bool = True
    must_play: bool = True
    stimuli_dir: str | None = None
    seed: int = 0
    shuffle: bool = True


def _plan_json(plan) -> dict:
    d = asdict(plan)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _stimuli_dir(library, plan) -> Path:
    return Path(plan.stimuli_dir).expanduser() if plan.stimuli_dir else default_stimuli_dir(library)


def triplet_items(library, plan: TripletPlan | None = None, *, config: FeatureConfig = FeatureConfig(),
                  n_frames: int = DEFAULT_EXCERPT_FRAMES, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None) -> list[TripletItem]:
    """The items of a triplet test (scored items, then catch items); ``plan`` None: the default plan."""
    plan = TripletPlan() if plan is None else plan
    if plan.source not in SOURCES:
        raise ValueError(f"unknown triplet source {plan.source!r}; use one of {', '.join(SOURCES)}")
    if plan.n_trials < 1:
        raise ValueError(f"need at least 1 trial, got {plan.n_trials}")
    clips = None
    if plan.clip_ids:
        clips = references_from_library(library, clip_ids=plan.clip_ids)
    if plan.source == "clips":
        if plan.active:
            m = len([c for c in (clips or library.clips()) if c.ok])
            possible = m * (m - 1) * (m - 2) // 2 if m >= 3 else 0
            n_pool = max(plan.n_trials, min(possible, plan.pool_factor * plan.n_trials))
            pool = triplets_from_clips(library, n_pool, plan.seed, clips)
        else:
            pool = triplets_from_clips(library, plan.n_trials, plan.seed, clips)
    else:
        # Default: enough references for the trials (each gives C(len(recipes), 2) pairs) without
        # rendering the whole library.
        n_refs = plan.n_references or max(2, -(-plan.n_trials // 5))
        refs = clips or references_from_library(library, n_refs, plan.seed)
        sets = render_sets(library, refs, plan.recipes, _stimuli_dir(library, plan), progress=progress, cancel=cancel)
        pool = triplets_from_stimuli(sets, None if plan.active else plan.n_trials, plan.seed)
        if len(pool) < plan.n_trials:
            raise ValueError(f"asked for {plan.n_trials} triplets but the stimuli give only {len(pool)} distinct ones")
    if plan.active:
        from perceptlab.analysis.agreement import triplet_distances
        from perceptlab.analysis.similarity import metric_names

        metrics = metric_names(list(plan.metrics))
        d = triplet_distances(library, pool, metrics, config, n_frames, progress=progress, cancel=cancel)
        items = select_active(pool, d, plan.n_trials)
    else:
        items = list(pool)
    return items + catch_triplets(items, plan.catch_count(), plan.seed)


def create_triplet_session(library, listener: str, plan: TripletPlan | None = None, *,
                           progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> Session:
    """Build the items of ``plan`` (None: the default plan) and create a session for ``listener``."""
    plan = TripletPlan() if plan is None else plan
    cfg = FeatureConfig()
    items = triplet_items(library, plan, config=cfg, progress=progress, cancel=cancel)
    return Session.create(
        library, TRIPLET, listener, items, seed=plan.seed, must_play=plan.must_play, shuffle=plan.shuffle,
        config={"plan": _plan_json(plan), "feature_config": cfg.to_dict(), "feature_config_hash": cfg.hash,
                "excerpt_frames": DEFAULT_EXCERPT_FRAMES,
                "metrics": list(plan.metrics) if plan.active else []},
    )


def mushra_items_for(library, plan: MushraPlan = MushraPlan(), *, progress: ProgressFn | None = None,
                     cancel: CancelFn | None = None) -> list[MushraItem]:
    """Render (or reuse) the stimuli of ``plan`` and return its MUSHRA items."""
    if plan.n_items < 1 and not plan.clip_ids:
        raise ValueError(f"need at least 1 item, got {plan.n_items}")
    refs = references_from_library(library, plan.n_items, plan.seed, plan.clip_ids)
    sets = mushra_sets(library, refs, list(plan.recipes), _stimuli_dir(library, plan), anchors=plan.anchors,
                       progress=progress, cancel=cancel)
    return mushra_items(sets, anchors=plan.anchors)


def create_mushra_session(library, listener: str, plan: MushraPlan = MushraPlan(), *,
                          progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> Session:
    """Build the items of ``plan`` and create a session for ``listener``."""
    cfg = FeatureConfig()
    items = mushra_items_for(library, plan, progress=progress, cancel=cancel)
    return Session.create(
        library, MUSHRA, listener, items, seed=plan.seed, must_play=plan.must_play, shuffle=plan.shuffle,
        config={"plan": _plan_json(plan), "feature_config": cfg.to_dict(), "feature_config_hash": cfg.hash,
                "excerpt_frames": DEFAULT_EXCERPT_FRAMES, "metrics": []},
    )


def preview_item(library, design: str, plan=None, *, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> TripletItem | MushraItem:
    """One item as ``plan`` builds them, rendered, for hearing before a session is created.

    MUSHRA and stimulus triplets: the first reference the plan itself would
    draw (the same seed), with the plan's recipes; clip triplets: the plan's
    first triplet. A triplet preview skips active selection (which would
    score a whole pool) and catch trials. The stimuli rendered here are the
    ones the session reuses.
    """
    if design == TRIPLET:
        plan = plan or TripletPlan()
        first = plan.clip_ids[:1] if plan.clip_ids else None
        if plan.source == "stimuli" and not first:
            n_refs = plan.n_references or max(2, -(-plan.n_trials // 5))
            first = (references_from_library(library, n_refs, plan.seed)[0].id,)
        one = replace(plan, n_trials=1, n_catch=0, active=False, n_references=1,
                      clip_ids=first if plan.source == "stimuli" else plan.clip_ids)
        return triplet_items(library, one, progress=progress, cancel=cancel)[0]
    if design == MUSHRA:
        plan = plan or MushraPlan()
        first = plan.clip_ids[:1] if plan.clip_ids else (
            references_from_library(library, plan.n_items, plan.seed)[0].id,)
        one = replace(plan, n_items=1, clip_ids=first)
        return mushra_items_for(library, one, progress=progress, cancel=cancel)[0]
    raise ValueError(f"unknown design {design!r}; use triplet or mushra")


def create_session(library, design: str, listener: str, plan=None, **kwargs) -> Session:
    """Dispatch on ``design`` ("triplet" or "mushra"); ``plan`` defaults to the design's defaults."""
    if design == TRIPLET:
        return create_triplet_session(library, listener, plan or TripletPlan(), **kwargs)
    if design == MUSHRA:
        return create_mushra_session(library, listener, plan or MushraPlan(), **kwargs)
    raise ValueError(f"unknown design {design!r}; use triplet or mushra")


__all__: Sequence[str] = [
    "MushraPlan", "TripletPlan", "create_mushra_session", "create_session", "create_triplet_session",
    "mushra_items_for", "preview_item", "triplet_items",
]
