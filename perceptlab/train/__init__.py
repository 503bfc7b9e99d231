"""Training the autoencoder (no Qt).

- :mod:`.config`: :class:`TrainConfig` from TOML, ``--set`` overrides.
- :mod:`.data`: library clips -> split by clip -> patches.
- :mod:`.loop`: :func:`train` (one process or DDP under torchrun), signals,
  checkpoints, resume.
- :mod:`.progress`: JSON-lines events and the terminal progress bar.
- :mod:`.run`: the ``perceptlab train`` command.
- :mod:`.bench`: ``perceptlab bench train``.
"""

from .config import ConfigError, TrainConfig, load_config
from .data import DataError
from .loop import TrainError, TrainResult, train

__all__ = ["ConfigError", "DataError", "TrainConfig", "TrainError", "TrainResult", "load_config", "train"]
