"""What defines an evaluation run: :class:`EvaluateConfig` (checked on construction) and the
protocol's constants (report format, trainable losses, the claim under test)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from perceptlab import metric_names
from perceptlab.audio.features import FeatureConfig

FORMAT = "perceptlab-evaluation"
FORMAT_VERSION = 1

#: The losses the training engine knows (``--train-config`` trains one encoder per loss and fold):
#: the registry's trainable metrics, asked when read (``mse, nlpd, msssim`` for the built-ins).
TRAIN_LOSSES = metric_names.LOSSES
#: The losses of the claim's perceptual encoders (``nlpd, msssim`` for the built-ins).
PERCEPTUAL_LOSSES = metric_names.PERCEPTUAL_LOSSES

CLAIM = (
    "Namgyal et al. (2024): logistic regression on the latent features of an autoencoder trained "
    "with a perceptual loss (NLPD, MS-SSIM) classifies genre better than (a) k-NN on the same "
    "metric used directly as a distance between spectrograms, and (b) the features of the same "
    "autoencoder trained with MSE."
)

LogFn = Callable[[str], None]


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything that defines an evaluation run.

    Attributes
    ----------
    metrics : tuple of str
        Spectrogram metrics for k-NN (and, with ``train_config``, the losses
        to train unless ``losses`` is given); by default every built-in
        metric, the image metrics then the baselines (``registry.builtin_names``).
    checkpoints : tuple of str
        Encoder checkpoints (``best.pt``) declared to be trained on data
        disjoint from this library.
    train_config : str or None
        A training TOML: train one encoder per fold and loss instead.
    train_overrides : tuple of str
        ``KEY=VALUE`` overrides for the training config (like ``train --set``).
    losses : tuple of str
        Losses to train with ``train_config`` (default: ``metrics`` that are losses).
    folds, seed, k, k_grid, c_grid, inner_folds
        Outer folds, the seed of every split and resample, k of ``knn:``,
        the k candidates of ``knn-cv:``, the C candidates of logistic
        regression, inner folds for k and C.
    segment_frames, segment_hop, max_segments_per_clip
        Window length and hop in frames; at most this many evenly spaced
        windows per clip (0 = all).
    labels : tuple of str
        Only these classes (empty: all).
    bootstrap, confidence
        Bootstrap resamples and CI level.
    device : str or None
        Where metric matrices and embeddings are computed (None: CUDA if present).
    features : FeatureConfig
        The log-mel the metrics compare.
    memory_budget_mb : float
        Working memory of the distance-matrix engine.
    """

    # A live view, not a tuple made here: making a default config does not load torch (the registry).
    metrics: Sequence[str] = metric_names.BUILTIN_METRICS
    checkpoints: tuple[str, ...] = ()
    train_config: str | None = None
    train_overrides: tuple[str, ...] = ()
    losses: tuple[str, ...] = ()
    folds: int = 5
    seed: int = 0
    k: int = 5
    k_grid: tuple[int, ...] = (1, 3, 5, 7, 9, 15)
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    inner_folds: int = 3
    segment_frames: int = 128
    segment_hop: int = 64
    max_segments_per_clip: int = 0
    labels: tuple[str, ...] = ()
    bootstrap: int = 2000
    confidence: float = 0.95
    device: str | None = None
    features: FeatureConfig = FeatureConfig()
    memory_budget_mb: float = 512.0
    logreg_max_iter: int = 2000

    def __post_init__(self):
        for name in ("metrics", "checkpoints", "train_overrides", "losses", "k_grid", "c_grid", "labels"):
            v = getattr(self, name)
            if isinstance(v, metric_names.MetricNames):  # read when used, not here
                continue
            object.__setattr__(self, name, tuple([v] if isinstance(v, str) else v))
        object.__setattr__(self, "checkpoints", tuple(str(c) for c in self.checkpoints))
        problems = []
        if self.checkpoints and self.train_config:
            problems.append("give --checkpoints or --train-config, not both")
        # The default metrics (every built-in one) are never empty, and asking would load torch.
        given = isinstance(self.metrics, metric_names.MetricNames) or bool(self.metrics)
        if not given and not self.checkpoints and not self.train_config:
            problems.append("nothing to evaluate: no --metrics, --checkpoints or --train-config")
        if self.folds < 2:
            problems.append(f"--folds must be at least 2, got {self.folds}")
        if self.k < 1:
            problems.append(f"--k must be at least 1, got {self.k}")
        if not self.k_grid or any(int(k) < 1 for k in self.k_grid):
            problems.append(f"k_grid needs positive values, got {list(self.k_grid)}")
        if not self.c_grid or any(not (float(c) > 0 and math.isfinite(float(c))) for c in self.c_grid):
            problems.append(f"c_grid needs positive values, got {list(self.c_grid)}")
        if self.inner_folds < 2:
            problems.append(f"--inner-folds must be at least 2, got {self.inner_folds}")
        if self.segment_frames < 8:
            problems.append(f"--segment-frames must be at least 8, got {self.segment_frames}")
        if self.segment_hop < 1:
            problems.append(f"--segment-hop must be at least 1, got {self.segment_hop}")
        if self.max_segments_per_clip < 0:
            problems.append(f"--max-segments-per-clip must be >= 0, got {self.max_segments_per_clip}")
        if self.bootstrap < 100:
            problems.append(f"--bootstrap must be at least 100, got {self.bootstrap}")
        if not 0.5 <= self.confidence < 1:
            problems.append(f"confidence must be in [0.5, 1), got {self.confidence}")
        bad = [x for x in self.losses if x not in TRAIN_LOSSES]
        if bad:
            problems.append(f"--losses: unknown {bad}; choose from {', '.join(TRAIN_LOSSES)}")
        if self.losses and not self.train_config:
            problems.append("--losses needs --train-config")
        if self.train_overrides and not self.train_config:
            problems.append("--set needs --train-config")
        if problems:
            raise ValueError("evaluate: " + "; ".join(problems))

    @property
    def mode(self) -> str:
        """``"checkpoints"``, ``"train-config"`` or ``"none"`` (k-NN and baselines only)."""
        return "checkpoints" if self.checkpoints else ("train-config" if self.train_config else "none")

    @property
    def train_losses(self) -> list[str]:
        if self.losses:
            return list(self.losses)
        return [m for m in self.metrics if m in TRAIN_LOSSES]

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, FeatureConfig):
                v = v.to_dict()
            elif isinstance(v, (tuple, metric_names.MetricNames)):
                v = list(v)
            out[f.name] = v
        out["mode"] = self.mode
        return out

