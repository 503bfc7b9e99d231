"""Build a library with many labels from the bundled demo clips.

Each demo clip (``assets/demo/<family>/<family>_NN.flac``, 48 of them) becomes
its own label, ``<family>_NN``, holding the clip and graded distorted copies
of it (a quieter copy, a low-passed one, one with noise, one with an echo, ...
from :mod:`perceptlab.audio.distort`). The copies are written as FLAC files
into ``<out>/clips/<label>/`` and imported with the normal importer, which
labels every file by its folder. A metric that hears a clip and its copies
as near shows dark diagonal blocks in the matrix view and tight groups on the
map; 48 labels is more than any colour list the eye can tell apart, which is
what the map's legend and the matrix's label axis must cope with.

Usage (about a minute on two cores)::

    python docs/screenshots/make_labels_library.py OUT_DIR [--labels 48] [--per-label 4]
        [--seconds 2.0] [--embed]

The library is ``OUT_DIR/labels.sqlite``; open it with
``perceptlab --library OUT_DIR/labels.sqlite``. ``--embed`` also embeds the
clips with the shipped general encoders (``embedding:general-*``), as the
first start does for the demo library.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"

#: The copies of each clip, in order: the first ``per_label`` are used.
#: Near copies first (a listener calls them the same sound), then audible ones.
COPIES = (
    "identity",
    "gain:db=-3",
    "lowpass:cutoff_hz=4000",
    "white_noise:snr_db=20,seed=1",
    "echo:delay_s=0.08,level_db=-8",
    "time_shift:seconds=0.01",
    "eq_tilt:db_per_octave=2",
    "reverb:rt60_s=0.5,wet=0.3,seed=2",
)
MAX_LABELS = 48


def demo_clips(demo_dir: Path = DEMO) -> list[Path]:
    """The demo clips, sorted (family, then number)."""
    clips = sorted(demo_dir.glob("*/*.flac"))
    if not clips:
        raise FileNotFoundError(f"{demo_dir}: no demo clips (*/*.flac) found")
    return clips


def write_stimuli(out_dir: Path, n_labels: int = MAX_LABELS, per_label: int = 4, seconds: float | None = 2.0,
                  demo_dir: Path = DEMO, progress=None) -> list[Path]:
    """Write ``per_label`` copies of each of the first ``n_labels`` demo clips; returns the files.

    Labels are spread over the instrument families (clip 1 of every family,
    then clip 2, ...), so a small ``n_labels`` still holds every family.
    ``seconds`` keeps the first seconds of each clip (None: the whole clip).
    """
    import soundfile as sf

    from perceptlab.audio.distort import Recipe, apply

    sources = demo_clips(demo_dir)
    if not 1 <= n_labels <= len(sources):
        raise ValueError(f"--labels: between 1 and {len(sources)} (one per demo clip), got {n_labels}")
    if not 1 <= per_label <= len(COPIES):
        raise ValueError(f"--per-label: between 1 and {len(COPIES)} copies of each clip, got {per_label}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"--seconds: a positive length in seconds, got {seconds}")
    by_number = sorted(sources, key=lambda p: (p.stem.rsplit("_", 1)[-1], p.parent.name))
    recipes = [Recipe.parse(t) for t in COPIES[:per_label]]
    files: list[Path] = []
    for k, src in enumerate(by_number[:n_labels]):
        wave, rate = sf.read(str(src), dtype="float32", always_2d=True)
        mono = wave.mean(axis=1)
        if seconds is not None:
            mono = mono[: int(round(seconds * rate))]
        label = src.stem
        folder = out_dir / label
        folder.mkdir(parents=True, exist_ok=True)
        for recipe in recipes:
            path = folder / f"{label}__{recipe.slug}.flac"
            if not path.exists():
                y = apply(recipe, mono, rate)
                peak = float(np.max(np.abs(y))) if y.size else 0.0
                if peak > 0.999:  # FLAC is fixed-point: keep the copy below full scale
                    y = y * (0.999 / peak)
                sf.write(str(path), y, rate, subtype="PCM_24")
            files.append(path)
        if progress is not None:
            progress(k + 1, n_labels)
    return files


def build_labels_library(out_dir: str | Path, n_labels: int = MAX_LABELS, per_label: int = 4,
                         seconds: float | None = 2.0, embed: bool = False, demo_dir: Path = DEMO,
                         progress=None) -> Path:
    """Write the copies and import them into ``out_dir/labels.sqlite``; returns the library path.

    Running it again adds nothing (the importer skips unchanged files).
    """
    from perceptlab.library.importer import import_files
    from perceptlab.library.store import Library

    out_dir = Path(out_dir)
    clips_dir = out_dir / "clips"
    write_stimuli(clips_dir, n_labels, per_label, seconds, demo_dir, progress=progress)
    path = out_dir / "labels.sqlite"
    with Library(path) as lib:
        summary = import_files(lib, [clips_dir])
        if summary.failed:
            raise RuntimeError("import failed for " + "; ".join(f"{p}: {r}" for p, r in summary.failed))
        if embed:
            from perceptlab.library.demo import shipped_general_encoders
            from perceptlab.models.embedding_metric import embed_library

            for ckpt in shipped_general_encoders():
                embed_library(lib, ckpt, name=ckpt.stem, device="cpu")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the clips and labels.sqlite")
    ap.add_argument("--labels", type=int, default=MAX_LABELS, help=f"number of labels, 1-{MAX_LABELS}")
    ap.add_argument("--per-label", type=int, default=4, help=f"copies of each clip, 1-{len(COPIES)}")
    ap.add_argument("--seconds", type=float, default=2.0, help="keep the first seconds of each clip (0: all)")
    ap.add_argument("--embed", action="store_true", help="also embed with the shipped general encoders")
    args = ap.parse_args(argv)

    def progress(done, total):
        print(f"\rwriting copies: {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    try:
        path = build_labels_library(args.out, args.labels, args.per_label, args.seconds or None, args.embed,
                                    progress=progress)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"make_labels_library: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
