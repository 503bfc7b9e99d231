"""Training the autoencoder (no Qt).

- :mod:`.config`: :class:`TrainConfig` from TOML, ``--set`` overrides.
- :mod:`.data`: library clips -> split by clip -> patches.
- :mod:`.losses`: the reconstruction losses, from the registry's trainable
  metrics (MSE, NLPD, 1 - MS-SSIM) or a weighted sum of them.
- :mod:`.loop`: :func:`train` (one process or DDP under torchrun);
  :mod:`.distributed` the process group, :mod:`.stop` SIGINT / SIGTERM /
  cancel as one polled flag, :mod:`.run_records` resume checks, the
  library's run record and checkpoints.
- :mod:`.progress`: JSON-lines events and the terminal progress bar.
- :mod:`.run`: the ``perceptlab train`` command.
- :mod:`.repool`: a trained encoder's embedding read from other maps, without
  retraining.
- :mod:`.bench`: ``perceptlab bench train``; :mod:`.gpu_check` the
  five-minute GPU check (``--device cuda``), its checks in :mod:`.gpu_checks`
  and their plumbing in :mod:`.gpu_check_runs`.
"""

from .config import ConfigError, TrainConfig, load_config
from .data import DataError
from .loop import TrainError, TrainResult, train

__all__ = ["ConfigError", "DataError", "TrainConfig", "TrainError", "TrainResult", "load_config", "train"]
