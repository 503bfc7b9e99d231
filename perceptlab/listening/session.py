"""Listening sessions: one listener working through the trials of one design.

Everything lives in the library (tables ``listening_sessions``,
``listening_trials``, ``listening_answers``):

* :meth:`Session.create` writes the session row and ALL its trials, already
  randomised for this listener, in one transaction.
* :meth:`Session.answer` commits each answer at once, in its own transaction
  with ``PRAGMA synchronous=FULL`` (the WAL is fsynced at commit), so a crash
  or a killed process loses nothing that was answered; reopening the session
  (:meth:`Session.open`) and asking :meth:`Session.next_position` resumes at
  the first unanswered trial.

What a GUI needs for one screen is :meth:`Session.trial`, a plain
:class:`Trial`: the sounds behind neutral labels (triplet: ``"X"``, ``"A"``,
``"B"``; MUSHRA: ``"reference"`` and ``"1"`` .. ``"N"``), the allowed
choices or the rating scale, and whether every sound must be played before
answering. Roles (which sound is the hidden reference, an anchor, the catch
candidate) stay in the stored spec and never reach a :class:`Trial`. Show
the labels, never the paths: file names of generated stimuli name their
distortion.

Answers
-------
triplet
    ``{"choice": "A" | "B"}`` (or just ``"A"``).
MUSHRA
    ``{"scores": {"1": 0..100, ..., "N": 0..100}}``, every condition rated.

Both may carry ``"played": [labels]`` (required, and must cover every
candidate, when the trial has ``must_play``), ``"rt_ms"`` (response time)
and ``"comment"``.

Per-listener randomisation is seeded by (listener, session id, seed), so a
session can be rebuilt exactly, and two listeners see different orders.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from perceptlab.listening.designs import (
    DESIGNS,
    MUSHRA,
    MUSHRA_BANDS,
    MUSHRA_MAX,
    MUSHRA_MIN,
    TRIPLET,
    MushraItem,
    TripletItem,
)

OPEN = "open"
COMPLETED = "completed"

TRIPLET_PROMPT = "Which is closer to X: A or B?"
MUSHRA_PROMPT = "Rate each condition against the reference (0-100)."


class SessionError(ValueError):
    """A listening-session request that cannot be honoured (bad answer, unknown id ...)."""


# ---------------------------------------------------------------------------
# What the GUI sees
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sound:
    """One playable sound of a trial, behind a neutral label."""

    label: str
    path: str


@dataclass(frozen=True)
class Scale:
    """A rating scale: range and labelled bands ((label, low, high), best first)."""

    minimum: int = MUSHRA_MIN
    maximum: int = MUSHRA_MAX
    bands: tuple[tuple[str, int, int], ...] = MUSHRA_BANDS


@dataclass(frozen=True)
class Trial:
    """One screen of a listening test, ready to present.

    Attributes
    ----------
    session_id, position, n_trials : int
        Which trial (0-based position) of how many.
    design : str
        ``"triplet"`` or ``"mushra"``.
    prompt : str
        The question to show.
    reference : Sound
        ``X`` (triplet) or ``reference`` (MUSHRA); key 0 / r.
    candidates : tuple of Sound
        ``A``, ``B`` or ``1`` .. ``N``; keys 1-9.
    choices : tuple of str
        The labels a triplet answer chooses from; empty for MUSHRA.
    scale : Scale or None
        The rating scale for MUSHRA; None for triplets.
    must_play : bool
        Every candidate must be played before answering.
    answer : dict or None
        The stored answer, if this trial was answered (resume, going back).
    """

    session_id: int
    position: int
    n_trials: int
    design: str
    prompt: str
    reference: Sound
    candidates: tuple[Sound, ...]
    choices: tuple[str, ...]
    scale: Scale | None
    must_play: bool
    answer: dict | None

    @property
    def sounds(self) -> tuple[Sound, ...]:
        """Reference first, then the candidates (the order of keys 0, 1, 2, ...)."""
        return (self.reference, *self.candidates)

    def sound(self, label: str) -> Sound:
        for s in self.sounds:
            if s.label == label:
                return s
        raise KeyError(f"trial {self.position} has no sound labelled {label!r}")

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels of the candidates (what must be played / rated)."""
        return tuple(s.label for s in self.candidates)


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int
    next_position: int | None

    @property
    def fraction(self) -> float:
        return self.answered / self.total if self.total else 1.0

    @property
    def done(self) -> bool:
        return self.answered >= self.total

    def to_json(self) -> dict:
        return {"answered": self.answered, "total": self.total, "next_position": self.next_position}


@dataclass(frozen=True)
class SessionInfo:
    """A row of :func:`list_sessions`."""

    id: int
    design: str
    listener: str
    status: str
    created_at: float
    ended_at: float | None
    n_trials: int
    n_answered: int
    config: dict

    def to_json(self) -> dict:
        return {"id": self.id, "design": self.design, "listener": self.listener, "status": self.status,
                "created_at": self.created_at, "ended_at": self.ended_at, "n_trials": self.n_trials,
                "n_answered": self.n_answered}


@dataclass(frozen=True)
class AnsweredTrial:
    """A trial's stored spec with its answer (for analysis and export)."""

    session_id: int
    listener: str
    design: str
    position: int
    spec: dict
    answer: dict | None
    answered_at: float | None


# ---------------------------------------------------------------------------
# Randomisation
# ---------------------------------------------------------------------------


def listener_seed(listener: str, session_id: int, seed: int = 0) -> int:
    """The per-listener randomisation seed (stable across machines and versions)."""
    h = hashlib.sha256(f"{listener}\x00{session_id}\x00{seed}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def _triplet_spec(item: TripletItem, swap: bool) -> dict:
    a, b = (item.b, item.a) if swap else (item.a, item.b)
    expected = None
    if item.catch:
        expected = "B" if swap else "A"
    return {"design": TRIPLET, "key": item.key, "x": item.x, "a": a, "b": b, "catch": item.catch,
            "expected": expected, "source": item.source, "active_score": item.score,
            "active_detail": item.detail or None}


def _mushra_spec(item: MushraItem, order: Sequence[int], must_play: bool) -> dict:
    conds = []
    for label, i in enumerate(order, start=1):
        conds.append(dict(item.conditions[i], label=str(label)))
    return {"design": MUSHRA, "key": item.key, "name": item.name, "reference": item.reference,
            "conditions": conds, "must_play": must_play}


# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------


class Session:
    """A listening session stored in a library.

    Use :meth:`create` or :meth:`open`; the object is a thin view over the
    library rows, so two objects for the same id (or two processes) see each
    other's answers.
    """

    def __init__(self, library, row):
        self.library = library
        (self.id, self.design, self.listener, self.config, self.status, self.created_at, self.ended_at) = row
        self.n_trials: int = library.count_listening_trials(self.id)
        self._specs: dict[int, dict] = {}

    # -- creating and opening -------------------------------------------------
    @classmethod
    def create(cls, library, design: str, listener: str, items: Sequence[TripletItem | MushraItem], *,
               seed: int = 0, must_play: bool | None = None, shuffle: bool = True,
               config: dict | None = None) -> "Session":
        """Create a session and all its trials, randomised for ``listener``, in one transaction.

        Parameters
        ----------
        library : Library
        design : {"triplet", "mushra"}
        listener : str
            Non-empty name or code of the listener.
        items : sequence of TripletItem or MushraItem
            From :mod:`perceptlab.listening.designs` (catch items included).
        seed : int
            Mixed with the listener and session id into the randomisation seed.
        must_play : bool, optional
            Require every candidate to be played before answering (default:
            True for MUSHRA, False for triplets).
        shuffle : bool
            Randomise trial order (and A/B sides, MUSHRA condition order).
            False keeps the items' order (and sides) -- for tests and pilots.
        config : dict, optional
            More JSON-serialisable settings and provenance to store.
        """
        if design not in DESIGNS:
            raise SessionError(f"unknown design {design!r}; use one of {', '.join(DESIGNS)}")
        listener = (listener or "").strip()
        if not listener:
            raise SessionError("a session needs a listener name")
        items = list(items)
        if not items:
            raise SessionError("a session needs at least one trial")
        want = TripletItem if design == TRIPLET else MushraItem
        bad = [type(i).__name__ for i in items if not isinstance(i, want)]
        if bad:
            raise SessionError(f"a {design} session takes {want.__name__} items, got {bad[0]}")
        if must_play is None:
            must_play = design == MUSHRA
        from perceptlab import __version__

        cfg = dict(config or {})
        cfg.update({"design": design, "seed": int(seed), "must_play": bool(must_play), "shuffle": bool(shuffle),
                    "n_trials": len(items), "n_catch": sum(bool(getattr(i, "catch", False)) for i in items),
                    "perceptlab_version": __version__})
        now = time.time()
        # One transaction: the session row, all its trials and its config.
        with library.transaction():
            sid = library.add_listening_session(design, listener, {}, OPEN, now)
            lseed = listener_seed(listener, sid, seed)
            cfg["listener_seed"] = lseed
            rng = np.random.default_rng(lseed)
            order = rng.permutation(len(items)) if shuffle else np.arange(len(items))
            specs = []
            for pos, i in enumerate(order):
                item = items[int(i)]
                if design == TRIPLET:
                    spec = _triplet_spec(item, bool(rng.integers(2)) if shuffle else False)
                else:
                    n = len(item.conditions)
                    cond_order = rng.permutation(n) if shuffle else np.arange(n)
                    spec = _mushra_spec(item, [int(c) for c in cond_order], bool(must_play))
                specs.append((pos, spec))
            library.add_listening_trials(sid, specs)
            library.set_listening_config(sid, cfg)
        return cls.open(library, sid)

    @classmethod
    def open(cls, library, session_id: int) -> "Session":
        """Open a stored session (SessionError if there is none with this id)."""
        row = library.listening_session(int(session_id))
        if row is None:
            raise SessionError(f"no listening session with id {session_id} in {library.path}")
        return cls(library, row)

    def _refresh(self) -> None:
        self.status, self.ended_at = self.library.listening_status(self.id)

    # -- trials ---------------------------------------------------------------
    @property
    def must_play(self) -> bool:
        return bool(self.config.get("must_play", False))

    def spec(self, position: int) -> dict:
        """The stored spec of a trial (roles included: for analysis, not for display)."""
        self._check_position(position)
        if position not in self._specs:
            self._specs[position] = self.library.listening_spec(self.id, position)
        return self._specs[position]

    def _check_position(self, position) -> None:
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
            raise SessionError(f"trial position must be an integer, got {position!r}")
        if not 0 <= position < self.n_trials:
            raise SessionError(f"session {self.id} has trials 0..{self.n_trials - 1}, not {position}")

    def stored_answer(self, position: int) -> dict | None:
        return self.library.listening_answer(self.id, position)

    def trial(self, position: int) -> Trial:
        """The trial at ``position``, as the GUI presents it."""
        spec = self.spec(position)
        answer = self.stored_answer(position)
        if spec["design"] == TRIPLET:
            return Trial(self.id, position, self.n_trials, TRIPLET, TRIPLET_PROMPT,
                         Sound("X", spec["x"]["path"]),
                         (Sound("A", spec["a"]["path"]), Sound("B", spec["b"]["path"])),
                         ("A", "B"), None, self.must_play, answer)
        return Trial(self.id, position, self.n_trials, MUSHRA, MUSHRA_PROMPT,
                     Sound("reference", spec["reference"]["path"]),
                     tuple(Sound(c["label"], c["path"]) for c in spec["conditions"]),
                     (), Scale(), bool(spec.get("must_play", self.must_play)), answer)

    def next_position(self) -> int | None:
        """The first unanswered position (where to resume), or None when all are answered."""
        return self.library.first_unanswered(self.id)

    def progress(self) -> Progress:
        n = self.library.count_listening_answers(self.id)
        return Progress(n, self.n_trials, self.next_position())

    # -- answering ------------------------------------------------------------
    def validate_answer(self, position: int, answer: Any) -> dict:
        """Check an answer against its trial; return the normalised dict to store."""
        trial = self.trial(position)
        if isinstance(answer, str) and trial.design == TRIPLET:
            answer = {"choice": answer}
        if not isinstance(answer, dict):
            raise SessionError(f"trial {position}: an answer is a dict, got {type(answer).__name__}")
        out: dict[str, Any] = {}
        labels = trial.labels
        allowed_extra = {"played", "rt_ms", "comment"}
        if trial.design == TRIPLET:
            unknown = set(answer) - {"choice"} - allowed_extra
            if unknown:
                raise SessionError(f"trial {position}: unknown answer keys {sorted(unknown)}")
            choice = answer.get("choice")
            if choice not in trial.choices:
                raise SessionError(f"trial {position}: choice must be one of {', '.join(trial.choices)}, got {choice!r}")
            out["choice"] = choice
        else:
            unknown = set(answer) - {"scores"} - allowed_extra
            if unknown:
                raise SessionError(f"trial {position}: unknown answer keys {sorted(unknown)}")
            scores = answer.get("scores")
            if not isinstance(scores, dict):
                raise SessionError(f"trial {position}: a MUSHRA answer is {{'scores': {{label: 0-100}}}}")
            scores = {str(k): v for k, v in scores.items()}
            missing = [lab for lab in labels if lab not in scores]
            extra = [k for k in scores if k not in labels]
            if missing:
                raise SessionError(f"trial {position}: rate every condition; missing {', '.join(missing)}")
            if extra:
                raise SessionError(f"trial {position}: no conditions labelled {', '.join(extra)}")
            clean = {}
            for lab in labels:
                v = scores[lab]
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                        or not math.isfinite(float(v)) or not MUSHRA_MIN <= float(v) <= MUSHRA_MAX:
                    raise SessionError(
                        f"trial {position}: score of {lab} must be a number in {MUSHRA_MIN}..{MUSHRA_MAX}, got {v!r}")
                clean[lab] = float(v)
            out["scores"] = clean
        played = answer.get("played")
        if played is not None:
            if not isinstance(played, (list, tuple)) or not all(isinstance(p, str) for p in played):
                raise SessionError(f"trial {position}: 'played' is a list of labels")
            known = {s.label for s in trial.sounds}
            bad = [p for p in played if p not in known]
            if bad:
                raise SessionError(f"trial {position}: 'played' names unknown labels {bad}")
            out["played"] = sorted(set(played), key=lambda p: [s.label for s in trial.sounds].index(p))
        if trial.must_play:
            unplayed = [lab for lab in labels if lab not in (played or ())]
            if unplayed:
                raise SessionError(
                    f"trial {position}: play every condition before rating; not played: {', '.join(unplayed)}")
        if "rt_ms" in answer:
            rt = answer["rt_ms"]
            if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not math.isfinite(rt) or rt < 0:
                raise SessionError(f"trial {position}: rt_ms must be a non-negative number, got {rt!r}")
            out["rt_ms"] = float(rt)
        if "comment" in answer:
            out["comment"] = str(answer["comment"])
        return out

    def answer(self, position: int, answer: Any) -> dict:
        """Validate and store an answer, committed and synced before returning.

        Answering a trial again replaces its answer (a GUI "back" button).

        Returns
        -------
        dict
            The stored (normalised) answer.

        Raises
        ------
        SessionError
            The session is completed, the position is out of range, or the
            answer does not fit the trial.
        """
        self._refresh()
        if self.status == COMPLETED:
            raise SessionError(f"session {self.id} is completed; it takes no more answers")
        clean = self.validate_answer(position, answer)
        # Synced at commit (synchronous=FULL), so even a power cut keeps the answer.
        self.library.put_listening_answer(self.id, int(position), clean, time.time())
        return clean

    def complete(self, *, force: bool = False) -> None:
        """Mark the session completed (no more answers).

        Raises SessionError if trials are unanswered, unless ``force``.
        """
        p = self.progress()
        if not p.done and not force:
            raise SessionError(f"session {self.id}: {p.total - p.answered} trials are unanswered")
        now = time.time()
        self.library.set_listening_status(self.id, COMPLETED, now)
        self._refresh()

    def reopen(self) -> None:
        """Mark a completed session open again."""
        self.library.set_listening_status(self.id, OPEN, None)
        self._refresh()

    def answered_trials(self, include_unanswered: bool = False) -> list[AnsweredTrial]:
        """Every trial's spec with its answer, in position order."""
        return [AnsweredTrial(self.id, self.listener, self.design, pos, spec, ans, at)
                for pos, spec, ans, at in self.library.listening_trials(self.id)
                if ans is not None or include_unanswered]

    def info(self) -> SessionInfo:
        self._refresh()
        return SessionInfo(self.id, self.design, self.listener, self.status, self.created_at, self.ended_at,
                           self.n_trials, self.progress().answered, self.config)


def list_sessions(library, design: str | None = None) -> list[SessionInfo]:
    """Every listening session, newest first."""
    return [SessionInfo(*r) for r in library.listening_sessions(design)]


def delete_session(library, session_id: int) -> None:
    """Remove a session with its trials and answers."""
    library.delete_listening_session(int(session_id))
