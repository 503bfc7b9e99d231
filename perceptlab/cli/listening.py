"""The listening-test subcommands of ``perceptlab``: agreement, listen, stimuli, calibrate.

:func:`add_parsers` adds them to the CLI's parser; each ``cmd_*`` takes the
parsed arguments and returns the exit status. Only argparse and the shared
helpers of :mod:`perceptlab.cli.common` are imported at module level (the CLI
builds its parser on every start, GUI included).

JSON output (stable; new keys may be added, none removed or renamed):

* ``agreement --json``: :func:`perceptlab.analysis.agreement.agreement_report`.
* ``listen create --json``: ``{"library", "session": {"id", "design",
  "listener", "status", "created_at", "ended_at", "n_trials", "n_answered"},
  "config"}``; without ``--json`` the session id alone on stdout.
* ``listen list --json``: ``{"library", "sessions": [<session>]}``.
* ``listen show ID --json``: ``{"library", "session", "config", "progress":
  {"answered", "total", "next_position"}}``.
* ``listen export ID --out F --json``: ``{"library", "session_id", "files": [paths]}``.
* ``stimuli --json``: ``{"library", "reference": {"id", "path", "name",
  "label"}, "stimuli": [{"id", "reference_hash", "path", "content_hash",
  "recipe": {"kind", "params", "seed"}, "label", "info", "created_at"}]}``.
* ``calibrate --json``: :func:`perceptlab.analysis.calibration.calibrate`'s
  report plus ``"library"``.
"""

from __future__ import annotations

import argparse
import sys

from perceptlab.cli.common import (ProgressBar, UserError, feature_config, open_library, optional_library,
                                   output_file, output_folder, print_json)


def _ids(text: str | None, what: str = "--session") -> list[int] | None:
    if text is None:
        return None
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise UserError(f"{what}: expected comma-separated ids, got {text!r}")
        out.append(int(part))
    return out


def _register_metrics(lib) -> None:
    """Encoders and saved calibrated NLPD variants of the library, in the registry."""
    from perceptlab.analysis.library_metrics import register_library_metrics

    register_library_metrics(lib)


# ---------------------------------------------------------------------------
# agreement
# ---------------------------------------------------------------------------


def cmd_agreement(args) -> int:
    from perceptlab.analysis.agreement import agreement_report, report_text

    sessions = _ids(args.session)
    if args.ratings is None or sessions is not None:
        lib = open_library(args, read_only=True)
    else:
        # External ratings alone need no library; one that exists lends its cached features.
        lib = optional_library(args)
    try:
        if lib is not None:
            _register_metrics(lib)
        rep = agreement_report(
            lib, sessions, args.metric.split(",") if args.metric else None, ratings_csv=args.ratings,
            n_boot=args.boot, seed=args.seed, screen=args.screen,
            exclude_hidden_reference=not args.include_hidden_reference, n_frames=args.frames,
            excerpt=args.excerpt, config=feature_config(args), progress=ProgressBar("distances"))
    finally:
        if lib is not None:
            lib.close()
    if args.json:
        print_json(rep)
    else:
        print(report_text(rep))
    return 0


# ---------------------------------------------------------------------------
# listen
# ---------------------------------------------------------------------------


def _at_least_one(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{option} must be at least 1, got {value}")


def _check_clip_ids(lib, clip_ids: list[int] | None) -> None:
    if not clip_ids:
        return
    known = {c.id for c in lib.clips(include_failed=True)}
    missing = [i for i in clip_ids if i not in known]
    if missing:
        raise UserError(f"--clips: no clip with id {', '.join(map(str, missing))} in {lib.path} "
                               "(`perceptlab clips` lists them)")
    failed = [c.id for c in lib.clips(include_failed=True) if c.id in clip_ids and not c.ok]
    if failed:
        raise UserError(f"--clips: clip {', '.join(map(str, failed))} failed to import and cannot be played")


def cmd_listen_create(args) -> int:
    from perceptlab.listening.create import MushraPlan, TripletPlan, create_session
    from perceptlab.listening.designs import DEFAULT_MUSHRA_RECIPES, DEFAULT_TRIPLET_RECIPES

    clip_ids = _ids(args.clips, "--clips")
    _at_least_one(args.n_trials, "--n-trials")
    if args.catch is not None and args.catch < 0:
        raise UserError(f"--catch must be 0 (no catch trials) or more, got {args.catch}")
    _at_least_one(args.n_references, "--n-references")
    if args.design != "triplet" and args.catch is not None:
        raise UserError("--catch applies to triplet tests only")
    if args.stimuli_dir is not None:
        output_folder(args.stimuli_dir, "--stimuli-dir")
    lib = open_library(args)
    with lib:
        _check_clip_ids(lib, clip_ids)
        _register_metrics(lib)
        if args.design == "triplet":
            # No --metric: the plan's own default (the built-in image metrics).
            given = {} if args.metric is None else {"metrics": tuple(m.strip() for m in args.metric.split(",")
                                                                     if m.strip())}
            plan = TripletPlan(
                n_trials=20 if args.n_trials is None else args.n_trials, source=args.source, active=args.active,
                **given, n_catch=args.catch, recipes=tuple(args.recipe or DEFAULT_TRIPLET_RECIPES),
                clip_ids=tuple(clip_ids) if clip_ids else None, n_references=args.n_references,
                stimuli_dir=args.stimuli_dir, seed=args.seed,
                must_play=bool(args.must_play) if args.must_play is not None else False,
                shuffle=not args.no_shuffle)
        else:
            if args.active:
                raise UserError("--active applies to triplet tests only")
            plan = MushraPlan(
                n_items=4 if args.n_trials is None else args.n_trials, clip_ids=tuple(clip_ids) if clip_ids else None,
                recipes=tuple(args.recipe or DEFAULT_MUSHRA_RECIPES), anchors=not args.no_anchors,
                must_play=True if args.must_play is None else bool(args.must_play),
                stimuli_dir=args.stimuli_dir, seed=args.seed, shuffle=not args.no_shuffle)
        session = create_session(lib, args.design, args.listener, plan, progress=ProgressBar("preparing"))
        info = session.info()
        if args.json:
            print_json({"library": str(lib.path), "session": info.to_json(), "config": session.config})
        else:
            print(session.id)
            print(f"created {info.design} session {info.id} for {info.listener}: {info.n_trials} trials "
                  f"({session.config.get('n_catch', 0)} catch)", file=sys.stderr)
    return 0


def cmd_listen_list(args) -> int:
    from perceptlab.listening.session import list_sessions

    lib = open_library(args, read_only=True)
    with lib:
        sessions = list_sessions(lib)
        if args.json:
            print_json({"library": str(lib.path), "sessions": [s.to_json() for s in sessions]})
            return 0
        if not sessions:
            print(f"{lib.path}: no listening sessions")
            return 0
        print(f"{'id':>4}  {'design':<8} {'listener':<16} {'status':<10} answered")
        for s in sessions:
            print(f"{s.id:>4}  {s.design:<8} {s.listener:<16} {s.status:<10} {s.n_answered}/{s.n_trials}")
    return 0


def cmd_listen_show(args) -> int:
    from perceptlab.listening.session import Session, SessionError

    lib = open_library(args, read_only=True)
    with lib:
        try:
            s = Session.open(lib, args.id)
        except SessionError as exc:
            raise UserError(str(exc)) from None
        info, prog = s.info(), s.progress()
        if args.json:
            print_json({"library": str(lib.path), "session": info.to_json(), "config": s.config,
                             "progress": prog.to_json()})
        else:
            nxt = "-" if prog.next_position is None else prog.next_position
            print(f"session {s.id}: {s.design}, listener {s.listener}, {info.status}, "
                  f"{prog.answered}/{prog.total} answered, next trial {nxt}")
    return 0


def cmd_listen_export(args) -> int:
    from perceptlab.listening.export import export_session
    from perceptlab.listening.session import SessionError

    output_file(args.out, "--out", (".csv", ".json"), creates_folder=True)
    lib = open_library(args, read_only=True)
    with lib:
        try:
            files = export_session(lib, args.id, args.out)
        except SessionError as exc:
            raise UserError(str(exc)) from None
    if args.json:
        print_json({"library": str(lib.path), "session_id": args.id, "files": [str(f) for f in files]})
    else:
        for f in files:
            print(f)
    return 0


# ---------------------------------------------------------------------------
# stimuli
# ---------------------------------------------------------------------------


def cmd_stimuli(args) -> int:
    from perceptlab.analysis.similarity import resolve
    from perceptlab.audio.distort import Recipe
    from perceptlab.library.stimuli import render_stimulus

    if not args.recipe:
        raise UserError("give at least one --recipe kind:param=value,...")
    recipes = [Recipe.parse(r, seed=args.seed) for r in args.recipe]  # a seed= in the text wins
    output_folder(args.out, "--out")
    lib = open_library(args, must_exist=False)
    with lib:
        query = resolve(lib, args.ref)
        ref = query.clip if query.clip is not None else query.path
        out = [render_stimulus(lib, ref, r, args.out) for r in recipes]
        if args.json:
            print_json({"library": str(lib.path), "reference": query.to_json(),
                             "stimuli": [s.to_json() for s in out]})
        else:
            for s in out:
                print(f"{s.id:>5}  {s.recipe.label:<40} {s.path}")
    return 0


# ---------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------


def cmd_calibrate(args) -> int:
    from perceptlab.analysis.calibration import calibrate

    ids = _ids(args.session)
    if not ids:
        raise UserError("give the listening sessions to fit with --session ID[,ID...]")
    name = args.name or "s" + "-".join(map(str, ids))
    lib = open_library(args)
    with lib:
        _register_metrics(lib)
        _, rep = calibrate(lib, ids, name, steps=args.steps, lr=args.lr, test_fraction=args.test_fraction,
                           seed=args.seed, save=not args.no_save, threads=args.threads or None,
                           progress=ProgressBar("fitting"))
    if args.json:
        print_json({"library": str(lib.path), **rep})
        return 0
    print(f"{rep['metric']}: fitted on {rep['n_train']} {'answers' if rep['design'] == 'triplet' else 'conditions'}, "
          f"held out {rep['n_test']}" + ("" if rep["saved"] else " (not saved)"))
    if rep["design"] == "triplet":
        b, a = rep["before"], rep["after"]
        print(f"  agreement, held out: {100 * b['test']:.1f} % -> {100 * a['test']:.1f} %  "
              f"(training: {100 * b['train']:.1f} % -> {100 * a['train']:.1f} %)")
    else:
        b, a = rep["before"]["test"], rep["after"]["test"]
        f = lambda v: "-" if v is None else f"{v:+.3f}"  # noqa: E731
        print(f"  held out: pearson {f(b['pearson'])} -> {f(a['pearson'])}, "
              f"spearman {f(b['spearman'])} -> {f(a['spearman'])}")
    print("  sigmas: " + ", ".join(f"{s:.4g}" for s in rep["params"]["sigmas"]))
    return 0


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------


def add_parsers(sub, common: argparse.ArgumentParser, frames: argparse.ArgumentParser) -> None:
    """Add agreement, listen, stimuli and calibrate to the CLI's subparsers."""
    p = sub.add_parser("agreement", parents=[common, frames],
                       help="how well metrics agree with listening-test answers or external ratings")
    p.add_argument("--session", metavar="ID[,ID...]", default=None,
                   help="listening sessions to analyse (default: all; none with --ratings alone)")
    p.add_argument("--ratings", metavar="CSV", default=None,
                   help="external ratings: rows reference,degraded,score[,listener]; paths relative to the CSV")
    p.add_argument("--metric", default=None,
                   help="comma-separated metrics, see `perceptlab metrics` (default: every built-in metric, not "
                        "a library's own; the baselines only with a library, whose clips they are z-scored over)")
    p.add_argument("--boot", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--screen", dest="screen", action="store_true", default=None,
                   help="BS.1534 post-screening (default: on for sessions, off for --ratings)")
    p.add_argument("--no-screen", dest="screen", action="store_false", help="no post-screening")
    p.add_argument("--include-hidden-reference", action="store_true",
                   help="keep hidden references in the correlations")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_agreement)

    listen = sub.add_parser("listen", parents=[common], help="listening tests: create, list, show, export")
    lsub = listen.add_subparsers(dest="listen_command", metavar="ACTION", required=True)
    c = lsub.add_parser("create", parents=[common], help="create a session; prints its id")
    c.add_argument("--design", choices=["triplet", "mushra"], required=True)
    c.add_argument("--listener", required=True, help="listener name or code")
    c.add_argument("--n-trials", type=int, default=None, metavar="N",
                   help="triplet: scored trials (default 20); mushra: items (default 4)")
    c.add_argument("--source", choices=["clips", "stimuli"], default="clips",
                   help="triplets from library clips, or from distortions of reference clips (default clips)")
    c.add_argument("--active", action="store_true", help="triplets on which the metrics disagree most")
    c.add_argument("--metric", default=None,
                   help="comma-separated metrics compared by --active (default: the built-in metrics that "
                        "compare log-mel images, the baselines left out)")
    c.add_argument("--clips", default=None, metavar="ID[,ID...]", help="clips to draw from / references")
    c.add_argument("--n-references", type=int, default=None, metavar="N",
                   help="--source stimuli: random reference clips (default max(2, n-trials/5))")
    c.add_argument("--recipe", action="append", metavar="KIND:P=V,...",
                   help="distortion (repeatable), e.g. mp3:bitrate_kbps=32 (see README for the kinds)")
    c.add_argument("--catch", type=int, default=None, metavar="N", help="triplet catch trials (default 10%% of the trials, at least 1; 0 for none)")
    c.add_argument("--stimuli-dir", default=None, metavar="DIR", help="where to render stimuli")
    c.add_argument("--seed", type=int, default=0, help="item seed, the same for every listener (default 0)")
    c.add_argument("--must-play", dest="must_play", action="store_true", default=None,
                   help="require playing every sound before answering (default: mushra yes, triplet no)")
    c.add_argument("--no-must-play", dest="must_play", action="store_false")
    c.add_argument("--no-anchors", action="store_true", help="mushra: leave out the 3.5/7 kHz anchors")
    c.add_argument("--no-shuffle", action="store_true", help="keep item order and sides (pilots, tests)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_listen_create)
    c = lsub.add_parser("list", parents=[common], help="list the sessions")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_listen_list)
    c = lsub.add_parser("show", parents=[common], help="a session's progress")
    c.add_argument("id", type=int, metavar="ID")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_listen_show)
    c = lsub.add_parser("export", parents=[common], help="export a session with provenance (.csv or .json)")
    c.add_argument("id", type=int, metavar="ID")
    c.add_argument("--out", required=True, metavar="FILE", help="FILE.csv (+ FILE.provenance.json) or FILE.json")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_listen_export)

    p = sub.add_parser("stimuli", parents=[common], help="render distorted stimuli of a reference clip or file")
    p.add_argument("ref", metavar="REF", help="clip id or audio file")
    p.add_argument("--recipe", action="append", metavar="KIND:P=V,...",
                   help="distortion (repeatable), e.g. lowpass:cutoff_hz=3500 or white_noise:snr_db=10,seed=2")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed for recipes that do not name one (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stimuli)

    p = sub.add_parser("calibrate", parents=[common],
                       help="fit NLPD's normalisation to listening-test answers (metric nlpd:calibrated-NAME)")
    p.add_argument("--session", required=True, metavar="ID[,ID...]", help="sessions to fit (one design)")
    p.add_argument("--name", default=None, help="variant name (default s<ids>)")
    p.add_argument("--steps", type=int, default=300, help="gradient steps (default 300)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="held-out fraction (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--no-save", action="store_true", help="do not store the variant in the library")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads for the fit (default 1: many small operations; 0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_calibrate)
