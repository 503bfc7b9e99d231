"""``perceptlab probe`` (parser and handler; imports nothing heavy at parse time).

Prints the probe's table (:func:`perceptlab.analysis.probe.report_text`) or,
with ``--json``, the report of :func:`perceptlab.analysis.probe.run_probe`.
The rendered copies go to ``--out`` (default: a new temporary folder) with
``probe.json`` and, when matplotlib is installed, ``probe.png``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from perceptlab.cli.common import ProgressBar, UserError, open_library, output_folder

#: The probe's default sample size (perceptlab.analysis.probe.DEFAULT_CLIPS), spelled
#: out so that building the parser imports nothing heavy.
DEFAULT_CLIPS = 12

HELP = "perceptual sanity check of every metric: near-inaudible vs clearly audible copies of library clips"


def add_parsers(sub, common) -> None:
    """Register ``probe`` on the ``perceptlab`` subparsers."""
    p = sub.add_parser(
        "probe", parents=[common], help=HELP,
        description=(
            "Which metric should I trust on my data? Renders near-inaudible copies (gain -3 dB, 10 ms "
            "delay, noise at 45 dB SNR, MP3 at 128 kbps, tempo +1%) and clearly audible ones (noise at "
            "10 dB SNR, low-pass at 2 kHz, hard clipping, a 300 ms echo, played backwards) of a seeded "
            "sample of library clips, and reports per metric the share of triplets (clip, near, far) it "
            "orders as a listener would, with bootstrap 95% intervals over clips."
        ),
    )
    p.add_argument("--metric", default=None,
                   help="comma-separated metrics (default: every metric the library offers)")
    p.add_argument("--clips", type=int, default=DEFAULT_CLIPS, metavar="N",
                   help=f"clips to sample, spread over the labels (default {DEFAULT_CLIPS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, the noise and the bootstrap (default 0)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the rendered copies, probe.json and probe.png (default: a new temp folder)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args) -> int:
    from perceptlab.analysis.probe import report_text, run_probe, write_chart
    from perceptlab.analysis.similarity import metric_names

    if args.clips < 2:
        raise UserError(f"--clips must be at least 2, got {args.clips}")
    out = None if args.out is None else output_folder(args.out, "--out")
    with open_library(args, read_only=True) as lib:
        metrics = None
        if args.metric is not None:
            from perceptlab.analysis.library_metrics import register_library_metrics

            register_library_metrics(lib)  # so the library's own encoders can be named
            try:
                metrics = metric_names(args.metric)
            except ValueError as exc:
                raise UserError(f"--metric: {exc}") from None
        t0 = time.perf_counter()
        try:
            rep = run_probe(lib, metrics=metrics, n_clips=args.clips, seed=args.seed, out_dir=out,
                            progress=ProgressBar("probing"))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        seconds = time.perf_counter() - t0
    folder = Path(rep["out_dir"])
    rep["seconds"] = round(seconds, 1)
    chart = write_chart(rep, folder / "probe.png")
    rep["chart"] = None if chart is None else str(chart)
    (folder / "probe.json").write_text(json.dumps(rep, indent=1) + "\n")
    if args.json:
        json.dump(rep, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(report_text(rep))
    print()
    print(f"report: {folder / 'probe.json'}; "
          + (f"chart: {chart}" if chart is not None else "no chart (matplotlib is not installed)")
          + f"; {seconds:.1f} s")
    return 0
