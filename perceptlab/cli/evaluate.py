"""``perceptlab evaluate`` (parser and handler; imports nothing heavy at parse time)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from perceptlab.cli.common import ProgressBar, UserError, library_path

HELP = "genre-classification protocol: k-NN on metric distances vs logistic regression on encoder embeddings"


def add_parsers(sub, common) -> None:
    """Register ``evaluate`` on the ``perceptlab`` subparsers."""
    p = sub.add_parser(
        "evaluate", parents=[common], help=HELP,
        description=(
            "Test the claim of Namgyal et al. (2024) on the library: per method, weighted F1, accuracy and "
            "macro F1 as mean +- std over stratified folds grouped by clip, paired comparisons with "
            "bootstrap CIs, a headline naming the best method against the best perceptual encoder, and a "
            "verdict. Writes report.json, report.md, chart.png, chart.svg and confusion/*.csv into --out "
            "(and, with --train-config, each fold's encoders into OUT/encoders/). The chart needs "
            "matplotlib: pip install 'perceptlab[report]'."
        ),
    )
    p.add_argument("--metrics", default=None,
                   help="spectrogram metrics and baselines for k-NN, comma-separated, see `perceptlab metrics` "
                        "(default: every built-in metric, the image metrics then the baselines; the baselines' "
                        "statistics are z-scored on each fold's training segments)")
    enc = p.add_mutually_exclusive_group()
    enc.add_argument("--train-config", metavar="FILE.toml", default=None,
                     help="train one encoder per fold and loss on the fold's training clips (honest, slow)")
    enc.add_argument("--checkpoints", nargs="+", metavar="CKPT", default=None,
                     help="encoder checkpoints you declare trained on other data (overlap is checked and warned)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=None,
                   help="override a key of --train-config, e.g. --set epochs=5 (repeatable)")
    p.add_argument("--losses", default=None,
                   help="losses to train with --train-config (default: the --metrics that are losses)")
    p.add_argument("--folds", type=int, default=5, help="outer folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds, inner folds and bootstrap (default 0)")
    p.add_argument("--k", type=int, default=5, help="k of the fixed-k k-NN (default 5)")
    p.add_argument("--k-grid", default="1,3,5,7,9,15", help="k candidates for the inner-CV k-NN")
    p.add_argument("--c-grid", default="0.001,0.01,0.1,1,10,100", help="C candidates for logistic regression")
    p.add_argument("--inner-folds", type=int, default=3, help="inner CV folds for k and C (default 3)")
    p.add_argument("--segment-frames", type=int, default=128, help="segment length in frames (default 128 = 2.97 s)")
    p.add_argument("--segment-hop", type=int, default=64, help="frames between segment starts (default 64)")
    p.add_argument("--max-segments-per-clip", type=int, default=0,
                   help="keep at most N evenly spaced segments per clip (default 0 = all)")
    p.add_argument("--labels", default=None, help="only these classes, comma-separated (default: all)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    p.add_argument("--out", metavar="DIR", default="evaluation", help="output folder (default ./evaluation)")
    p.add_argument("--no-keep-encoders", dest="keep_encoders", action="store_false",
                   help="with --train-config, delete the per-fold encoders after use (default: keep each "
                        "fold's best.pt and last.pt in OUT/encoders/fold-<k>-<loss>/)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON on stdout")
    p.set_defaults(func=cmd_evaluate)


def _split(text: str | None, kind=str) -> tuple:
    if text is None:
        return ()
    try:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a comma-separated list of {kind.__name__}s") from None


def cmd_evaluate(args) -> int:
    from perceptlab.analysis.evaluate import EvaluateConfig, run_evaluation, write_report

    try:
        # No --metrics: the config's own default (every built-in metric).
        given = {} if args.metrics is None else {"metrics": _split(args.metrics)}
        cfg = EvaluateConfig(
            **given, checkpoints=tuple(args.checkpoints or ()),
            train_config=args.train_config, train_overrides=tuple(args.set or ()),
            losses=_split(args.losses), folds=args.folds, seed=args.seed, k=args.k,
            k_grid=_split(args.k_grid, int), c_grid=_split(args.c_grid, float), inner_folds=args.inner_folds,
            segment_frames=args.segment_frames, segment_hop=args.segment_hop,
            max_segments_per_clip=args.max_segments_per_clip, labels=_split(args.labels),
            bootstrap=args.bootstrap, device=args.device,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    path = library_path(args)
    if not path.exists():
        raise UserError(f"{path}: no library here yet; create one with `perceptlab import DIR --library {path}`")
    bar = ProgressBar("evaluating")

    def log(msg: str) -> None:
        if bar.enabled:
            sys.stderr.write("\r\033[K")
        print(f"perceptlab evaluate: {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    from perceptlab.train import TrainError

    try:
        keep = Path(args.out) / "encoders" if args.keep_encoders and cfg.mode == "train-config" else None
        report = run_evaluation(path, cfg, progress=bar, log=log, command=[Path(sys.argv[0]).name, *sys.argv[1:]],
                                keep_encoders=keep)
    except TrainError as exc:
        print(f"perceptlab: error: training failed: {exc}", file=sys.stderr)
        return 1
    paths = write_report(report, args.out)
    for note in paths["notes"]:
        print(f"perceptlab evaluate: {note}", file=sys.stderr)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report.text())
        kept = [r["kept"] for r in report.data["encoders"].get("runs", []) if r.get("kept")]
        if kept:
            print(f"\nencoders: {len(kept)} per-fold encoders (best.pt, last.pt) kept in "
                  f"{report.data['encoders']['kept']}")
        also = ", ".join(["report.json"] + (["chart.png", "chart.svg"] if paths["chart"] else []) + ["confusion/*.csv"])
        print(f"\nreport: {Path(paths['markdown']).resolve()} (and {also}); {time.perf_counter() - t0:.1f} s")
    return 0
