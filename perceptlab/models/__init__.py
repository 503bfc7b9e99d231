"""The perceptual autoencoder, its checkpoints and clip embeddings (no Qt).

- :mod:`.autoencoder`: :class:`ModelConfig`, :class:`AutoEncoder`
  (log-mel patch (B, 1, F, T) -> latent map -> reconstruction in [0, 1];
  the latent map's global mean is the patch embedding).
- :mod:`.checkpoint`: self-describing checkpoints, atomic writes, safe
  (``weights_only``) loading.
- :mod:`.encoder`: :class:`Encoder` (a checkpoint loaded for use),
  :func:`embed_clip_vectors`.
- :mod:`.embedding_metric`: embeddings stored in the library and the
  ``embedding:<name>`` metrics.
"""

from .autoencoder import AutoEncoder, ModelConfig, count_parameters
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, weights_hash
from .encoder import Encoder, embed_clip_vectors

__all__ = [
    "AutoEncoder",
    "CheckpointError",
    "Encoder",
    "ModelConfig",
    "count_parameters",
    "embed_clip_vectors",
    "load_checkpoint",
    "save_checkpoint",
    "weights_hash",
]
