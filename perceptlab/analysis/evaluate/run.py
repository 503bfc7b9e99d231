"""One evaluation run, step by step: check the inputs, load the segments and folds, k-NN on each
metric, the encoders' logistic regressions, the baselines, then the assembled report."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from perceptlab.jsonable import jsonable
from perceptlab.library.store import Library
from perceptlab.tasks import CancelFn, ProgressFn

from .assemble import _assemble
from .checkpoints import _checkpoint_info, _primary_loss, not_converged_warning
from .classifiers import _Method, _Runner, logmel_features
from .config import TRAIN_LOSSES, EvaluateConfig, LogFn
from .data import SegmentData, load_segments, make_folds
from .distances import BaselineDistances, _device, segment_distances
from .encoders import _train_fold_encoders, embed_segments
from .progress import _Progress
from .report import EvaluationReport


def run_evaluation(
    library: Library | str | os.PathLike,
    config: EvaluateConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    log: LogFn | None = None,
    command: list[str] | None = None,
    keep_encoders: str | os.PathLike | None = None,
) -> EvaluationReport:
    """Run the protocol (see :mod:`perceptlab.analysis.evaluate`) and return its report.

    Parameters
    ----------
    library : Library or path
        A path is opened (and closed) here, so a worker thread can pass one.
    config : EvaluateConfig, optional
        None: the default one (every built-in metric, five folds, ...).
    progress, cancel : callables
        See :mod:`perceptlab.tasks`; progress is reported on a 0..1000 scale.
    log : callable, optional
        Receives one-line messages about the stage in progress.
    command : list of str, optional
        The command line, recorded in the report.
    keep_encoders : path, optional
        With ``--train-config``: copy each fold's ``best.pt`` and ``last.pt``
        to ``keep_encoders/fold-<k>-<loss>/`` (listed in the report's
        ``encoders.runs[].kept``). None: they are deleted with the run's
        temporary folder.

    Raises
    ------
    ValueError
        Unusable library or options (the message says which and why).
    Cancelled
        ``cancel()`` turned true; nothing is written.
    """
    config = EvaluateConfig() if config is None else config
    if not isinstance(library, Library):
        path = Path(library).expanduser()
        if not path.exists():
            raise ValueError(f"{path}: no library here; create one with `perceptlab import DIR --library {path}`")
        with Library(path) as lib:
            return run_evaluation(lib, config, progress, cancel, log=log, command=command,
                                  keep_encoders=keep_encoders)

    t_start = time.perf_counter()
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    losses, encoders = _check_inputs(library, config)
    prog = _Progress(progress, cancel, log, _stages(config, losses, encoders))
    warns: list[str] = []

    data = _load(library, config, prog, cancel, warns)
    fingerprint = library.fingerprint()
    folds = make_folds(data.y_seg, data.seg_clip, config.folds, config.seed)
    runner = _Runner(data, config, folds, cancel)

    methods = _knn_methods(runner, data, config, prog, cancel)
    encoder_info: dict = {"mode": config.mode}
    if config.mode == "checkpoints":
        methods += _checkpoint_methods(runner, library, data, config, encoders, prog, cancel, warns,
                                       encoder_info, fingerprint)
    elif config.mode == "train-config":
        methods += _train_config_methods(runner, library, data, config, folds, losses, prog, cancel, log, warns,
                                         encoder_info, keep_encoders)
    methods += _baseline_methods(runner, data, prog)

    prog.start("stats", "scores, paired comparisons, bootstrap")
    report = _assemble(library, data, config, folds, methods, encoder_info, warns, fingerprint)
    prog.end("stats")
    report["timings"] = dict(prog.timings, total_s=round(time.perf_counter() - t_start, 3))
    report["created"] = created
    report["command"] = list(command) if command is not None else None
    return EvaluationReport(jsonable(report))


# --------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------


def _check_inputs(library: Library, config: EvaluateConfig) -> tuple[list[str], list]:
    """Fail before any work: unusable metrics, a training config that does not load, no losses to
    train, checkpoints that do not load. Returns (losses to train, loaded encoders)."""
    from perceptlab.metrics.registry import get_metric

    try:  # the library's own metrics (calibrated NLPD variants) may be named in --metrics
        from perceptlab.analysis.library_metrics import register_library_metrics
    except ImportError:
        pass
    else:
        register_library_metrics(library)
    for m in config.metrics:
        if get_metric(m).input_kind != "spectrogram" and not get_metric(m).params.get("baseline"):
            raise ValueError(f"--metrics: {m} compares stored vectors, not spectrogram segments; k-NN here "
                             f"takes spectrogram metrics and baselines ({', '.join(TRAIN_LOSSES)}, "
                             "logmel-stats, mfcc-stats, ...)")
    losses = config.train_losses if config.mode == "train-config" else []
    if config.mode == "train-config":
        from perceptlab.train import load_config

        load_config(config.train_config, list(config.train_overrides))
        if not losses:
            raise ValueError(f"--train-config: no losses to train; give --losses or --metrics among "
                             f"{', '.join(TRAIN_LOSSES)}")
    encoders = []
    if config.mode == "checkpoints":
        from perceptlab.models.checkpoint import CheckpointError
        from perceptlab.models.encoder import Encoder

        try:
            encoders = [Encoder.load(p, _device(config)) for p in config.checkpoints]
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None
    return losses, encoders


def _stages(config: EvaluateConfig, losses: list[str], encoders: list) -> list[tuple[str, float]]:
    """The run's stages and their rough relative cost, for one progress scale."""
    stages = [("load", 1.0)]
    for m in config.metrics:
        stages += [(f"matrix:{m}", 3.0), (f"knn:{m}", 1.0)]
    stages += [("train", 8.0 * config.folds * len(losses))] if losses else []
    stages += [("embed", 1.0 * len(encoders))] if encoders else []
    stages += [(f"logreg:{j}", 1.0) for j in range(len(encoders) + len(losses))]
    stages += [("baselines", 1.0), ("stats", 0.5)]
    return stages


def _load(library: Library, config: EvaluateConfig, prog: _Progress, cancel: CancelFn | None,
          warns: list[str]) -> SegmentData:
    """The clips' segments; what was left out goes into ``warns``."""
    sub = prog.start("load", "loading clips and cutting segments")
    data = load_segments(library, config, sub, cancel)
    prog.end("load")
    if data.dropped_classes:
        warns.append("classes with fewer clips than folds were left out: "
                     + ", ".join(f"{k} ({v})" for k, v in data.dropped_classes.items()))
    if data.failed:
        warns.append(f"{len(data.failed)} files of the library failed to import and are not evaluated "
                     f"(listed under library.failed)")
    return data


def _knn_methods(runner: _Runner, data: SegmentData, config: EvaluateConfig, prog: _Progress,
                 cancel: CancelFn | None) -> list[_Method]:
    """k-NN (fixed k, then k by inner CV) on each metric's distances between segments."""
    from perceptlab.metrics.registry import get_metric

    device = _device(config)
    knn = []
    for metric in config.metrics:
        disp = get_metric(metric).display_name
        note = ""
        if get_metric(metric).params.get("baseline"):
            sub = prog.start(f"matrix:{metric}", f"{disp}: statistics of {len(data.segs)} segments")
            dmat = BaselineDistances(metric, data.segs, config.features, progress=sub, cancel=cancel)
            note = " (statistics z-scored on the fold's training segments)"
        else:
            sub = prog.start(f"matrix:{metric}", f"{disp}: distances between {len(data.segs)} segments")
            dmat = segment_distances(data.segs, metric, device=device, memory_budget_mb=config.memory_budget_mb,
                                     progress=sub, cancel=cancel, features=config.features)
        prog.end(f"matrix:{metric}")
        prog.start(f"knn:{metric}", f"k-NN on {disp}")
        knn += list(runner.knn(metric, dmat, disp, note))
        prog.end(f"knn:{metric}")
        del dmat
    return [m for m in knn if m.kind == "knn"] + [m for m in knn if m.kind == "knn-cv"]


def _checkpoint_methods(runner: _Runner, library: Library, data: SegmentData, config: EvaluateConfig,
                        encoders: list, prog: _Progress, cancel: CancelFn | None, warns: list[str],
                        encoder_info: dict, fingerprint: str) -> list[_Method]:
    """Logistic regression on each given checkpoint's embeddings; their overlap and convergence
    warnings go into ``warns``, their descriptions into ``encoder_info["checkpoints"]``."""
    sub = prog.start("embed", f"embedding {len(data.segs)} segments with {len(encoders)} checkpoints")
    infos, methods = [], []
    per_loss: dict[str, int] = {}
    for enc in encoders:
        per_loss[_primary_loss(enc.loss) or enc.name] = per_loss.get(_primary_loss(enc.loss) or enc.name, 0) + 1
    used = set()
    feats: dict[str, np.ndarray] = {}
    for j, enc in enumerate(encoders):
        info, w = _checkpoint_info(enc, data, fingerprint)
        warns += w
        infos.append(info)
        key = info["primary_loss"] or enc.name
        name = f"logreg:ae-{key}" if per_loss[key] == 1 else f"logreg:ae-{key}-{enc.name}"
        while name in used:
            name += f"-{j + 1}"
        used.add(name)
        conv = info["convergence"]
        if conv["best_at_last_epoch"]:
            warns.append(not_converged_warning(f"{name} checkpoint {Path(enc.path).name}", conv["best_epoch"],
                                               conv["last_epoch"], conv["validated"]))
        feats[name] = embed_segments(enc, library, data, config, cancel)
        sub(j + 1, len(encoders))
        methods.append(_Method(name, "logreg-ae", f"ae-{key}",
                               f"logistic regression on the embeddings of {Path(enc.path).name} "
                               f"(loss {json.dumps(enc.loss)}), C by inner CV; clip = mean probability",
                               loss=info["primary_loss"], encoder=info))
    prog.end("embed")
    encoder_info["checkpoints"] = infos
    for j, m in enumerate(methods):
        prog.start(f"logreg:{j}", f"{m.name}: logistic regression")
        runner.logreg(m, lambda i, x=feats.pop(m.name): x)
        prog.end(f"logreg:{j}")
    return methods


def _train_config_methods(runner: _Runner, library: Library, data: SegmentData, config: EvaluateConfig, folds,
                          losses: list[str], prog: _Progress, cancel: CancelFn | None, log: LogFn | None,
                          warns: list[str], encoder_info: dict, keep_encoders) -> list[_Method]:
    """Train one encoder per fold and loss, then logistic regression on each loss's per-fold
    embeddings; the runs are described in ``encoder_info``."""
    workdir = Path(tempfile.mkdtemp(prefix="perceptlab-evaluate-"))
    try:
        feats, records, base = _train_fold_encoders(library, data, config, folds, losses, workdir, prog,
                                                    cancel, log, keep_encoders)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for r in records:
        if r["best_at_last_epoch"]:
            warns.append(not_converged_warning(f"{r['loss']} fold {r['fold']}", r["best_epoch"], r["epochs"],
                                               r["validated"]))
    encoder_info.update({
        "train_config": str(Path(config.train_config).expanduser().resolve()),
        "overrides": list(config.train_overrides),
        "resolved_config": base.to_dict(),
        "subset": "each fold's encoders were trained on a temporary library holding only that fold's "
                  "training clips (rows and cached features copied); its own validation split comes "
                  "from those clips",
        "runs": records,
        "kept": str(Path(keep_encoders).expanduser().resolve()) if keep_encoders is not None else None,
    })
    methods = []
    for j, loss in enumerate(losses):
        m = _Method(f"logreg:ae-{loss}", "logreg-ae", f"ae-{loss}",
                    f"logistic regression on embeddings of an autoencoder trained per fold with the "
                    f"{loss} loss ({Path(config.train_config).name}, loss overridden), C by inner CV; "
                    f"clip = mean probability", loss=loss)
        prog.start(f"logreg:{j}", f"{m.name}: logistic regression")
        runner.logreg(m, lambda i, xs=feats[loss]: xs[i])
        prog.end(f"logreg:{j}")
        methods.append(m)
    return methods


def _baseline_methods(runner: _Runner, data: SegmentData, prog: _Progress) -> list[_Method]:
    """Logistic regression on log-mel statistics, and the majority class."""
    prog.start("baselines", "baselines: logistic regression on log-mel statistics, majority class")
    lm = logmel_features(data.segs)
    methods = [runner.logreg(_Method(
        "logreg:logmel", "logreg-logmel", "logmel",
        "logistic regression on mean + std over time of each mel band, C by inner CV; clip = mean probability"),
        lambda i: lm), runner.majority()]
    prog.end("baselines")
    return methods
