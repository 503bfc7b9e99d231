"""Trivial baselines: cosine distance between z-scored log-mel and MFCC statistics.

A perceptual metric (NLPD, MS-SSIM) is worth its cost only if it beats what a
few summary numbers per clip already give. Two such baselines are registered
beside the image metrics:

``logmel-stats`` ("Log-mel stats")
    :func:`logmel_stats`: per mel band, the mean and the standard deviation
    over time of the clip's log-mel level in dB -- (2 n_mels,) values, the
    n_mels means first (band order, lowest first), then the n_mels stds.
``mfcc-stats`` ("MFCC stats")
    :func:`mfcc_stats`: 20 MFCCs per frame, computed as torchaudio's
    ``MFCC`` does (DCT-II, orthonormal, ``create_dct(20, n_mels, "ortho")``)
    from the log-mel in dB, then the mean and the standard deviation over
    time of each coefficient -- (40,) values, 20 means then 20 stds.

How a caller gets the vectors a baseline compares
-------------------------------------------------
Both metrics have ``input_kind="vector"`` and ``params["baseline"] is True``
(:func:`perceptlab.metrics.registry.is_baseline`); ``params["vector_from"] == "logmel-image"`` says the
vectors come from the clip's log-mel image, not from a stored embedding:

1. ``raw_vector(name, image, cfg)`` for every clip, where ``image`` is the
   WHOLE clip's (n_mels, T) log-mel image in [0, 1] (e.g.
   :func:`perceptlab.library.features.clip_image`), not the fixed-length
   excerpt the image metrics compare: statistics over time need no common
   shape, and a change anywhere in the clip should count;
2. :func:`standardise` the (N, D) raw vectors over the set being compared
   (the library, or the clips of a matrix): each dimension gets zero mean
   and unit standard deviation over that set, so that no dimension (a loud
   band's mean, c0's large range) outweighs the others. Keep the returned
   :class:`Standardisation` and z-score a query from outside the set with
   :func:`apply_standardisation` (same statistics, so its distances are
   comparable with the set's);
3. hand the z-scored vectors to the metric: ``fn`` (pairs), ``pairwise``
   (all pairs, one GEMM) or ``index`` (queries), like any vector metric.

:func:`baseline_vectors` does steps 1 and 2 for a list of images. The
distance is 1 - cosine similarity of the z-scored vectors
(:func:`perceptlab.metrics.embedding.vector_distance` with ``"cosine"``):
0 for identical vectors, at most 2, symmetric.

A -6 dB copy of a clip shifts every band mean by 6 dB (and MFCC c0's mean by
6 sqrt(n_mels)) and leaves the stds as they are, except where the copy
touches the -80 dB floor; after z-scoring over a varied library that is a
small change, so the copy stays near its original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from perceptlab.audio.features import FeatureConfig, unit_to_db

from .embedding import EmbeddingIndex, vector_distance, vector_distance_matrix
from .pairwise_blocks import _prepare_any, _Steps
from .metric import Metric

__all__ = [
    "BASELINES",
    "N_MFCC",
    "STD_FLOOR_REL",
    "Standardisation",
    "apply_standardisation",
    "baseline_metrics",
    "baseline_vectors",
    "cosine_distance",
    "logmel_stats",
    "mfcc_stats",
    "raw_vector",
    "standardise",
    "vector_dim",
]

#: MFCC coefficients per frame (torchaudio's default ``n_mfcc``).
N_MFCC = 20

#: A dimension whose standard deviation over the set is at most
#: ``STD_FLOOR_REL * max(1, |mean|)`` (in the dimension's own units: dB, or
#: MFCC units) is treated as constant; see :func:`standardise`.
STD_FLOOR_REL = 1e-6

# Frames converted to dB and transformed per step in mfcc_stats: bounds the
# float64 temporaries on hour-long clips (4096 x 128 x 8 bytes = 4 MiB).
_MFCC_CHUNK_FRAMES = 4096


def _check_image(image, who: str) -> np.ndarray:
    x = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if x.ndim != 2:
        raise ValueError(f"{who}: expected one clip's (n_mels, T) log-mel image, got shape {x.shape}")
    if x.shape[1] < 1 or x.shape[0] < 1:
        raise ValueError(f"{who}: the image has no frames or no bands (shape {x.shape})")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{who}: expected a floating image in [0, 1], got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: the image contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{who}: values must lie in [0, 1] (the fixed dB mapping), got [{lo:.4g}, {hi:.4g}]")
    return x


def logmel_stats(image, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Per-band mean and standard deviation over time of a clip's log-mel level in dB.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        (F, T) log-mel image in [0, 1] (rows = mel bands, lowest first), the
        whole clip.
    cfg : FeatureConfig
        Gives the dB mapping (``db_floor``, ``db_ceiling``).

    Returns
    -------
    numpy.ndarray
        (2F,) float32: the F band means in dB, then the F band standard
        deviations in dB (population std over the T frames; 0 when T = 1).

    Notes
    -----
    The statistics are taken in dB (``unit_to_db``), so that they read as
    levels; the [0, 1] values would give the same vectors after
    :func:`standardise`, since dB is an affine map of them. Levels below the
    floor read as the floor (the image is clipped there).
    """
    x = _check_image(image, "logmel-stats")
    mean = x.mean(axis=1, dtype=np.float64)  # (F,)
    std = x.std(axis=1, dtype=np.float64)  # (F,)
    span = cfg.db_ceiling - cfg.db_floor
    # unit_to_db is affine: map the statistics instead of a copy of the image.
    return np.concatenate([unit_to_db(mean, cfg), std * span]).astype(np.float32)


def _dct_matrix(n_mels: int) -> torch.Tensor:
    import torchaudio.functional as AF

    return AF.create_dct(N_MFCC, n_mels, norm="ortho").to(torch.float64)  # (n_mels, N_MFCC)


def mfcc_stats(image, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Mean and standard deviation over time of 20 MFCCs of a clip.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        (F, T) log-mel image in [0, 1], the whole clip; F >= 20.
    cfg : FeatureConfig
        Gives the dB mapping.

    Returns
    -------
    numpy.ndarray
        (40,) float32: the means of c0..c19, then their standard deviations
        (population std over the T frames).

    Notes
    -----
    The MFCCs are torchaudio's: ``mfcc = dB.T @ create_dct(20, F, "ortho")``
    per frame, with dB = ``unit_to_db(image)`` = 10 log10 of the mel power,
    the scale torchaudio's ``MFCC`` feeds its DCT. Two differences from
    ``torchaudio.transforms.MFCC`` on the same audio, both harmless here:
    levels are clipped at the absolute ``db_floor`` (-80 dB) rather than at
    80 dB below each spectrogram's peak (``top_db``), and our STFT scaling
    (a full-scale sine at 0 dB) offsets every dB value by a constant, which
    only moves c0 and is removed by :func:`standardise`.
    """
    x = _check_image(image, "mfcc-stats")
    f, t = x.shape
    if f < N_MFCC:
        raise ValueError(f"mfcc-stats: needs at least {N_MFCC} mel bands for {N_MFCC} coefficients, got {f}")
    dct = _dct_matrix(f)
    parts = []
    with torch.no_grad():
        for t0 in range(0, t, _MFCC_CHUNK_FRAMES):
            # A float64 copy: the image may be a read-only view of a cache.
            chunk = np.ascontiguousarray(x[:, t0 : t0 + _MFCC_CHUNK_FRAMES], dtype=np.float64)
            db = unit_to_db(torch.from_numpy(chunk), cfg)  # (F, t)
            parts.append(db.T @ dct)  # (t, N_MFCC)
        mfcc = torch.cat(parts)  # (T, N_MFCC)
        mean = mfcc.mean(0)
        std = mfcc.std(0, correction=0)
    return torch.cat([mean, std]).numpy().astype(np.float32)


#: Raw vector of one clip's log-mel image, by metric name: ``fn(image, cfg)``.
BASELINES: Mapping[str, Callable[..., np.ndarray]] = {
    "logmel-stats": logmel_stats,
    "mfcc-stats": mfcc_stats,
}


def _lookup(name: str) -> Callable[..., np.ndarray]:
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; baselines: {', '.join(BASELINES)}") from None


def raw_vector(name: str, image, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The (D,) float32 statistics vector of one clip for the baseline ``name``.

    ``image`` is the whole clip's (n_mels, T) log-mel image in [0, 1]. The
    vector still has to be z-scored over the set being compared
    (:func:`standardise`, :func:`apply_standardisation`) before the distance.
    """
    return _lookup(name)(image, cfg)


def vector_dim(name: str, cfg: FeatureConfig = FeatureConfig()) -> int:
    """Length D of the baseline's vectors under ``cfg``."""
    _lookup(name)
    return 2 * cfg.n_mels if name == "logmel-stats" else 2 * N_MFCC


@dataclass(frozen=True)
class Standardisation:
    """Per-dimension z-score statistics of a set of raw vectors.

    Attributes
    ----------
    mean, std : numpy.ndarray
        (D,) float64: mean and population standard deviation over the set.
    kept : numpy.ndarray
        (D,) bool: dimensions that vary over the set (std above the floor).
    n : int
        Number of vectors the statistics came from.
    """

    mean: np.ndarray
    std: np.ndarray
    kept: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to_dict(self) -> dict:
        """JSON-ready form (to store beside cached vectors)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "kept": self.kept.tolist(), "n": self.n}

    @classmethod
    def from_dict(cls, data: dict) -> "Standardisation":
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64),
                   np.asarray(data["kept"], bool), int(data["n"]))


def standardise(vectors) -> Tuple[np.ndarray, Standardisation]:
    """Z-score each dimension of a set of raw vectors over the set.

    Parameters
    ----------
    vectors : array
        (N, D) raw vectors (:func:`raw_vector`) of the clips being compared,
        N >= 2.

    Returns
    -------
    z : numpy.ndarray
        (N, D) float32; each kept dimension has mean 0 and population
        standard deviation 1 over the N rows.
    stats : Standardisation
        For :func:`apply_standardisation` of queries from outside the set.

    Notes
    -----
    Zero-variance guard: a dimension whose std over the set is at most
    ``STD_FLOOR_REL * max(1, |mean|)`` (1e-6 of its own scale, i.e. constant
    up to float32 rounding -- typically a band at the -80 dB floor in every
    clip) cannot tell the set's clips apart. It is not divided by its tiny
    std (which would blow a query's difference there up by ~1e6 and let that
    one dimension decide every query's distances); it is set to 0 in every
    standardised vector, the set's and queries' alike, i.e. left out of the
    distance.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"standardise: expected (N, D) vectors, got shape {v.shape}")
    if v.shape[0] < 2:
        raise ValueError(f"standardise: z-scores need at least 2 vectors, got {v.shape[0]}")
    if not np.isfinite(v).all():
        raise ValueError("standardise: vectors contain NaN or inf")
    mean = v.mean(0)
    std = v.std(0)
    kept = std > STD_FLOOR_REL * np.maximum(1.0, np.abs(mean))
    stats = Standardisation(mean, std, kept, int(v.shape[0]))
    return apply_standardisation(v, stats), stats


def apply_standardisation(v, stats: Standardisation) -> np.ndarray:
    """Z-score (D,) or (N, D) raw vectors with a set's statistics; float32, same shape."""
    x = np.asarray(v, dtype=np.float64)
    if x.shape[-1:] != (stats.dim,) or x.ndim not in (1, 2):
        raise ValueError(f"apply_standardisation: expected (D,) or (N, D) with D = {stats.dim}, got {x.shape}")
    scale = np.where(stats.kept, stats.std, 1.0)
    z = np.where(stats.kept, (x - stats.mean) / scale, 0.0)
    return z.astype(np.float32)


def baseline_vectors(name: str, images: Sequence, cfg: FeatureConfig = FeatureConfig()
                     ) -> Tuple[np.ndarray, Standardisation]:
    """Raw vectors of whole-clip images, z-scored over them: ((N, D) float32, stats)."""
    if len(images) < 2:
        raise ValueError(f"{name}: z-scores need at least 2 clips, got {len(images)}")
    return standardise(np.stack([raw_vector(name, im, cfg) for im in images]))


def cosine_distance(x: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """(B,) 1 - cosine similarity of two (B, D) batches of z-scored vectors; exactly 0 for equal rows.

    ``validate`` is accepted like the image metrics' flag; the shape check is
    cheap and always done.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"expected two (B, D) batches of vectors, got {tuple(x.shape)} and {tuple(y.shape)}")
    d = vector_distance(x, y, "cosine")
    # Identical rows give 1 - cos = ~1e-7 in float32, and 1 for a zero row;
    # make both exactly 0, as on the diagonal of the matrix.
    return torch.where((x == y).all(-1), torch.zeros_like(d), d)


def _baseline_metric(name: str, display_name: str, description: str, params: Dict) -> Metric:
    def pairwise(specs, *, memory_budget_mb=512, progress=None, cancel=None, device=None) -> torch.Tensor:
        steps = _Steps(1, progress, cancel)
        v = _prepare_any(specs, metric, device)  # (N, D)
        d = vector_distance_matrix(v, "cosine")  # (N, N) float64, CPU
        # Two all-zero rows (clips equal to the set's mean) are identical: 0, as in fn.
        zero = (v == 0).all(1).cpu()
        d[zero[:, None] & zero[None, :]] = 0.0
        steps.step()
        return d

    def index(specs, *, memory_budget_mb=512, progress=None, cancel=None, device=None) -> EmbeddingIndex:
        steps = _Steps(1, progress, cancel)
        v = _prepare_any(specs, metric, device)  # (N, D)
        steps.step()
        return EmbeddingIndex(v, metric, None, "cosine")

    metric = Metric(
        name=name,
        display_name=display_name,
        fn=cosine_distance,
        params=params,
        description=description,
        pairwise=pairwise,
        index=index,
        input_kind="vector",
    )
    return metric


def baseline_metrics() -> List[Metric]:
    """The registry entries of the baselines (registered with the built-ins)."""
    common = {
        "baseline": True,
        "vector_from": "logmel-image",
        "clip": "whole clip",
        "stats": "mean+std over time",
        "standardise": "z-score over the library",
        "distance": "cosine",
    }
    return [
        _baseline_metric(
            "logmel-stats",
            "Log-mel stats",
            "Baseline: cosine distance between per-band means and standard deviations over time of "
            "the log-mel level in dB, z-scored over the library.",
            dict(common, bands="n_mels", scale="dB"),
        ),
        _baseline_metric(
            "mfcc-stats",
            "MFCC stats",
            "Baseline: cosine distance between the means and standard deviations over time of 20 "
            "MFCCs (orthonormal DCT-II of the log-mel in dB), z-scored over the library.",
            dict(common, coefficients=N_MFCC, dct="DCT-II ortho (torchaudio create_dct)", scale="dB"),
        ),
    ]
