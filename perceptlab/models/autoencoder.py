"""A small convolutional autoencoder over log-mel patches.

The encoder halves both image sides once per stage (stride-2 3x3 convs) and
ends in a 1x1 conv to ``latent_dim`` channels: a small latent MAP, by default
(B, 128, 4, 4) for a 128 x 128 patch. The patch EMBEDDING pools that map over
TIME only (``pooling = "time"``): for each channel and each latent mel row,
the mean and the standard deviation over the time columns, flattened to
(B, 2 * latent_dim * F'). Keeping the mel rows keeps where in frequency each
feature sits, which is what tells a bass from a flute; the standard deviation
keeps how it moves. ``embed_from`` says which maps are pooled: the latent
map (the default), or the outputs of earlier encoder stages, whose finer mel
rows keep more of the spectrum (``("stage1", "stage2")``: 32 and 16 rows for
a 128-mel patch); their pooled vectors are concatenated. The older ``"global"`` pooling (the mean over mel AND
time, (B, latent_dim)) is kept for checkpoints made with it.

The decoder mirrors the encoder with
stride-2 transposed convs (cheaper than upsample + conv at full resolution,
which matters for CPU training) and ends in a sigmoid, so reconstructions lie
in [0, 1] like the log-mel images the perceptual losses expect.

No normalisation layers: the embedding of a patch must not depend on the rest
of its batch or on train/eval mode, and DistributedDataParallel needs no
SyncBatchNorm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from perceptlab.jsonable import dataclass_from_dict


POOLINGS = ("time", "global")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the autoencoder.

    Attributes
    ----------
    n_mels : int
        Patch height (mel bands); must equal the feature config's ``n_mels``.
    patch_frames : int
        Patch width in frames.
    channels : tuple of int
        Channels of each encoder stage; each stage halves both sides, so
        ``n_mels`` and ``patch_frames`` must be divisible by
        ``2 ** len(channels)``.
    latent_dim : int
        Channels of the latent map = length of the patch embedding.
    convs_per_stage : int
        3x3 convs per stage (the first one strides); 1 keeps CPU training fast.
    pooling : {"time", "global"}
        How a latent map becomes a patch embedding (see the module
        docstring). Checkpoints that do not record it were made with
        ``"global"``.
    embed_from : tuple of str
        The maps a patch embedding pools, in order: ``"latent"``, or
        ``"stage<k>"`` for the output of encoder stage k (0-based). The
        weights do not depend on it, except through the view-agreement
        term, which trains on the embedding (see ``TrainConfig.contrastive``).
    """

    n_mels: int = 128
    patch_frames: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    latent_dim: int = 128
    convs_per_stage: int = 1
    pooling: str = "time"
    embed_from: tuple[str, ...] = ("latent",)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "embed_from", tuple(str(c) for c in self.embed_from))
        problems = self.problems()
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(f"{k}: {v}" for k, v in problems))

    def problems(self) -> list[tuple[str, str]]:
        """(field, reason) for every invalid field; empty when valid."""
        out = []
        if not self.channels or any(c < 1 for c in self.channels):
            out.append(("channels", f"need one or more positive channel counts, got {list(self.channels)}"))
        if self.latent_dim < 1:
            out.append(("latent_dim", f"must be positive, got {self.latent_dim}"))
        if self.convs_per_stage < 1:
            out.append(("convs_per_stage", f"must be at least 1, got {self.convs_per_stage}"))
        if self.pooling not in POOLINGS:
            out.append(("pooling", f"must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"))
        maps = ["latent"] + [f"stage{k}" for k in range(len(self.channels))]
        bad = [m for m in self.embed_from if m not in maps]
        if not self.embed_from or bad or len(set(self.embed_from)) != len(self.embed_from):
            out.append(("embed_from", f"must list distinct maps among {', '.join(maps)}, got {list(self.embed_from)}"))
        elif self.pooling == "global" and self.embed_from != ("latent",):
            out.append(("embed_from", "global pooling embeds the latent map only"))
        factor = 2 ** len(self.channels)
        for name in ("n_mels", "patch_frames"):
            v = getattr(self, name)
            if v < factor or v % factor:
                out.append((name, f"{v} is not a multiple of 2**len(channels) = {factor} "
                                  f"({len(self.channels)} stride-2 stages)"))
        return out

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(latent_dim, F', T') of the latent map of one patch."""
        f = 2 ** len(self.channels)
        return (self.latent_dim, self.n_mels // f, self.patch_frames // f)

    def map_shape(self, name: str) -> tuple[int, int, int]:
        """(channels, F', T') of the map ``name`` ("latent" or "stage<k>") for one patch."""
        if name == "latent":
            return self.latent_shape
        k = int(name[len("stage"):])
        f = 2 ** (k + 1)
        return (self.channels[k], self.n_mels // f, self.patch_frames // f)

    @property
    def embedding_dim(self) -> int:
        """Length of a patch embedding with this config's pooling."""
        if self.pooling == "global":
            return self.latent_dim
        return sum(2 * c * f for c, f, _ in (self.map_shape(m) for m in self.embed_from))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["embed_from"] = list(self.embed_from)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        # Checkpoints written before pooling was recorded used the global mean of the latent.
        return dataclass_from_dict(cls, data, "model config", defaults={"pooling": "global", "embed_from": ["latent"]})


def _stage(c_in: int, c_out: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GELU()]
    for _ in range(n_convs - 1):
        layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.GELU()]
    return nn.Sequential(*layers)


def _up_stage(c_in: int, c_out: int, n_convs: int, last: bool) -> nn.Sequential:
    # kernel 4, stride 2, padding 1 doubles each side exactly.
    layers: list[nn.Module] = []
    for _ in range(n_convs - 1):
        layers += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.GELU()]
    layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
    if not last:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """Convolutional autoencoder; see the module docstring.

    Parameters
    ----------
    config : ModelConfig
    """

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        ch = config.channels
        k = config.convs_per_stage
        enc = []
        c_prev = 1
        for c in ch:
            enc.append(_stage(c_prev, c, k))
            c_prev = c
        self.encoder = nn.Sequential(*enc)
        self.to_latent = nn.Conv2d(ch[-1], config.latent_dim, 1)
        self.from_latent = nn.Sequential(nn.Conv2d(config.latent_dim, ch[-1], 1), nn.GELU())
        dec = []
        outs = list(reversed(ch[:-1])) + [1]
        c_prev = ch[-1]
        for i, c in enumerate(outs):
            dec.append(_up_stage(c_prev, c, k, last=i == len(outs) - 1))
            c_prev = c
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent map of a batch of patches.

        Parameters
        ----------
        x : torch.Tensor
            (B, 1, F, T) in [0, 1]; F and T multiples of 2**len(channels).

        Returns
        -------
        torch.Tensor
            (B, latent_dim, F / 2**S, T / 2**S)
        """
        return self.to_latent(self.encoder(x))

    def _maps(self, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """The maps ``embed_from`` names, and the latent map, in one pass over the encoder."""
        want = set(self.config.embed_from)
        maps, h = {}, x
        for k, stage in enumerate(self.encoder):
            h = stage(h)
            if f"stage{k}" in want:
                maps[f"stage{k}"] = h
        z = self.to_latent(h)
        maps["latent"] = z
        return maps, z

    @staticmethod
    def _time_pool(m: torch.Tensor) -> torch.Tensor:
        m = m.float()  # a spread in bfloat16 (under autocast) loses too much
        mean = m.mean(dim=3)
        std = (m - mean.unsqueeze(3)).pow(2).mean(dim=3).add(1e-8).sqrt()  # finite gradient at 0
        return torch.cat([mean.flatten(1), std.flatten(1)], dim=1)

    def pool(self, maps: dict) -> torch.Tensor:
        """Patch embeddings from the maps of :meth:`_maps`: see :meth:`embed`."""
        if self.config.pooling == "global":
            return maps["latent"].mean(dim=(2, 3))
        return torch.cat([self._time_pool(maps[name]) for name in self.config.embed_from], dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings, (B, ``config.embedding_dim``).

        ``"time"`` pooling: for each map of ``embed_from`` (each (B, C, F', T')),
        its mean over time for every (channel, mel row), then its standard
        deviation over time, each flattened channel-major (``[mean(c0, f0),
        mean(c0, f1), ..., std(...)]``); the maps' vectors are concatenated.
        ``"global"``: the latent map's mean over mel and time.
        """
        return self.pool(self._maps(x)[0])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim, F', T') -> (B, 1, F, T) in [0, 1]."""
        return torch.sigmoid(self.decoder(self.from_latent(z)))

    def forward(self, x: torch.Tensor, return_embedding: bool = False):
        """Reconstruction of ``x``: (B, 1, F, T) -> (B, 1, F, T) in [0, 1].

        With ``return_embedding``, ``(reconstruction, patch embeddings)`` from
        the same pass (what training with the view-agreement term needs; one
        ``forward`` keeps DistributedDataParallel's gradient hooks in play).
        """
        maps, z = self._maps(x)
        recon = self.decode(z)
        return (recon, self.pool(maps)) if return_embedding else recon


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
