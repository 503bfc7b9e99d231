"""A trained autoencoder loaded for use: patch and clip embeddings.

A clip's embedding is the mean (optionally the mean and standard deviation,
concatenated) of the embeddings of its 128-frame patches, cut with
:func:`perceptlab.audio.features.windows` (last window aligned to the end,
short clips looped), so clips of any length map to one fixed-size vector.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from perceptlab.audio.features import FeatureConfig, windows
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

from .autoencoder import AutoEncoder, ModelConfig
from .checkpoint import CheckpointError, load_checkpoint, model_key

POOLS = ("mean", "meanstd")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Encoder:
    """The encoder half of a trained autoencoder checkpoint.

    Parameters
    ----------
    ckpt : dict
        A checkpoint from :func:`perceptlab.models.checkpoint.load_checkpoint`.
    path : Path, optional
        Where it came from (for messages and the library's model table).
    device : str or torch.device, optional
        Default: CUDA when present, else CPU.
    """

    def __init__(self, ckpt: dict, path: Path | None = None, device=None):
        self.path = Path(path) if path is not None else None
        where = str(self.path) if self.path else "checkpoint"
        try:
            self.model_config = ModelConfig.from_dict(dict(ckpt["model"]["args"]))
            self.feature_config = FeatureConfig.from_dict(dict(ckpt["feature_config"]))
            model = AutoEncoder(self.model_config)
            model.load_state_dict(ckpt["model"]["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{where}: the checkpoint does not describe a usable model ({exc})") from None
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        stats = ckpt.get("embedding_stats")
        if stats is not None:
            self.z_mean = stats["mean"].float().to(self.device)  # (D,)
            self.z_scale = 1.0 / stats["std"].float().clamp_min(1e-6).to(self.device)  # (D,)
            if self.z_mean.shape != (self.model_config.embedding_dim,):
                raise CheckpointError(
                    f"{where}: its embedding statistics have {tuple(self.z_mean.shape)} values but the model's "
                    f"{self.model_config.pooling!r} pooling of {list(self.model_config.embed_from)} gives "
                    f"{self.model_config.embedding_dim}; the file is "
                    "damaged or was edited")
        else:  # an interrupted run's checkpoint: raw latents
            self.z_mean = self.z_scale = None
        self.model_hash = model_key(ckpt)
        tc = ckpt.get("train_config") or {}
        self.train_config = tc
        self.name = str(tc.get("name") or (self.path.stem if self.path else self.model_hash))
        self.loss = tc.get("loss")
        self.metrics = ckpt.get("metrics") or {}
        self.data = ckpt.get("data") or {}
        self.progress = ckpt.get("progress") or {}
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------
    _cache: dict = {}
    _cache_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "Encoder":
        """Load (and cache, keyed by path, size, mtime and device) an encoder checkpoint."""
        path = Path(path).expanduser().resolve()
        try:
            st = path.stat()
        except OSError:
            raise CheckpointError(f"{path}: no such checkpoint file") from None
        dev = pick_device(device)
        key = (str(path), st.st_size, st.st_mtime_ns, str(dev))
        with cls._cache_lock:
            enc = cls._cache.get(key)
        if enc is None:
            enc = cls(load_checkpoint(path), path, dev)
            with cls._cache_lock:
                cls._cache = {k: v for k, v in cls._cache.items() if k[0] != str(path)}
                cls._cache[key] = enc
        return enc

    @property
    def patch_frames(self) -> int:
        return self.model_config.patch_frames

    @property
    def latent_dim(self) -> int:
        """Channels of the latent map."""
        return self.model_config.latent_dim

    @property
    def patch_dim(self) -> int:
        """Length of one patch embedding (see ``ModelConfig.pooling``)."""
        return self.model_config.embedding_dim

    def dim(self, pool: str = "mean") -> int:
        """Length of a clip embedding with this pooling."""
        return self.patch_dim * (2 if pool == "meanstd" else 1)

    # -- embeddings ------------------------------------------------------------
    def embed_patches(self, patches, batch_size: int = 64) -> torch.Tensor:
        """Patch embeddings, standardised with the training set's statistics.

        ``best.pt`` carries the mean and standard deviation of each embedding
        dimension over the training patches; embeddings are returned as
        ``(z - mean) / std`` so that no dimension's offset or scale dominates
        cosine and Euclidean distances. A checkpoint without them (an
        interrupted run's ``last.pt``) gives the raw latent means.

        Parameters
        ----------
        patches : array or tensor
            (N, 1, F, T) log-mel patches in [0, 1], F = n_mels.

        Returns
        -------
        torch.Tensor
            (N, patch_dim) float32 on the CPU.
        """
        x = torch.as_tensor(np.asarray(patches, dtype=np.float32) if not torch.is_tensor(patches) else patches)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.model_config.n_mels:
            raise ValueError(
                f"{self.name}: expected patches (N, 1, {self.model_config.n_mels}, T), got {tuple(x.shape)}"
            )
        out = []
        with self._lock, torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                xb = x[i : i + batch_size].to(self.device, torch.float32)
                z = self.model.embed(xb).float()  # (b, D)
                if self.z_mean is not None:
                    z = (z - self.z_mean) * self.z_scale
                out.append(z.cpu())
        if not out:
            return torch.zeros(0, self.patch_dim)
        return torch.cat(out)

    def embed_image(self, image: np.ndarray, hop: int | None = None, pool: str = "mean") -> np.ndarray:
        """One clip's embedding from its (n_mels, T) log-mel image.

        Returns
        -------
        numpy.ndarray
            (patch_dim,) for ``pool="mean"``, (2 * patch_dim,) for
            ``"meanstd"`` (mean, then standard deviation over patches).
        """
        if pool not in POOLS:
            raise ValueError(f"unknown pooling {pool!r}; use one of {POOLS}")
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2 or image.shape[0] != self.model_config.n_mels:
            raise ValueError(
                f"{self.name}: expected a ({self.model_config.n_mels}, T) log-mel image, got shape {image.shape}"
            )
        hop = hop or max(1, self.patch_frames // 2)
        patches = windows(image, self.patch_frames, hop)[:, None]  # (W, 1, F, P)
        z = self.embed_patches(patches)  # (W, D)
        mean = z.mean(0)
        if pool == "mean":
            return mean.numpy()
        std = z.std(0, unbiased=False)
        return torch.cat([mean, std]).numpy()

    def embed_images(
        self,
        images: Iterable[np.ndarray],
        hop: int | None = None,
        pool: str = "mean",
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> np.ndarray:
        """(N, D) embeddings of N clip images (see :meth:`embed_image`)."""
        images = list(images)
        out = np.empty((len(images), self.dim(pool)), dtype=np.float32)
        report(progress, 0, len(images))
        for i, img in enumerate(images):
            check_cancel(cancel)
            out[i] = self.embed_image(img, hop, pool)
            report(progress, i + 1, len(images))
        return out

    def reconstruct(self, patches) -> np.ndarray:
        """Autoencoder output for (N, 1, F, T) patches, in [0, 1] (for display)."""
        x = torch.as_tensor(np.asarray(patches, dtype=np.float32))
        with self._lock, torch.no_grad():
            return self.model(x.to(self.device)).float().cpu().numpy()

    def info(self, pool: str = "mean", hop: int | None = None) -> dict:
        """What the library's model table records about this encoder (JSON-able)."""
        return {
            "checkpoint": str(self.path) if self.path else None,
            "model_hash": self.model_hash,
            "run_name": self.name,
            "standardised": self.z_mean is not None,
            "loss": self.loss,
            "latent_dim": self.latent_dim,
            "patch_pooling": self.model_config.pooling,
            "embed_from": list(self.model_config.embed_from),
            "dim": self.dim(pool),
            "pool": pool,
            "hop": hop or max(1, self.patch_frames // 2),
            "patch_frames": self.patch_frames,
            "model_args": self.model_config.to_dict(),
            "feature_config": self.feature_config.to_dict(),
            "feature_hash": self.feature_config.hash,
            "fingerprint": self.data.get("fingerprint"),
            "epoch": self.progress.get("epoch"),
            "best_val_loss": self.metrics.get("best_val_loss"),
        }


def embed_clip_vectors(
    checkpoint: "str | os.PathLike | Encoder",
    images: Sequence[np.ndarray],
    *,
    hop: int | None = None,
    pool: str = "mean",
    device=None,
) -> np.ndarray:
    """Embeddings of clips given as log-mel images (e.g. files outside the library).

    Parameters
    ----------
    checkpoint : path or Encoder
    images : sequence of numpy.ndarray
        (n_mels, T) images made with the checkpoint's feature config
        (``Encoder.feature_config``; e.g. from
        :func:`perceptlab.library.features.file_image`).

    Returns
    -------
    numpy.ndarray
        (N, D) float32.
    """
    enc = checkpoint if isinstance(checkpoint, Encoder) else Encoder.load(checkpoint, device)
    return enc.embed_images(images, hop, pool)
