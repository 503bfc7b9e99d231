"""Training configuration: dataclasses loaded from TOML, checked key by key.

A config file has top-level keys and the sections ``[data]``, ``[features]``,
``[model]``, ``[loss]`` and ``[optim]`` (see ``training/README.md`` for every
key). Unknown keys and bad values raise :class:`ConfigError` with a message
that names the key (``optim.lr: must be > 0, got -1``) and the file.

``--set key=value`` overrides use dotted keys (``optim.lr=3e-4``,
``data.library=/tmp/demo.sqlite``, ``loss=nlpd``, ``loss.mse=0.1``); values are
parsed as TOML values, and anything that is not valid TOML is taken as a
string.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from perceptlab.audio.features import FeatureConfig
from perceptlab.models.autoencoder import ModelConfig

SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A bad training config; the message names the key."""


@dataclass
class DataConfig:
    """``[data]``: which clips, how they are split and cut into patches.

    Attributes
    ----------
    library : str
        The library file; "" means the default library
        (``$PERCEPTLAB_LIBRARY`` or the user data folder).
    labels : list of str
        Only clips with these labels; empty means all clips.
    val_fraction : float
        Fraction of CLIPS (never patches) held out for validation, taken
        per label; 0 disables validation.
    split_seed : int
        Seed of the train/validation split (independent of ``seed``).
    patch_frames : int
        Patch width in frames (the model's input width).
    patch_hop : int
        Frames between patch starts (the last patch is aligned to the end).
    min_clip_frames : int
        Clips shorter than this are left out (0: half a patch). Shorter clips
        would be looped many times to fill a patch.
    augment_shift : int
        Training patches start up to this many frames earlier or later than
        their grid position (a random crop; 0: off). Validation is never
        augmented.
    augment_gain_db : float
        Training patches are made up to this many dB louder or quieter
        (0: off).
    augment_transpose : float
        The partner views of the view-agreement term are transposed by up to
        this many semitones either way (0: off; at most 4). The patches they
        are partners of never are; the partners, like every patch of a step,
        are reconstructed too.
    """

    library: str = ""
    labels: list[str] = field(default_factory=list)
    val_fraction: float = 0.2
    split_seed: int = 0
    patch_frames: int = 128
    patch_hop: int = 32
    min_clip_frames: int = 0
    augment_shift: int = 0
    augment_gain_db: float = 0.0
    augment_transpose: float = 0.0


@dataclass
class OptimConfig:
    """``[optim]``: AdamW and the learning-rate schedule."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    """The whole training run (top-level keys plus the sections)."""

    name: str = "run"
    epochs: int = 10
    batch_size: int = 32
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    out_dir: str = ""
    log_every: int = 10
    #: Stop when the validation loss has not improved for this many epochs (0: never).
    patience: int = 0
    #: Stop at the first epoch end after this much training time (0: no limit).
    max_minutes: float = 0.0
    #: Weight of the view-agreement term (0: off). Each training patch gets a
    #: partner: another random crop of the same clip at its own level; an
    #: InfoNCE loss on their embeddings, added to the reconstruction loss,
    #: pulls partners together (what a listener calls "the same sound").
    #: A step then holds 2 x batch_size patches. Validation stays reconstruction only.
    contrastive: float = 0.0
    #: Temperature of that InfoNCE loss.
    contrastive_temperature: float = 0.1
    #: What ``contrastive`` is weighed against. "absolute": the reconstruction
    #: loss as it is. "mse": the reconstruction loss rescaled, each step, to the
    #: size of the reconstruction's MSE (the scale carries no gradient), so the
    #: weight means the same for every loss: NLPD (about 0.3) and 1 - MS-SSIM
    #: (about 0.1) would otherwise give the view-agreement term a far smaller
    #: share than MSE (about 0.01) does. With an MSE loss the two are the same.
    #: The training loss a run reports is the objective it optimises (so, with
    #: "mse", in MSE units); validation reports the loss itself.
    contrastive_scale: str = "absolute"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: dict[str, float] = field(default_factory=lambda: {"mse": 1.0})
    optim: OptimConfig = field(default_factory=OptimConfig)

    # -- derived -------------------------------------------------------------
    @property
    def out_path(self) -> Path:
        return Path(self.out_dir or os.path.join("runs", self.name)).expanduser()

    @property
    def min_frames(self) -> int:
        return self.data.min_clip_frames or max(1, self.data.patch_frames // 2)

    def to_dict(self) -> dict:
        """Primitive containers only (goes into checkpoints and JSON)."""
        return {
            "name": self.name,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "device": self.device,
            "amp": self.amp,
            "seed": self.seed,
            "out_dir": self.out_dir,
            "log_every": self.log_every,
            "patience": self.patience,
            "max_minutes": self.max_minutes,
            "contrastive": self.contrastive,
            "contrastive_temperature": self.contrastive_temperature,
            "contrastive_scale": self.contrastive_scale,
            "data": {f.name: copy.deepcopy(getattr(self.data, f.name)) for f in fields(DataConfig)},
            "features": self.features.to_dict(),
            "model": {k: v for k, v in self.model.to_dict().items() if k not in ("n_mels", "patch_frames")},
            "loss": dict(self.loss),
            "optim": {f.name: copy.deepcopy(getattr(self.optim, f.name)) for f in fields(OptimConfig)},
        }


#: What the view-agreement weight is weighed against (see ``TrainConfig.contrastive_scale``).
CONTRASTIVE_SCALES = ("absolute", "mse")
#: Largest ``data.augment_transpose`` in semitones: transposing down reads the input bands further
#: apart than one band where the mel scale is linear (below 1 kHz), and beyond this they skip lines.
MAX_TRANSPOSE = 4.0

#: Keys that may differ between a run and its resumption.
RESUMABLE_CHANGES = {"epochs", "device", "amp", "log_every", "out_dir", "data.library", "patience",
                     "max_minutes"}


# --------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------


def _type_name(t) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(t, str(t))


def _coerce(key: str, value: Any, t) -> Any:
    origin = typing.get_origin(t)
    if origin is list:
        (item,) = typing.get_args(t)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list of {_type_name(item).split(' ', 1)[-1]}s, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is tuple:
        item = typing.get_args(t)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: must be a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if t is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
        return value
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if t is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {value!r}")
        return value
    raise AssertionError(f"unhandled config type {t} for {key}")


def _section(cls, raw: Any, prefix: str, skip: tuple = ()) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: must be a table ([{prefix}]), got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.name not in skip]
    out = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}: unknown key in [{prefix}] (known keys: {', '.join(known)})")
        out[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    return out


def _parse_loss(raw: Any) -> dict[str, float]:
    from perceptlab.metrics import loss_names

    losses = loss_names()
    if isinstance(raw, str):
        raw = {raw: 1.0}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"loss: must be a loss name ({' | '.join(losses)}) or a table of weights such as "
            f"{{nlpd = 1.0, mse = 0.1}}, got {raw!r}"
        )
    out = {}
    for name, w in raw.items():
        if name not in losses:
            raise ConfigError(f"loss.{name}: unknown loss {name!r}; choose from {', '.join(losses)}")
        w = _coerce(f"loss.{name}", w, float)
        if w < 0:
            raise ConfigError(f"loss.{name}: weight must be >= 0, got {w}")
        if w > 0:
            out[name] = w
    if not out:
        raise ConfigError("loss: at least one loss needs a positive weight")
    return out


def config_from_dict(raw: dict) -> TrainConfig:
    """Build and check a :class:`TrainConfig` from a parsed TOML document."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a TOML table")
    raw = copy.deepcopy(raw)
    sections = {"data", "features", "model", "loss", "optim"}
    top_hints = typing.get_type_hints(TrainConfig)
    top_keys = [f.name for f in fields(TrainConfig) if f.name not in sections]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in sections:
            continue
        if key not in top_keys:
            raise ConfigError(
                f"{key}: unknown key (known top-level keys: {', '.join(top_keys)}; "
                f"sections: {', '.join(sorted(sections))})"
            )
        kwargs[key] = _coerce(key, value, top_hints[key])
    data = DataConfig(**_section(DataConfig, raw.get("data", {}), "data"))
    optim = OptimConfig(**_section(OptimConfig, raw.get("optim", {}), "optim"))
    feat_raw = raw.get("features", {})
    if not isinstance(feat_raw, dict):
        raise ConfigError(f"features: must be a table ([features]), got {feat_raw!r}")
    feat_hints = {f.name: f.type for f in fields(FeatureConfig)}
    feat_kwargs = {}
    for key, value in feat_raw.items():
        if key not in feat_hints:
            raise ConfigError(f"features.{key}: unknown key in [features] (known keys: {', '.join(feat_hints)})")
        t = {"int": int, "float": float}.get(str(feat_hints[key]), feat_hints[key])
        feat_kwargs[key] = _coerce(f"features.{key}", value, t)
    try:
        features = FeatureConfig(**feat_kwargs)
    except ValueError as exc:
        raise ConfigError(f"features: {exc}") from None
    model_kwargs = _section(ModelConfig, raw.get("model", {}), "model", skip=("n_mels", "patch_frames"))
    loss = _parse_loss(raw.get("loss", {"mse": 1.0}))
    cfg = TrainConfig(**kwargs, data=data, optim=optim, features=features, loss=loss)
    _check_values(cfg)
    # The model's input size comes from the features and the patch width.
    mk = dict(ModelConfig().to_dict(), **model_kwargs, n_mels=features.n_mels, patch_frames=data.patch_frames)
    probe = ModelConfig.__new__(ModelConfig)
    for k, v in mk.items():
        object.__setattr__(probe, k, tuple(v) if k in ("channels", "embed_from") else v)
    for key, why in probe.problems():
        where = {"n_mels": "features.n_mels", "patch_frames": "data.patch_frames"}.get(key, f"model.{key}")
        raise ConfigError(f"{where}: {why}")
    cfg.model = ModelConfig.from_dict(mk)
    return cfg


def _check_values(cfg: TrainConfig) -> None:
    def bad(key, why):
        raise ConfigError(f"{key}: {why}")

    if not cfg.name or any(c in cfg.name for c in "/\\") or cfg.name != cfg.name.strip():
        bad("name", f"must be a non-empty name without slashes, got {cfg.name!r}")
    if cfg.epochs < 1:
        bad("epochs", f"must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        bad("batch_size", f"must be at least 1, got {cfg.batch_size}")
    if cfg.log_every < 1:
        bad("log_every", f"must be at least 1, got {cfg.log_every}")
    dev = cfg.device
    if not (dev in DEVICES or (dev.startswith("cuda:") and dev[5:].isdigit())):
        bad("device", f"must be one of {', '.join(DEVICES)} (or cuda:N), got {dev!r}")
    d = cfg.data
    if not 0.0 <= d.val_fraction < 1.0:
        bad("data.val_fraction", f"must be in [0, 1), got {d.val_fraction}")
    if d.patch_frames < 8:
        bad("data.patch_frames", f"must be at least 8, got {d.patch_frames}")
    if d.patch_hop < 1:
        bad("data.patch_hop", f"must be at least 1, got {d.patch_hop}")
    if d.min_clip_frames < 0:
        bad("data.min_clip_frames", f"must be >= 0, got {d.min_clip_frames}")
    # (key, value, valid, what a valid value is)
    for key, value, ok, want in (
        ("data.augment_shift", d.augment_shift, d.augment_shift >= 0, ">= 0 frames (0 turns it off)"),
        ("data.augment_gain_db", d.augment_gain_db, 0 <= d.augment_gain_db <= 40, "in [0, 40] dB (0 turns it off)"),
        ("data.augment_transpose", d.augment_transpose, 0 <= d.augment_transpose <= MAX_TRANSPOSE,
         f"in [0, {MAX_TRANSPOSE:g}] semitones (0 turns it off; further down, the linear bands below "
         "1 kHz would be read too sparsely)"),
        ("patience", cfg.patience, cfg.patience >= 0, ">= 0 epochs (0 turns early stopping off)"),
        ("max_minutes", cfg.max_minutes, cfg.max_minutes >= 0, ">= 0 (0: no limit)"),
        ("contrastive", cfg.contrastive, cfg.contrastive >= 0, ">= 0 (0 turns the view-agreement term off)"),
        ("contrastive_temperature", cfg.contrastive_temperature, cfg.contrastive_temperature > 0, "> 0"),
    ):
        if not ok:
            bad(key, f"must be {want}, got {value}")
    if cfg.contrastive_scale not in CONTRASTIVE_SCALES:
        bad("contrastive_scale", f"must be one of {', '.join(map(repr, CONTRASTIVE_SCALES))}, "
                                 f"got {cfg.contrastive_scale!r}")
    if d.augment_transpose and not cfg.contrastive:
        bad("data.augment_transpose", "transposes the partner views of the view-agreement term, which is off: "
                                      "set contrastive > 0, or augment_transpose = 0")
    if cfg.contrastive and cfg.batch_size < 2:
        bad("batch_size", f"the view-agreement term needs at least 2 patches per batch, got {cfg.batch_size}")
    o = cfg.optim
    if not o.lr > 0:
        bad("optim.lr", f"must be > 0, got {o.lr}")
    if o.weight_decay < 0:
        bad("optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        bad("optim.betas", f"must be two numbers in [0, 1), got {o.betas}")
    if o.schedule not in SCHEDULES:
        bad("optim.schedule", f"must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}")
    if o.warmup_steps < 0:
        bad("optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    if not 0 <= o.min_lr_ratio <= 1:
        bad("optim.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}")
    if o.grad_clip < 0:
        bad("optim.grad_clip", f"must be >= 0 (0 turns clipping off), got {o.grad_clip}")
    if "msssim" in cfg.loss:
        from perceptlab.metrics import n_scales

        if n_scales(cfg.features.n_mels, d.patch_frames) == 0:
            bad("loss.msssim", f"MS-SSIM needs patches larger than 6 x 6 pixels, got "
                               f"{cfg.features.n_mels} x {d.patch_frames}")


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", 0.001)``; non-TOML values stay strings."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: bad key {key!r}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides to a parsed document (returns a copy)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item)
        parts = key.split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif i == 0 and part == "loss" and isinstance(child, str):
                child = node[part] = {child: 1.0}  # loss = "nlpd" then --set loss.mse=0.1
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a table")
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple = ()) -> TrainConfig:
    """Read a TOML config file (or defaults when ``path`` is None) and apply overrides.

    Raises
    ------
    ConfigError
        Missing or unparsable file, unknown key, bad value; the message names
        the file and the key.
    """
    raw: dict = {}
    where = "config"
    if path is not None:
        p = Path(path).expanduser()
        where = str(p)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read the config ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    try:
        return config_from_dict(apply_overrides(raw, list(overrides)))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``TrainConfig.to_dict()`` dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        full = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict) and full != "loss":
            out += config_diff(va, vb, full + ".")
        elif va != vb:
            out.append(full)
    return out
