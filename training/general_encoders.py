"""Train the general encoders and measure them, in one script anyone can rerun.

    python training/general_encoders.py train               # corpus, import, train the three, then finish
    python training/general_encoders.py finish              # choose the embedding, write assets/models/general-*.pt
    python training/general_encoders.py table               # the retrieval and level/delay tables

``train`` builds the general corpus if it is not there yet
(``training/build_corpus.py``: real instruments, drums, music and everyday
sounds from Debian packages), imports ``corpus/train`` into
``corpus/train.sqlite`` (labels: the parent folders) and trains
``training/configs/general_<loss>.toml`` on it. ``finish`` then chooses which
encoder maps the embedding reads (:func:`select_embedding`, on development
sets: the corpus's held-out freepats instruments, and drums and music cut
from the training corpus) and writes each run's ``best.pt``,
re-pooled to that choice, to ``assets/models/general-<loss>.pt``. The checkpoint records
every training file (path, blake2b content hash, label, duration) under
``data.train_files``, so anyone can check an evaluated library against it.

``table`` imports each held-out evaluation set (``corpus/eval/<kind>``:
instruments, drums, music; never in training) into its own library, stores
the embeddings of every general encoder there, and runs
``perceptlab retrieval`` (leave-one-out 1-NN by label) for every metric. The
held-out instruments play 4 phrases of every program, so they are scored
twice: plainly (the nearest other clip may be another phrase of the same
program: "the same instrument, other notes") and with neighbours of the
clip's own program skipped (``--source-pattern``: "another instrument of the
family"). Then
it checks, on the demo library, that a -3 dB copy and a 10 ms delay of a clip
are closer than the clip with white noise at 20 dB SNR (``perceptlab probe``'s
machinery with those three copies). It prints Markdown tables and writes
``corpus/tables.json``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_corpus import HELD_OUT_PHRASES, HELD_OUT_SOURCE_PATTERN  # noqa: E402  (training/build_corpus.py)

REPO = Path(__file__).resolve().parents[1]
LOSSES = ("mse", "nlpd", "msssim")
KINDS = ("instruments", "drums", "music")


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _perceptlab(*args: str) -> None:
    _run([sys.executable, "-m", "perceptlab.cli", *args])


def ensure_corpus(corpus: Path) -> None:
    """Build the corpus if it is not there; rebuild held-out instruments of an older layout."""
    manifest = corpus / "manifest.json"
    if not manifest.is_file():
        _run([sys.executable, str(REPO / "training" / "build_corpus.py"), "--out", str(corpus)])
        return
    rows = json.loads(manifest.read_text()).get("files", [])
    old = sorted({r["part"] for r in rows if r.get("part") in ("eval-instruments", "dev-instruments")
                  and "phrase" not in r})
    if old:  # one clip per program: plain and other-program retrieval would be the same question
        print(f"{corpus}: {', '.join(old)} hold one phrase per program; rebuilding with "
              f"{HELD_OUT_PHRASES} phrases each", flush=True)
        _run([sys.executable, str(REPO / "training" / "build_corpus.py"), "--out", str(corpus),
              "--resume", "--parts", ",".join(old)])


def ensure_library(folder: Path, library: Path) -> None:
    """Import (or refresh: unchanged files are skipped) ``folder`` into ``library``.

    Clips whose files are gone (a rebuild of the corpus removed them) leave
    the library, so it holds what the folder holds.
    """
    from perceptlab.library.store import Library

    _perceptlab("import", str(folder), "--library", str(library))
    with Library(library) as lib:
        gone = [c.id for c in lib.clips(include_failed=True) if not Path(c.path).is_file()]
        if gone:
            lib.remove_clips(gone)
            print(f"{library}: removed {len(gone)} clips whose files are gone", flush=True)


def cmd_train(args) -> int:
    corpus = Path(args.corpus).resolve()
    ensure_corpus(corpus)
    lib = corpus / "train.sqlite"
    ensure_library(corpus / "train", lib)
    for loss in args.loss:
        config = REPO / "training" / "configs" / f"general_{loss}.toml"
        out = Path(args.runs) / f"general-{loss}"
        if out.exists() and args.fresh:
            shutil.rmtree(out)
        t0 = time.perf_counter()
        cmd = ["train", "--config", str(config), "--library", str(lib), "--set", f"out_dir={json.dumps(str(out))}"]
        if args.device:
            cmd += ["--set", f"device={json.dumps(args.device)}"]
        if args.resume and (out / "last.pt").is_file():
            cmd.append("--resume")
        _perceptlab(*cmd)
        print(f"general-{loss}: {(time.perf_counter() - t0) / 60:.1f} min wall -> {out / 'best.pt'}", flush=True)
    return cmd_finish(args)


#: The embeddings compared when choosing what a general encoder's embedding reads (see cmd_select).
CANDIDATES = (("latent",), ("stage2",), ("stage1", "stage2"), ("stage1", "stage2", "latent"), ("stage1",))
#: Development sets (never the evaluation sets): clips per label, labels per kind, cut from the
#: TRAINING corpus for drums and music. Larger sets make the choice less noisy: at 6 clips per
#: family, instruments scored 0.15-0.21 and the candidates differed by one or two clips.
DEV_CLIPS = {"drums": (16, 8), "music": (4, 40)}


def ensure_dev_set(corpus: Path, kind: str) -> Path:
    """``corpus/dev/<kind>``, built (``build_corpus.py --parts dev-<kind>``) when it is missing."""
    folder = corpus / "dev" / kind
    if not folder.is_dir():
        _run([sys.executable, str(REPO / "training" / "build_corpus.py"), "--out", str(corpus),
              "--resume", "--parts", f"dev-{kind}"])
    return folder


def dev_library(corpus: Path, kind: str) -> Path:
    """A library for choosing the embedding: one kind, labels by folder, no evaluation clip.

    Instruments: the corpus's held-out development set (``dev/instruments``:
    the evaluation's families, played by a sample set no encoder trained on,
    built by ``build_corpus.py --parts dev-instruments`` when missing).
    Drums and music: :data:`DEV_CLIPS` training clips.
    """
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    if kind == "instruments":
        files = sorted(ensure_dev_set(corpus, kind).glob("*/*.flac"))
    else:
        per_label, n_labels = DEV_CLIPS[kind]
        root = corpus / "train" / kind
        labels = sorted(p for p in root.iterdir() if p.is_dir())
        labels = [p for p in labels if len(list(p.glob("*.flac"))) >= per_label][:n_labels]
        files = [f for lab in labels for f in sorted(lab.glob("*.flac"))[:per_label]]
    path = corpus / f"dev-{kind}.sqlite"
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)  # rebuilt each time: exactly today's selection
    with Library(path) as lib:
        import_files(lib, files)
    return path


def select_embedding(corpus: Path, runs: Path, losses=LOSSES) -> tuple[tuple[str, ...], dict]:
    """Pick the maps the general encoders' embeddings read: the best mean 1-NN on the dev sets.

    Every candidate of :data:`CANDIDATES` is made from each run's ``best.pt``
    by re-pooling (same weights, statistics recomputed on the run's training
    patches), embedded into the development libraries (:func:`dev_library`;
    the evaluation sets play no part in the choice) and scored by
    leave-one-out 1-NN by label; one choice for all losses, so that they
    stay comparable. The instruments are scored plainly, the protocol of
    the evaluation's targets (the nearest other clip may be another phrase
    of the same program).
    """
    import tempfile

    from perceptlab.analysis.retrieval import run_retrieval
    from perceptlab.library.store import Library
    from perceptlab.models.checkpoint import load_checkpoint
    from perceptlab.models.embedding_metric import embed_library
    from perceptlab.train.repool import repool_checkpoint

    libs = {kind: dev_library(corpus, kind) for kind in KINDS}
    from perceptlab.audio.features import FeatureConfig
    from perceptlab.train.data import load_training_data

    scores: dict = {}
    loaded: dict = {}  # the runs' training patches, loaded once per distinct data settings
    with tempfile.TemporaryDirectory() as tmp:
        for loss in losses:
            src = runs / f"general-{loss}" / "best.pt"
            ck = load_checkpoint(src)
            d = ck["train_config"]["data"]
            key = json.dumps([ck["data"]["library"], d, ck["feature_config"]], sort_keys=True)
            if key not in loaded:
                loaded[key] = load_training_data(
                    ck["data"]["library"], labels=list(d["labels"]), val_fraction=d["val_fraction"],
                    split_seed=d["split_seed"], patch=d["patch_frames"], hop=d["patch_hop"],
                    min_frames=d["min_clip_frames"] or d["patch_frames"] // 2,
                    features=FeatureConfig.from_dict(dict(ck["feature_config"])))
            for cand in CANDIDATES:
                name = f"{loss}-{'+'.join(cand)}"
                dst = Path(tmp) / f"{name}.pt"
                repool_checkpoint(src, dst, cand, training_data=loaded[key])
                for kind, lib_path in libs.items():
                    with Library(lib_path) as lib:
                        embed_library(lib, dst, name=name)
                        rep = run_retrieval(lib, [f"embedding:{name}"], n_boot=0)
                    scores.setdefault("+".join(cand), {}).setdefault(loss, {})[kind] = rep.results[0].accuracy
                print(name, scores["+".join(cand)][loss], flush=True)
    mean = {c: float(np.mean([v for per_loss in scores[c].values() for v in per_loss.values()])) for c in scores}
    best = max(mean, key=lambda c: (mean[c], -len(c.split("+"))))  # a tie goes to fewer maps
    return tuple(best.split("+")), {"scores": scores, "mean": mean, "chosen": best}


def cmd_finish(args) -> int:
    """Choose the embedding on the dev sets, write assets/models/general-<loss>.pt."""
    from perceptlab.models.checkpoint import load_checkpoint, save_checkpoint
    from perceptlab.train.repool import repool_checkpoint

    corpus, runs = Path(args.corpus).resolve(), Path(args.runs)
    ensure_corpus(corpus)
    embed_from, selection = select_embedding(corpus, runs, args.loss)
    (corpus / "selection.json").write_text(json.dumps(selection, indent=1))
    for loss in args.loss:
        dest = REPO / "assets" / "models" / f"general-{loss}.pt"
        repool_checkpoint(runs / f"general-{loss}" / "best.pt", dest, embed_from)
        # best.pt alone cannot say whether its run went on (evaluate's convergence warning):
        # the shipped file records how many epochs the run trained in all.
        ck = load_checkpoint(dest)
        ck["metrics"]["run_epochs"] = load_checkpoint(runs / f"general-{loss}" / "last.pt")["progress"]["epoch"]
        save_checkpoint(ck, dest)
        print(f"{dest}: embedding from {'+'.join(embed_from)} ({dest.stat().st_size / 2**20:.1f} MB)", flush=True)
    return 0


def _encoders(names: list[str]) -> list[Path]:
    paths = [REPO / "assets" / "models" / f"{n}.pt" for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: no such encoder; train it first (general_encoders.py train)")
    return paths


#: The sets ``table`` scores, as (kind, role, source pattern): the three evaluation sets, the
#: evaluation instruments again with neighbours of the clip's own program skipped ("another
#: instrument of the family"), then the development instruments (another sample set no encoder
#: trained on; the embedding's maps were chosen on it, so it is reported beside the evaluation,
#: not as part of it), both ways.
PROGRAM = HELD_OUT_SOURCE_PATTERN  # 032-acoustic-bass-1.flac -> program 032
TABLE_SETS = (("instruments", "eval", None), ("instruments", "eval", PROGRAM), ("drums", "eval", None),
              ("music", "eval", None), ("instruments", "dev", None), ("instruments", "dev", PROGRAM))


def table_key(kind: str, role: str, source_pattern: str | None = None) -> str:
    notes = ([] if role == "eval" else [role]) + ([] if source_pattern is None else ["other programs"])
    return kind + (f" ({', '.join(notes)})" if notes else "")


def retrieval_table(corpus: Path, encoders: list[Path], bootstrap: int) -> dict:
    from perceptlab.analysis.retrieval import run_retrieval
    from perceptlab.analysis.library_metrics import register_library_metrics
    from perceptlab.analysis.similarity import metric_names
    from perceptlab.library.store import Library
    from perceptlab.models.embedding_metric import embed_library

    out, matrices = {}, {}  # matrices: per library, shared by its plain and other-program scores
    for kind, role, pattern in TABLE_SETS:
        folder = ensure_dev_set(corpus, kind) if role == "dev" else corpus / role / kind
        lib_path = corpus / f"{role}-{kind}.sqlite"
        first = lib_path not in matrices
        if first:
            ensure_library(folder, lib_path)
            matrices[lib_path] = {}
        with Library(lib_path) as lib:
            if first:
                for ckpt in encoders:
                    embed_library(lib, ckpt, name=ckpt.stem)
            own = [m for m in register_library_metrics(lib) if m.startswith("embedding:")]
            mine = [f"embedding:{c.stem}" for c in encoders]
            report = run_retrieval(lib, metric_names(None) + [m for m in mine if m in own], n_boot=bootstrap,
                                   source_pattern=pattern, matrix_cache=matrices[lib_path])
        out[table_key(kind, role, pattern)] = report.to_json()
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
    kinds = [table_key(*ks) for ks in TABLE_SETS if table_key(*ks) in tables["retrieval"]]
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
        cells = [row.get(v) for v in ("gain -3 dB", "delay 10 ms")]
        lines.append(f"| {m} | " + " | ".join("not measured" if c is None else f"{c['share']:.2f} of {c['n']}"
                                             for c in cells) + " |")
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
    p.add_argument("--fresh", action="store_true", help="delete existing run folders first (their checkpoints too)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("finish", help="choose the embedding on the dev sets and write assets/models/general-*.pt")
    p.add_argument("--loss", nargs="+", choices=LOSSES, default=list(LOSSES))
    p.add_argument("--runs", default=str(REPO / "runs"), help="run folders (default ./runs)")
    p.set_defaults(func=cmd_finish)
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
