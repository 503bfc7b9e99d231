"""Encoder embeddings of the segments, and ``--train-config`` mode's per-fold training: one
autoencoder per (fold, loss) on a temporary library that holds only the fold's training clips."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.atomic import atomic_path
from perceptlab.audio.features import FeatureConfig, windows
from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, Cancelled, check_cancel

from .config import EvaluateConfig, LogFn
from .data import SegmentData
from .distances import _device
from .files import _safe
from .progress import _Progress

def embed_segments(enc, library: Library, data: SegmentData, config: EvaluateConfig,
                   cancel: CancelFn | None = None) -> np.ndarray:
    """(S, D) embeddings of the segments with one encoder.

    A segment as long as the encoder's patch is one patch; a longer or
    shorter one is embedded like a clip (mean over its patches, see
    :meth:`perceptlab.models.encoder.Encoder.embed_image`). An encoder with
    another log-mel config gets its own images, cut into the same windows.
    """
    from perceptlab.library.features import clip_image

    if enc.feature_config == config.features:
        segs = data.segs
    else:
        parts = []
        for ci, c in enumerate(data.clips):
            check_cancel(cancel)
            w = windows(clip_image(library, c, enc.feature_config), config.segment_frames, config.segment_hop)
            if len(w) != data.n_windows[ci]:
                raise ValueError(
                    f"{enc.path}: its log-mel config (sample_rate {enc.feature_config.sample_rate}, hop "
                    f"{enc.feature_config.hop_length}) gives other frames than the evaluation's; its "
                    f"segments would not line up"
                )
            parts.append(w[data.seg_window[data.seg_clip == ci]])
        segs = np.concatenate(parts)[:, None].astype(np.float32)
    if segs.shape[-1] == enc.patch_frames:
        out = []
        for i in range(0, len(segs), 512):
            check_cancel(cancel)
            out.append(enc.embed_patches(segs[i : i + 512]).numpy())
        return np.concatenate(out).astype(np.float32)
    out = np.empty((len(segs), enc.dim()), dtype=np.float32)
    for i, s in enumerate(segs):
        if i % 64 == 0:
            check_cancel(cancel)
        out[i] = enc.embed_image(s[0])
    return out



def subset_library(source: Library, clips: Sequence[Clip], path: str | os.PathLike,
                   features: Sequence[FeatureConfig] = ()) -> Path:
    """A new library at ``path`` holding only ``clips`` (their rows and cached images).

    Images for each feature config in ``features`` are taken from (or
    computed into) the source's cache and copied, so training on the subset
    decodes nothing.
    """
    from perceptlab.library.features import clip_image

    with Library(path) as sub:
        with sub.transaction():
            for c in clips:
                row = dataclasses.asdict(c)
                for key in ("id", "imported_at"):
                    row.pop(key)
                sub.upsert_clip(**row)
                for fc in features:
                    sub.put_features(c.content_hash, fc.hash, clip_image(source, c, fc))
        return sub.path


def _train_fold_encoders(library: Library, data: SegmentData, config: EvaluateConfig, folds, losses: list[str],
                         workdir: Path, prog: _Progress, cancel: CancelFn | None, log: LogFn | None,
                         keep: str | os.PathLike | None = None):
    """Train one encoder per (fold, loss) on the fold's training clips; embed every segment with it.

    With ``keep``, each run's ``best.pt`` and ``last.pt`` are copied to
    ``keep/fold-<k>-<loss>/`` as soon as the run ends.

    Returns ({loss: [per-fold (S, D) embeddings]}, [per-run records], the base config).
    """
    from perceptlab.models.checkpoint import load_checkpoint
    from perceptlab.models.encoder import Encoder
    from perceptlab.train import load_config, train
    from perceptlab.train.progress import CallbackReporter

    base = load_config(config.train_config, list(config.train_overrides))
    feats: dict[str, list[np.ndarray]] = {loss: [] for loss in losses}
    records = []
    sub = prog.start("train", f"training {len(folds) * len(losses)} encoders (folds x losses)")
    n_runs, run = len(folds) * len(losses), 0
    for i, (tr, te) in enumerate(folds):
        tr_clips = [data.clips[j] for j in np.unique(data.seg_clip[tr])]
        test_hashes = {data.clips[j].content_hash for j in np.unique(data.seg_clip[te])}
        lib_path = subset_library(library, tr_clips, workdir / f"fold{i + 1}.sqlite", [base.features])
        for loss in losses:
            check_cancel(cancel)
            name = f"evaluate-fold{i + 1}-{loss}"
            out_dir = workdir / f"fold{i + 1}-{loss}"
            sets = list(config.train_overrides) + [
                f"name={json.dumps(name)}", f"out_dir={json.dumps(str(out_dir))}",
                f"data.library={json.dumps(str(lib_path))}", "data.labels=[]", f"loss={json.dumps(loss)}",
            ]
            cfg = load_config(config.train_config, sets)
            if log is not None:
                log(f"training {name} on {len(tr_clips)} clips ({run + 1}/{n_runs})")
            done_before = run

            def on_event(ev, _done=done_before):
                if ev.get("event") == "step" and ev.get("steps_per_epoch"):
                    total = ev["steps_per_epoch"] * cfg.epochs
                    sub(int(1000 * (_done + min(1.0, ev["step"] / total))), 1000 * n_runs)

            t0 = time.perf_counter()
            result = train(cfg, reporter=CallbackReporter(on_event), cancel=cancel, handle_signals=False)
            if result.status != "completed" or result.best is None:
                raise Cancelled("cancelled during training")
            enc = Encoder(load_checkpoint(result.best), Path(result.best), _device(config))
            seen = set(enc.data.get("train_hashes") or []) | set(enc.data.get("val_hashes") or [])
            leak = seen & test_hashes
            if leak:  # cannot happen: the subset library holds no test clip
                raise AssertionError(f"{name}: the encoder saw {len(leak)} test clips")
            feats[loss].append(embed_segments(enc, library, data, config, cancel))
            kept = None
            if keep is not None:
                dest = Path(keep).expanduser().resolve() / f"fold-{i + 1}-{_safe(loss)}"
                dest.mkdir(parents=True, exist_ok=True)
                kept = {}
                for kind, src in (("best", result.best), ("last", result.last)):
                    if src and Path(src).is_file():
                        with atomic_path(dest / f"{kind}.pt") as tmp:  # a rerun replaces, never half-writes
                            shutil.copyfile(src, tmp)
                        kept[kind] = str(dest / f"{kind}.pt")
            # The best checkpoint records the best epoch; the run's result says how many it ran.
            best_epoch = (enc.metrics or {}).get("best_epoch", result.best_epoch)
            history = result.history or []
            records.append({
                "fold": i + 1, "loss": loss, "name": name, "model_hash": enc.model_hash,
                "n_train_clips": enc.data.get("n_train_clips"), "n_val_clips": enc.data.get("n_val_clips"),
                "fold_training_clips": len(tr_clips), "test_clips_seen": 0,
                "epochs": result.epochs, "best_epoch": best_epoch, "best_val_loss": result.best_val_loss,
                "best_at_last_epoch": best_epoch is not None and best_epoch >= result.epochs,
                "validated": any(h.get("val_loss") is not None for h in history) if history else True,
                "kept": kept,
                "wall_s": round(time.perf_counter() - t0, 2),
            })
            run += 1
            sub(1000 * run, 1000 * n_runs)
    prog.end("train")
    return feats, records, base

