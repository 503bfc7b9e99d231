"""The genre-classification protocol of Namgyal et al. (2024), for any labelled library.

The paper's claim: an autoencoder trained with a PERCEPTUAL loss (NLPD or
MS-SSIM on log-mel images) gives features on which logistic regression
classifies genre better than (a) k-nearest-neighbours on the same metric
used directly as a distance, and (b) the features of the same autoencoder
trained with MSE. :func:`run_evaluation` tests it on the user's own clips
and says how sure the answer is.

Protocol
--------
* **Clips.** Every good, labelled clip of the library (the library's failed
  imports are listed in the report, never silently dropped). Identical
  audio (same content hash) counts once; the same audio under two labels is
  left out. Classes with fewer clips than folds are left out with a warning.
* **Segments.** Each clip's cached log-mel image is cut with
  :func:`perceptlab.audio.features.windows` into ``segment_frames``-frame
  windows every ``segment_hop`` frames (last window aligned to the end; a
  clip shorter than one window gives one looped window). Optionally at most
  ``max_segments_per_clip`` evenly spaced windows are kept.
* **Folds.** ``StratifiedGroupKFold`` over segments, grouped by clip: all
  segments of a recording fall on one side of every split. Everything that
  is fitted or selected -- k, C, the scaler, and in ``--train-config`` mode
  the autoencoders themselves -- sees only the fold's training clips; the
  inner cross-validation that picks k and C is grouped the same way.
* **Methods** (each predicts per segment, then per clip):

  - ``knn:<metric>``: k-NN (fixed k) on the metric's precomputed distance
    matrix between segments; ``knn-cv:<metric>``: k chosen by inner CV.
    A segment takes the majority label of its k nearest training segments
    (ties: the tied class with the smallest summed distance). A CLIP takes
    the majority vote of its segments (ties: the tied class whose voting
    segments have the smallest summed neighbour distance). The baselines
    ``logmel-stats`` and ``mfcc-stats`` are among the default metrics; their
    statistics are z-scored with the mean and std of the TRAINING segments
    of each fold (and of each inner split), never of the test segments, as
    the scaler of logistic regression is.
  - ``logreg:ae-<loss>``: ``StandardScaler`` + ``LogisticRegression``, C by
    inner CV, on the encoder embedding of each segment; a clip takes the
    class with the highest MEAN segment probability.
  - ``logreg:logmel``: the same on mean + std over time of each mel band.
  - ``majority``: the most frequent class of the training clips.

  Model selection (k, C) maximises the CLIP-level weighted F1 averaged over
  the inner folds; ties go to the smaller k / the smaller C.
* **Scores.** Accuracy, weighted F1 and macro F1 per fold at clip level
  (the headline) and at segment level; mean +- sample std over folds, the
  pooled out-of-fold score with a bootstrap CI over clips, and confusion
  matrices (pooled over folds).
* **Uncertainty.** Every pair of methods is compared on clip-level weighted
  F1: per-fold differences (mean, std, paired t-test, exact sign-flip test)
  and a paired bootstrap CI of the pooled difference, resampling clips. The
  verdict on the claim uses the bootstrap CI: a part of the claim is
  "supported" when the whole CI is above 0, "contradicted" when below.
* **Headline.** Before the verdict the report names the best method overall
  (highest POOLED clip-level weighted F1) and the bootstrap CI of its
  difference from the best perceptual-encoder method (``logreg:ae-nlpd`` /
  ``logreg:ae-msssim``). When a baseline (``logreg:logmel``, k-NN on
  ``logmel-stats`` / ``mfcc-stats``, ``majority``) beats every perceptual
  encoder with the whole CI above 0, the headline says that first, and so
  does the claim's summary: a partly supported claim never hides it.

Encoders come from ``--checkpoints`` (the user declares them trained on
other data; the report WARNS, with the count, when a checkpoint's recorded
training or validation clips -- ``data.train_hashes`` / ``val_hashes``, and
the file lists ``data.train_files`` / ``val_files`` when it has them -- are
among the evaluated clips) or from ``--train-config``: one autoencoder per
fold and loss, trained with the training engine on a temporary library that
holds only the fold's training clips (rows and cached features copied
through the :class:`~perceptlab.library.store.Library` API), so the encoder
never saw the fold's test clips (checked after each run from the
checkpoint's recorded split). Each fold's ``best.pt`` and ``last.pt`` are
kept (``run_evaluation(..., keep_encoders=DIR)``: ``DIR/fold-<k>-<loss>/``)
and listed in the report. Either way, an encoder whose best validation loss
came at its last epoch is reported as not converged.

Matching a recorded training file to a library clip: a clip's
``content_hash`` is the blake2b-128 of the file's bytes (32 hex digits;
:func:`perceptlab.library.store.file_hash`), not a SHA-256. A recorded
``content_hash`` (or a bare 32-digit hash) is matched to it directly; a
recorded ``sha256`` (or a bare 64-digit hash) is matched to the SHA-256 of
the clip's file as it is on disk now, computed only for that, and only when
the file still has the content that was imported (its blake2b equals the
clip's). A clip whose file cannot be read so is matched by file name and
size (name alone when the entry records no size) and counted apart, as
"matched by name".

Modules
-------
- :mod:`.config`: :class:`EvaluateConfig` and the protocol's constants.
- :mod:`.data`: clips -> segments, folds grouped by clip.
- :mod:`.distances`: segment distances for k-NN (metrics, per-split baselines).
- :mod:`.classifiers`: k-NN, logistic regression, majority; segment -> clip rules.
- :mod:`.checkpoints`: what a given checkpoint records: loss, overlap, convergence.
- :mod:`.encoders`: segment embeddings; per-fold training (``--train-config``).
- :mod:`.run`: :func:`run_evaluation`, one named step at a time.
- :mod:`.progress`: the run's weighted stages on one progress scale, stage timings, cancel checks.
- :mod:`.assemble`: scores, ranks, paired comparisons -> the report dict.
- :mod:`.claim`: the headline and the verdict on the claim, in words.
- :mod:`.report`: :class:`EvaluationReport`, the report dict and views of it.
- :mod:`.markdown`: ``report.md`` and the terminal summary.
- :mod:`.chart`: the weighted-F1 bar chart (matplotlib, optional).
- :mod:`.files`: writing a report folder.

The ``perceptlab evaluate`` subcommand is :mod:`perceptlab.cli.evaluate`.
"""

from __future__ import annotations

from .assemble import compare_pairs
from .checkpoints import not_converged_warning, recorded_files
from .chart import ChartUnavailable, chart_rows, write_chart
from .claim import claim_pairs, is_baseline_method
from .classifiers import aggregate_proba, aggregate_votes, knn_sorted, knn_vote, logmel_features
from .config import (
    CLAIM,
    FORMAT,
    FORMAT_VERSION,
    PERCEPTUAL_LOSSES,
    TRAIN_LOSSES,
    EvaluateConfig,
)
from .data import SegmentData, load_segments, make_folds
from .distances import BaselineDistances, cosine_distances, segment_distances
from .encoders import embed_segments, subset_library
from .files import write_report
from .markdown import render_markdown, render_text
from .report import EvaluationReport
from .run import run_evaluation

__all__ = [
    "CLAIM", "FORMAT", "FORMAT_VERSION", "PERCEPTUAL_LOSSES", "TRAIN_LOSSES",
    "BaselineDistances", "ChartUnavailable", "EvaluateConfig", "EvaluationReport", "SegmentData",
    "aggregate_proba", "aggregate_votes", "chart_rows", "claim_pairs", "compare_pairs", "cosine_distances", "embed_segments",
    "is_baseline_method", "knn_sorted", "knn_vote", "load_segments", "logmel_features", "make_folds",
    "not_converged_warning", "recorded_files", "render_markdown", "render_text", "run_evaluation",
    "segment_distances", "subset_library", "write_chart", "write_report",
]
