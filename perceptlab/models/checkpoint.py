"""Self-describing checkpoints, written atomically and loaded safely.

A checkpoint is a plain dict of tensors and primitive containers (dict, list,
tuple, str, int, float, bool, None), so it loads with
``torch.load(weights_only=True)``: a file whose pickle would construct any
other object -- and so could run code while loading -- is refused with a
:class:`CheckpointError` naming the file, before anything in it runs.

Layout (``format_version`` 1)::

    format           "perceptlab-autoencoder"
    format_version   1
    kind             "best" (weights for use) | "last" (everything to resume)
    model            {"class": "AutoEncoder", "args": ModelConfig dict,
                      "state_dict": {name: tensor}}
    model_hash       16 hex digits: hash of the weights and embedding_stats
                     (:func:`model_key`; keys the library's embeddings)
    feature_config   FeatureConfig dict (the log-mel the model expects)
    train_config     the full training config (TrainConfig dict)
    data             {"library", "fingerprint" (Library.fingerprint()),
                      "selection_hash", "train_hashes", "val_hashes",
                      "n_train_clips", "n_val_clips", "n_train", "n_val"}
    progress         {"epoch" (completed), "epoch_step" (steps done in the
                      current epoch), "global_step", "epoch_loss_sum",
                      "epoch_loss_count", "wall_s"}
    metrics          {"best_val_loss", "best_epoch", "history": [per epoch]}
    versions         {"perceptlab", "torch", "numpy", "python"}
    created          unix time
    run_id           the library's runs row, or None
    command          the command line of the (latest) training process
    hardware         {"device", "world_size", "name"}
    embedding_stats  ("best" only) {"mean": (D,), "std": (D,), "n"}: patch
                     embedding statistics over the training patches, used
                     to standardise embeddings
    -- "last" only --
    optimizer        AdamW state_dict
    scheduler        LambdaLR state_dict
    scaler           GradScaler state_dict or None
    rng              {"torch": uint8 tensor, "cuda": [uint8 tensors],
                      "numpy": {...}, "python": {...}} (tensors, not arrays)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perceptlab.atomic import atomic_write
from perceptlab.versions import package_versions

FORMAT = "perceptlab-autoencoder"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file cannot be used; the message names the file and why."""


# --------------------------------------------------------------------------
# hashing, versions, RNG state
# --------------------------------------------------------------------------


def weights_hash(state_dict: dict) -> str:
    """16-hex-digit SHA-256 of the weights (names, dtypes, shapes, bytes).

    Independent of where and when the file was written, so the same weights
    always key the same embeddings.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}\t{t.dtype}\t{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def model_key(ckpt: dict) -> str:
    """The hash that keys a checkpoint's embeddings: weights plus embedding statistics.

    Two files with the same weights but different ``embedding_stats`` give
    different vectors, so the statistics are part of the key.
    """
    sd = dict(ckpt["model"]["state_dict"])
    stats = ckpt.get("embedding_stats")
    if stats is not None:
        sd["__embedding_stats.mean"] = stats["mean"]
        sd["__embedding_stats.std"] = stats["std"]
    return weights_hash(sd)


def rng_state() -> dict:
    """Every RNG the training process uses, as tensors and primitives."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    return out


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


# --------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError unless ``obj`` is tensors and primitive containers only.

    Exactly what ``torch.load(weights_only=True)`` accepts, so a file that
    passes here can always be loaded safely (str subclasses such as
    ``torch.__version__`` are refused by the loader, so they are refused here).
    """
    if isinstance(obj, dict):
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not str or int")
            check_plain(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif type(obj) not in _PLAIN and not isinstance(obj, torch.Tensor):
        raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__name__} cannot go into a "
                        "weights-only checkpoint; convert it to a tensor or a primitive")


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to ``path`` atomically.

    The dict is written to a temporary file in the same folder, flushed to
    disk, then renamed over ``path``: a crash or kill at any moment leaves
    either the old file or the new one, never a partial file.
    """
    check_plain(ckpt)
    return atomic_write(path, lambda fh: torch.save(ckpt, fh))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a perceptlab checkpoint with ``weights_only=True``.

    Raises
    ------
    CheckpointError
        Missing or unreadable file, a pickle that would build arbitrary
        Python objects (refused before any of it runs), or a file that is
        not a perceptlab autoencoder checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # A raw (non-torch.save) pickle triggers a protocol warning before
            # it is refused; the refusal below is the message that matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in lines if "GLOBAL" in ln), "") or _globals_in_raw_pickle(path)
        if detail:
            raise CheckpointError(
                f"{path}: refused to load: the file is not a plain checkpoint; its pickle asks to build "
                f"Python objects other than tensors and plain containers, which could run code "
                f"({detail}). Only load checkpoints you trust."
            ) from None
        why = next((ln.strip() for ln in lines if "Unsupported" in ln), lines[-1] if lines else "")
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged or not a torch file: {why})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a perceptlab autoencoder checkpoint (no '{FORMAT}' format tag)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this perceptlab understands "
            f"({FORMAT_VERSION}); upgrade perceptlab"
        )
    for key in ("model", "feature_config", "train_config"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return ckpt


def _globals_in_raw_pickle(path: Path, limit: int = 1 << 20) -> str:
    """Name the first global a raw pickle file would import, without executing it ("" if none)."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            data = fh.read(limit)
        names, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name in ("INST", "OBJ", "REDUCE", "NEWOBJ") and not names:
                names.append(op.name)
            if names:
                return f"GLOBAL {names[0]}"
    except Exception:
        return ""
    return ""


def inference_view(ckpt: dict) -> dict:
    """The checkpoint without optimizer, scheduler, scaler and RNG state (a "best" file)."""
    drop = {"optimizer", "scheduler", "scaler", "rng"}
    out = {k: v for k, v in ckpt.items() if k not in drop}
    out["kind"] = "best"
    return out


def new_checkpoint(model_config: dict, state_dict: dict, feature_config: dict, train_config: dict,
                   **rest) -> dict:
    """The common skeleton of a checkpoint (see the module docstring)."""
    sd = {k: v.detach().to("cpu").clone() for k, v in state_dict.items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": rest.pop("kind", "last"),
        "model": {"class": "AutoEncoder", "args": model_config, "state_dict": sd},
        "model_hash": weights_hash(sd),
        "feature_config": feature_config,
        "train_config": train_config,
        "versions": package_versions(),
        "created": time.time(),
        **rest,
    }
