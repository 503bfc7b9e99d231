"""Clip embeddings in the library, and the ``embedding:<name>`` metrics.

``perceptlab embed`` runs :func:`embed_library`: every clip's embedding is
computed with an encoder checkpoint and stored in the library keyed by
(content hash, model hash), where the model hash is the hash of the weights
(and of the embedding statistics saved with them; see
:func:`embedding_key` for non-default pooling).
The model is recorded in the library's model table under a name, and the
metric ``embedding:<name>`` -- cosine distance between clip embeddings by
default, Euclidean on request -- joins the metric registry.

The metric works on VECTORS (``input_kind="vector"``): callers fetch the
(N, D) matrix of the clips they compare with :func:`clip_vectors` (or
:func:`vectors_for_metric` given only the metric name) and hand it to
``distance_matrix`` / ``build_index`` / ``nearest`` like spectrograms for the
image metrics. Clips outside the library are embedded on the fly with
:func:`perceptlab.models.encoder.embed_clip_vectors`.

Another process (the GUI, the ``distance`` command) makes the stored models
visible with :func:`register_library_embeddings` after opening a library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from perceptlab.library.store import Clip, Library
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

from .encoder import POOLS, Encoder

DISTANCES = ("cosine", "euclidean")
PREFIX = "embedding:"


@dataclass
class EmbedSummary:
    """What :func:`embed_library` did."""

    name: str
    metric: str
    model_hash: str
    checkpoint: str
    dim: int
    computed: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    #: The name this model was stored under before, when ``name`` renamed it.
    renamed_from: str | None = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "renamed_from": self.renamed_from,
            "metric": self.metric,
            "model_hash": self.model_hash,
            "checkpoint": self.checkpoint,
            "dim": self.dim,
            "computed": self.computed,
            "reused": self.reused,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
        }

    def text(self) -> str:
        lines = [
            f"{self.metric}: {self.computed} clips embedded, {self.reused} already stored, "
            f"{len(self.failed)} failed (dim {self.dim}, model {self.model_hash})"
        ]
        if self.renamed_from:
            lines.append(
                f"  note: this model was stored as {PREFIX}{self.renamed_from}; that metric is now "
                f"{self.metric} (one name per model: embed it under the old name to rename it back)"
            )
        lines += [f"  failed: {p}: {r}" for p, r in self.failed]
        return "\n".join(lines)


def load_checked(checkpoint: "str | os.PathLike", expected_key: str, pool: str, hop: int | None,
                 metric: str, device=None) -> Encoder:
    """Load a registered model's checkpoint, refusing one whose weights changed.

    The embeddings stored for ``metric`` were computed by the weights whose
    hash is ``expected_key``. A checkpoint file replaced since (retrained,
    overwritten by another run, damaged) would silently give other
    distances, so it is refused.

    Raises
    ------
    ValueError
        Naming the metric and the checkpoint, and saying how to fix it.
    """
    from .checkpoint import CheckpointError

    ckpt = Path(checkpoint)
    try:
        enc = Encoder.load(ckpt, device)
    except CheckpointError as exc:
        raise ValueError(f"{metric}: its checkpoint cannot be used ({exc}); restore the file or run "
                         f"`perceptlab embed --checkpoint NEW.pt` under a new name") from None
    if embedding_key(enc, pool, hop) != expected_key:
        raise ValueError(
            f"{metric}: the checkpoint {ckpt} now holds different weights than the model stored in the "
            f"library (model hash {expected_key.split(':')[0]}, file {enc.model_hash}); restore the file, "
            f"or run `perceptlab embed --checkpoint {ckpt}` to store the new model"
        )
    return enc


def _metric_for(model: dict):
    from perceptlab.metrics.embedding import embedding_metric

    info = model["info"]
    distance = info.get("distance", "cosine")
    return embedding_metric(
        model["name"],
        None,
        distance=distance,
        display_name=f"Embedding {model['name']} ({distance})",
        description=(
            f"{distance.capitalize()} distance between clip embeddings, each dimension z-scored over the "
            f"library (as the baselines are), of the autoencoder "
            f"{model['name']} (trained with loss {info.get('loss')}; "
            + (f"each mel row's mean and spread over time in {' + '.join(info.get('embed_from') or ['latent'])}"
               if info.get("patch_pooling") == "time" else "the latent map's mean")
            + f", averaged over {info.get('patch_frames')}-frame patches"
            + (", with their standard deviation over patches" if info.get("pool") == "meanstd" else "")
            + ")."
        ),
        params={
            "model_hash": model["model_hash"],
            "checkpoint": model["path"],
            "dim": info.get("dim"),
            "pool": info.get("pool"),
            "hop": info.get("hop"),
            "loss": info.get("loss"),
        },
    )


def register_library_embeddings(library: Library) -> list:
    """Register ``embedding:<name>`` for every model stored in ``library``.

    The newest model wins when two share a name. Returns the registered
    :class:`~perceptlab.metrics.registry.Metric` objects (``input_kind ==
    "vector"``; fetch their inputs with :func:`vectors_for_metric`).
    """
    from perceptlab.metrics.registry import register_metric

    seen, out = set(), []
    for model in library.models():  # newest first
        if model["name"] in seen:
            continue
        seen.add(model["name"])
        out.append(register_metric(_metric_for(model), replace=True))
    return out


def embedding_key(enc: Encoder, pool: str = "mean", hop: int | None = None) -> str:
    """The library key of one encoder's clip embeddings.

    The checkpoint's model hash (weights + embedding statistics) for the
    default clip embedding (mean pooling, half-patch hop); other pooling or
    hops give other vectors, so they get ``<hash>:<pool>:<hop>``.
    """
    default_hop = max(1, enc.patch_frames // 2)
    hop = hop or default_hop
    if pool == "mean" and hop == default_hop:
        return enc.model_hash
    return f"{enc.model_hash}:{pool}:{hop}"


def find_model(library: Library, key: str) -> dict:
    """A model row by name, ``embedding:<name>`` or model hash (newest first).

    Raises
    ------
    ValueError
        No such model; the message lists the stored names.
    """
    name = key[len(PREFIX):] if key.startswith(PREFIX) else key
    models = library.models()
    for m in models:
        if m["name"] == name or m["model_hash"] == name:
            return m
    known = ", ".join(sorted({m["name"] for m in models})) or "(none; run `perceptlab embed`)"
    raise ValueError(f"{library.path}: no embedding model {key!r}; stored models: {known}")


def embed_library(
    library: Library,
    checkpoint: "str | os.PathLike | Encoder",
    *,
    name: str | None = None,
    clips: Sequence[Clip] | None = None,
    pool: str = "mean",
    hop: int | None = None,
    distance: str = "cosine",
    force: bool = False,
    device=None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> EmbedSummary:
    """Embed the library's clips with an encoder checkpoint and store the vectors.

    Parameters
    ----------
    library : Library
    checkpoint : path or Encoder
    name : str, optional
        Model name; the metric is ``embedding:<name>``. Default: the
        checkpoint's run name.
    clips : sequence of Clip, optional
        Default: every good clip.
    pool : {"mean", "meanstd"}
        Clip embedding = mean of patch latents, or mean and std concatenated.
    hop : int, optional
        Patch hop in frames (default half a patch).
    distance : {"cosine", "euclidean"}
        Distance of the registered metric.
    force : bool
        Recompute vectors already stored for this model.

    Returns
    -------
    EmbedSummary

    Notes
    -----
    Vectors are committed every few dozen clips, so a cancelled run keeps
    what it did and a rerun finishes the job.
    """
    from perceptlab.audio.decode import AudioError
    from perceptlab.library.features import clip_image
    from perceptlab.metrics.registry import register_metric

    if pool not in POOLS:
        raise ValueError(f"unknown pooling {pool!r}; use one of {POOLS}")
    if distance not in DISTANCES:
        raise ValueError(f"unknown embedding distance {distance!r}; use one of {DISTANCES}")
    enc = checkpoint if isinstance(checkpoint, Encoder) else Encoder.load(checkpoint, device)
    name = name or enc.name
    if not name or name != name.strip() or PREFIX in name:
        raise ValueError(f"bad model name {name!r}")
    hop = hop or max(1, enc.patch_frames // 2)
    key = embedding_key(enc, pool, hop)
    info = dict(enc.info(pool, hop), distance=distance, embedding_key=key)
    ckpt_path = str(enc.path) if enc.path else ""
    previous = next((m["name"] for m in library.models() if m["model_hash"] == key), None)
    library.register_model(key, name, ckpt_path, info)
    summary = EmbedSummary(name, PREFIX + name, key, ckpt_path, enc.dim(pool),
                           renamed_from=previous if previous not in (None, name) else None)

    clips = list(library.clips() if clips is None else clips)
    have = {} if force else library.get_embeddings(key)
    todo, seen = [], set()
    for c in clips:
        if not c.ok or c.content_hash in seen:
            continue
        seen.add(c.content_hash)
        if c.content_hash in have and have[c.content_hash].shape[0] == summary.dim:
            summary.reused += 1
        else:
            todo.append(c)
    pending: dict[str, np.ndarray] = {}
    report(progress, 0, len(todo))
    try:
        for i, c in enumerate(todo):
            check_cancel(cancel)
            try:
                image = clip_image(library, c, enc.feature_config)
            except AudioError as exc:
                summary.failed.append((c.path, str(exc)))
                continue
            pending[c.content_hash] = enc.embed_image(image, hop, pool)
            summary.computed += 1
            if len(pending) >= 32:
                library.put_embeddings(key, pending)
                pending = {}
            report(progress, i + 1, len(todo))
    finally:
        if pending:
            library.put_embeddings(key, pending)
    model = {"model_hash": key, "name": name, "path": ckpt_path, "info": info}
    register_metric(_metric_for(model), replace=True)
    return summary


def clip_vectors(
    library: Library,
    model: "str | dict",
    clips: Sequence[Clip],
    *,
    compute_missing: bool = True,
    device=None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> np.ndarray:
    """The (N, D) embedding matrix of ``clips`` for one stored model.

    Parameters
    ----------
    model : str or dict
        Name, ``embedding:<name>``, embedding key (model hash), or a row of
        ``library.models()``.
    clips : sequence of Clip
        In the order wanted (duplicates allowed).
    compute_missing : bool
        Embed clips that have no stored vector yet with the model's
        checkpoint (and store them); False raises instead.

    Raises
    ------
    ValueError
        Unknown model, or vectors missing and not computable (the message
        says which clips and how to fix it).
    """
    row = model if isinstance(model, dict) else find_model(library, model)
    stored = library.get_embeddings(row["model_hash"])
    dim = row["info"].get("dim")
    missing = [c for c in clips if c.content_hash not in stored]
    if missing:
        ckpt = Path(row["path"]) if row["path"] else None
        if not compute_missing or ckpt is None or not ckpt.is_file():
            why = (f"its checkpoint {row['path']} is gone" if compute_missing else "compute_missing is off")
            raise ValueError(
                f"{PREFIX}{row['name']}: {len(missing)} clips have no stored embedding "
                f"(e.g. {missing[0].name}) and {why}; run `perceptlab embed --checkpoint CKPT "
                f"--name {row['name']}`"
            )
        enc = load_checked(ckpt, row["model_hash"], row["info"].get("pool", "mean"), row["info"].get("hop"),
                           PREFIX + row["name"], device)
        embed_library(
            library, enc, name=row["name"], clips=missing, pool=row["info"].get("pool", "mean"),
            hop=row["info"].get("hop"), distance=row["info"].get("distance", "cosine"),
            progress=progress, cancel=cancel,
        )
        stored = library.get_embeddings(row["model_hash"])
        still = [c for c in clips if c.content_hash not in stored]
        if still:
            raise ValueError(f"{PREFIX}{row['name']}: could not embed {still[0].path} (see `perceptlab embed`)")
    if not clips:
        return np.zeros((0, int(dim or 0)), dtype=np.float32)
    return np.stack([stored[c.content_hash] for c in clips]).astype(np.float32)


def vectors_for_metric(library: Library, metric_name: str, clips: Sequence[Clip], **kwargs) -> np.ndarray:
    """:func:`clip_vectors` for the metric ``embedding:<name>``."""
    if not metric_name.startswith(PREFIX):
        raise ValueError(f"{metric_name!r} is not an embedding metric (they are named '{PREFIX}<name>')")
    return clip_vectors(library, metric_name, clips, **kwargs)


def library_vectors(library: Library, metric_name: str, clips: Sequence[Clip], **kwargs) -> np.ndarray:
    """(N, D) vectors of library clips for ``embedding:<name>`` (what the vector metric compares)."""
    return vectors_for_metric(library, metric_name, clips, **kwargs)


def query_vector(library: Library | None, metric_name: str, query, config=None) -> np.ndarray:
    """The (D,) vector of one query for ``embedding:<name>``.

    Parameters
    ----------
    library : Library or None
        Where the model and stored vectors live; None uses the checkpoint
        recorded in the registered metric's params.
    query : object
        Has ``.path`` and ``.clip`` (a :class:`Clip` or None), like
        :class:`perceptlab.analysis.similarity.Query`. A library clip uses its
        stored vector; any other file is decoded and embedded on the fly.
    config : FeatureConfig, optional
        Ignored: the encoder's own feature config is always used (the image
        must match what the model was trained on).
    """
    from perceptlab.library.features import clip_image, file_image
    from perceptlab.metrics.registry import get_metric

    clip = getattr(query, "clip", None)
    if library is not None:
        row = find_model(library, metric_name)
        if clip is not None:
            return clip_vectors(library, row, [clip])[0]
        ckpt, pool, hop = row["path"], row["info"].get("pool", "mean"), row["info"].get("hop")
        key = row["model_hash"]
    else:
        params = get_metric(metric_name if metric_name.startswith(PREFIX) else PREFIX + metric_name).params
        ckpt, pool, hop = params.get("checkpoint"), params.get("pool") or "mean", params.get("hop")
        key = params.get("model_hash")
    if not ckpt or not Path(ckpt).is_file():
        raise ValueError(f"{metric_name}: its checkpoint {ckpt!r} is gone; cannot embed {query.path}")
    enc = load_checked(ckpt, key, pool, hop, metric_name)
    if clip is not None and library is not None:
        image = clip_image(library, clip, enc.feature_config)
    else:
        image = file_image(query.path, enc.feature_config)
    return enc.embed_image(image, hop, pool)


_EMBEDDING_STATS: dict = {}
#: Below this many distinct embedded clips, encoder embeddings are compared as
#: the checkpoint standardised them (z-scores over a handful of clips would
#: mostly measure those clips).
EMBEDDING_ZSCORE_MIN_CLIPS = 8


def embedding_standardisation(library: Library, metric_name: str):
    """The z-score statistics of an encoder's clip embeddings over every good clip of ``library``.

    Encoder embeddings are compared like the baselines: each dimension
    z-scored over the library being browsed, then cosine (or Euclidean), so
    that no dimension's offset or spread over THESE clips dominates. None
    for a library of fewer than :data:`EMBEDDING_ZSCORE_MIN_CLIPS` distinct clips (the raw embeddings, which
    the checkpoint already standardised with its training statistics, are
    used then). The statistics are over the clips whose embeddings are
    stored (nothing is embedded, or written, to compute them). Kept per
    process for the library's current content.
    """
    from perceptlab.metrics.baselines import standardise

    model_hash = find_model(library, metric_name)["model_hash"]
    key = (str(library.path), library.fingerprint(), model_hash, metric_name)
    if key not in _EMBEDDING_STATS:
        stored = library.get_embeddings(model_hash)
        have = {c.content_hash for c in library.clips() if c.ok and c.content_hash in stored}
        vectors = [stored[h] for h in sorted(have)]
        stats = (standardise(np.stack(vectors))[1]
                 if len(vectors) >= EMBEDDING_ZSCORE_MIN_CLIPS and len({v.shape for v in vectors}) == 1 else None)
        for old in [k for k in _EMBEDDING_STATS if k[0] == key[0] and k[3] == key[3]]:
            del _EMBEDDING_STATS[old]
        _EMBEDDING_STATS[key] = stats
    return _EMBEDDING_STATS[key]


def standardised_embeddings(library: Library | None, metric_name: str, vectors: np.ndarray) -> np.ndarray:
    """``vectors`` z-scored with :func:`embedding_standardisation` (as they are when there is none)."""
    from perceptlab.metrics.baselines import apply_standardisation

    stats = embedding_standardisation(library, metric_name) if library is not None else None
    return vectors if stats is None else apply_standardisation(vectors, stats)
