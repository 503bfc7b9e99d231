"""Train the general encoders and measure them, in one script anyone can rerun.

    python training/general_encoders.py train --loss nlpd   # corpus, import, train, copy to assets/models
    python training/general_encoders.py table               # the retrieval and level/delay tables

``train`` builds the general corpus if it is not there yet
(``training/build_corpus.py``: real instruments, drums, music and everyday
sounds from Debian packages), imports ``corpus/train`` into
``corpus/train.sqlite`` (labels: the parent folders), trains
``training/configs/general_<loss>.toml`` on it and copies the run's
``best.pt`` to ``assets/models/general-<loss>.pt``. The checkpoint records
every training file (path, blake2b content hash, label, duration) under
``data.train_files``, so anyone can check an evaluated library against it.

``table`` imports each held-out evaluation set (``corpus/eval/<kind>``:
instruments, drums, music; never in training) into its own library, stores
the embeddings of every general encoder there, and runs
``perceptlab retrieval`` (leave-one-out 1-NN by label) for every metric; then
it checks, on the demo library, that a -3 dB copy and a 10 ms delay of a clip
are closer than the clip with white noise at 20 dB SNR (``perceptlab probe``'s
machinery with those three copies). It prints Markdown tables and writes
``corpus/tables.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOSSES = ("mse", "nlpd", "msssim")
KINDS = ("instruments", "drums", "music")


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _perceptlab(*args: str) -> None:
    _run([sys.executable, "-m", "perceptlab.cli", *args])


def ensure_corpus(corpus: Path) -> None:
    if not (corpus / "manifest.json").is_file():
        _run([sys.executable, str(REPO / "training" / "build_corpus.py"), "--out", str(corpus)])


def ensure_library(folder: Path, library: Path) -> None:
    """Import (or refresh: unchanged files are skipped) ``folder`` into ``library``."""
    _perceptlab("import", str(folder), "--library", str(library))


def cmd_train(args) -> int:
    corpus = Path(args.corpus).resolve()
    ensure_corpus(corpus)
    lib = corpus / "train.sqlite"
    ensure_library(corpus / "train", lib)
    for loss in args.loss:
        config = REPO / "training" / "configs" / f"general_{loss}.toml"
        out = Path(args.runs) / f"general-{loss}"
        if out.exists() and not args.resume:
            shutil.rmtree(out)
        t0 = time.perf_counter()
        cmd = ["train", "--config", str(config), "--library", str(lib), "--set", f'out_dir="{out}"']
        if args.device:
            cmd += ["--set", f'device="{args.device}"']
        if args.resume and (out / "last.pt").is_file():
            cmd.append("--resume")
        _perceptlab(*cmd)
        wall = time.perf_counter() - t0
        dest = REPO / "assets" / "models" / f"general-{loss}.pt"
        shutil.copyfile(out / "best.pt", dest)
        print(f"general-{loss}: {wall / 60:.1f} min wall; {dest} ({dest.stat().st_size / 2**20:.1f} MB)", flush=True)
    return 0


def _encoders(names: list[str]) -> list[Path]:
    paths = [REPO / "assets" / "models" / f"{n}.pt" for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: no such encoder; train it first (general_encoders.py train)")
    return paths


def retrieval_table(corpus: Path, encoders: list[Path], bootstrap: int) -> dict:
    from perceptlab.analysis.retrieval import run_retrieval
    from perceptlab.analysis.similarity import metric_names, register_library_metrics
    from perceptlab.library.store import Library
    from perceptlab.models.embedding_metric import embed_library

    out = {}
    for kind in KINDS:
        lib_path = corpus / f"eval-{kind}.sqlite"
        ensure_library(corpus / "eval" / kind, lib_path)
        with Library(lib_path) as lib:
            for ckpt in encoders:
                embed_library(lib, ckpt, name=ckpt.stem)
            own = [m for m in register_library_metrics(lib) if m.startswith("embedding:")]
            mine = [f"embedding:{c.stem}" for c in encoders]
            report = run_retrieval(lib, metric_names(None) + [m for m in mine if m in own], n_boot=bootstrap)
        out[kind] = report.to_json()
        print(report.text(), flush=True)
    return out


def level_delay_check(encoders: list[Path], n_clips: int) -> dict:
    """Share of demo clips whose -3 dB copy / 10 ms delay is closer than noise at 20 dB SNR."""
    import tempfile

    from perceptlab.analysis.probe import NEAR_VARIANTS, Variant, run_probe
    from perceptlab.audio.distort import Recipe
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library
    from perceptlab.models.embedding_metric import embed_library

    near = [v for v in NEAR_VARIANTS if v.name in ("gain -3 dB", "delay 10 ms")]
    far = [Variant("noise 20 dB SNR", Recipe("white_noise", {"snr_db": 20.0}))]
    with tempfile.TemporaryDirectory() as tmp:
        with Library(Path(tmp) / "demo.sqlite") as lib:
            import_files(lib, [REPO / "assets" / "demo"])
            for ckpt in encoders:
                embed_library(lib, ckpt, name=ckpt.stem)
            rep = run_probe(lib, metrics=[f"embedding:{c.stem}" for c in encoders], n_clips=n_clips,
                            near=near, far=far, out_dir=Path(tmp) / "copies")
    table = {}
    for row in rep["rows"]:
        table.setdefault(row["metric"], {})[row["near"]] = {"share": row["share"], "ci": row["ci"], "n": row["n"]}
    return table


def markdown(tables: dict) -> str:
    kinds = [k for k in KINDS if k in tables["retrieval"]]
    metrics = list(next(iter(tables["retrieval"].values()))["metrics"])
    lines = ["| metric | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for m in metrics:
        cells = []
        for k in kinds:
            r = tables["retrieval"][k]["metrics"].get(m)
            cells.append("" if r is None else f"{r['accuracy']:.2f} [{r['interval'][0]:.2f}, {r['interval'][1]:.2f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("| chance | " + " | ".join(f"{tables['retrieval'][k]['chance']:.2f}" for k in kinds) + " |")
    lines.append("")
    lines.append("| encoder | -3 dB copy closer than noise at 20 dB SNR | 10 ms delay closer than noise at 20 dB SNR |")
    lines.append("|---|---|---|")
    for m, row in tables["level_delay"].items():
        g, d = row.get("gain -3 dB"), row.get("delay 10 ms")
        lines.append(f"| {m} | {g['share']:.2f} of {g['n']} | {d['share']:.2f} of {d['n']} |")
    return "\n".join(lines)


def cmd_table(args) -> int:
    corpus = Path(args.corpus).resolve()
    ensure_corpus(corpus)
    encoders = _encoders(args.encoders)
    t0 = time.perf_counter()
    tables = {"retrieval": retrieval_table(corpus, encoders, args.bootstrap),
              "level_delay": level_delay_check(encoders, args.demo_clips)}
    tables["elapsed_s"] = round(time.perf_counter() - t0, 1)
    (corpus / "tables.json").write_text(json.dumps(tables, indent=1))
    print(markdown(tables))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(REPO / "corpus"), help="the corpus folder (default ./corpus)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="build the corpus, train general encoders, copy them to assets/models")
    p.add_argument("--loss", nargs="+", choices=LOSSES, default=list(LOSSES))
    p.add_argument("--runs", default=str(REPO / "runs"), help="run folders (default ./runs)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's auto)")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("table", help="retrieval on the held-out sets and the level/delay check")
    p.add_argument("--encoders", nargs="+", default=[f"general-{x}" for x in LOSSES],
                   help="checkpoint names under assets/models (default: the three general encoders)")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--demo-clips", type=int, default=48, help="demo clips in the level/delay check (default all 48)")
    p.set_defaults(func=cmd_table)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
