"""Read a trained encoder's embedding from other maps, without retraining.

A patch embedding pools encoder maps over time (``ModelConfig.embed_from``);
which maps is a choice made after training as much as before: the weights
do not change, only the vector read from them and the statistics it is
standardised with. :func:`repool_checkpoint` writes a copy of a ``best.pt``
whose ``embed_from`` is changed and whose ``embedding_stats`` are recomputed
over the SAME training patches the run used (its recorded library, split and
patch grid). The copy records where it came from under ``repooled_from``,
and gets its own model hash (its embeddings differ). ``model.args`` is what
the copy embeds with; ``train_config`` still records how the weights were
trained (a view-agreement term, if the run had one, shaped the ORIGINAL
maps, not the ones the copy reads).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from perceptlab.audio.features import FeatureConfig
from perceptlab.models.autoencoder import AutoEncoder, ModelConfig
from perceptlab.models.checkpoint import CheckpointError, load_checkpoint, model_key, save_checkpoint

from .data import embedding_stats, load_training_data


def repool_checkpoint(src: "str | os.PathLike", dst: "str | os.PathLike", embed_from: tuple[str, ...],
                      library: "str | os.PathLike | None" = None, device: str = "cpu",
                      training_data=None) -> dict:
    """Copy ``src`` to ``dst`` with another ``embed_from``; returns the new checkpoint.

    Parameters
    ----------
    library : path, optional
        The training library (default: the one the checkpoint records). Its
        clips must still be the ones the run trained on.
    training_data : TrainingData, optional
        Already loaded (:func:`load_training_data` with the run's settings),
        to re-pool several checkpoints of runs on the same data without
        loading it again; checked against the run's selection like a library.

    Raises
    ------
    CheckpointError
        ``src`` is not a ``best.pt``, or the library no longer holds the
        run's training clips.
    ValueError
        ``embed_from`` names maps the model does not have.
    """
    ck = load_checkpoint(src)
    if ck.get("kind") != "best":
        raise CheckpointError(f"{src}: only a best.pt can be re-pooled (this is a {ck.get('kind')!r} checkpoint)")
    args = dict(ModelConfig.from_dict(dict(ck["model"]["args"])).to_dict(), embed_from=list(embed_from))
    try:
        config = ModelConfig.from_dict(args)
    except ValueError as exc:
        raise ValueError(f"{src}: cannot embed from {list(embed_from)}: {exc}"
                         + (" (this checkpoint uses global pooling, which reads the latent map only)"
                            if args["pooling"] == "global" else "")) from None
    model = AutoEncoder(config)
    model.load_state_dict(ck["model"]["state_dict"])
    tc, data = ck["train_config"], ck["data"]
    d = tc["data"]
    features = FeatureConfig.from_dict(dict(ck["feature_config"]))
    td = training_data or load_training_data(
        library or data["library"], labels=list(d["labels"]), val_fraction=d["val_fraction"],
        split_seed=d["split_seed"], patch=d["patch_frames"], hop=d["patch_hop"],
        min_frames=d["min_clip_frames"] or max(1, d["patch_frames"] // 2), features=features)
    if td.train.patch != d["patch_frames"]:
        raise CheckpointError(f"{src}: the training data given are cut into {td.train.patch}-frame patches, "
                              f"the run used {d['patch_frames']}")
    if td.selection_hash != data["selection_hash"]:
        raise CheckpointError(
            f"{src}: the library {td.library} no longer holds the clips this run trained on (selection "
            f"{td.selection_hash}, recorded {data['selection_hash']}); give the training library")
    out = dict(ck)
    out["model"] = dict(ck["model"], args=config.to_dict())
    out["embedding_stats"] = embedding_stats(model.to(device), td.train, int(tc.get("batch_size", 32)),
                                             torch.device(device))
    out["repooled_from"] = {"model_hash": ck["model_hash"],
                            "embed_from": list(ModelConfig.from_dict(dict(ck["model"]["args"])).embed_from)}
    out["model_hash"] = model_key(out)
    save_checkpoint(out, Path(dst))
    return out
