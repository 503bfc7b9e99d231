"""2-D maps of a library: PCA or t-SNE of embeddings, MDS of a distance matrix.

A fitted :class:`Projection` places NEW clips without refitting, so the map a
user has learned to read does not move:

* PCA: the fitted linear map (``transform``);
* t-SNE and MDS have no out-of-sample map; a new point goes to the
  inverse-distance-weighted mean of its k nearest fitted points' positions
  (distances in the input space: Euclidean between embeddings for t-SNE, the
  metric's distances to the fitted clips for MDS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("pca", "tsne", "mds")


@dataclass
class Projection:
    """A fitted 2-D layout of N items."""

    method: str
    coords: np.ndarray  # (N, 2)
    seed: int = 0
    _pca: object = field(default=None, repr=False)
    _fit_vectors: np.ndarray | None = field(default=None, repr=False)  # (N, D), pca / tsne

    def place(self, vectors: np.ndarray | None = None, distances: np.ndarray | None = None,
              k: int = 5) -> np.ndarray:
        """2-D positions of new items, (M, 2), without refitting.

        Parameters
        ----------
        vectors : (M, D) array, for PCA and t-SNE layouts.
        distances : (M, N) array of distances to the fitted items, for MDS layouts.
        """
        if self.method == "pca":
            if vectors is None:
                raise ValueError("placing into a PCA map needs the new items' vectors")
            return self._pca.transform(np.asarray(vectors, dtype=np.float64))
        if self.method == "tsne":
            if vectors is None:
                raise ValueError("placing into a t-SNE map needs the new items' vectors")
            diff = np.asarray(vectors, np.float64)[:, None, :] - self._fit_vectors[None]
            distances = np.sqrt((diff * diff).sum(-1))
        if distances is None:
            raise ValueError("placing into an MDS map needs the new items' distances to the fitted items")
        return _knn_interpolate(np.asarray(distances, np.float64), self.coords, k)


def _knn_interpolate(d: np.ndarray, coords: np.ndarray, k: int) -> np.ndarray:
    k = min(k, coords.shape[0])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]  # (M, k)
    dk = np.take_along_axis(d, idx, axis=1)
    w = 1.0 / np.maximum(dk, 1e-12)
    exact = dk <= 1e-12
    w = np.where(exact.any(axis=1, keepdims=True), exact.astype(np.float64), w)
    w /= w.sum(axis=1, keepdims=True)
    return (w[..., None] * coords[idx]).sum(axis=1)


def fit_embedding_map(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> Projection:
    """Fit PCA or t-SNE on (N, D) embeddings."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"a map needs at least 3 items with vectors, got shape {x.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(x)
        return Projection("pca", pca.transform(x), seed, _pca=pca, _fit_vectors=x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return Projection("tsne", coords, seed, _fit_vectors=x)
    raise ValueError(f"unknown embedding map method {method!r}; use 'pca' or 'tsne' (or fit_distance_map for MDS)")


def fit_distance_map(distances: np.ndarray, seed: int = 0) -> Projection:
    """Metric MDS of an (N, N) distance matrix."""
    from sklearn.manifold import MDS

    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 3:
        raise ValueError(f"MDS needs a square distance matrix of at least 3 items, got shape {d.shape}")
    d = 0.5 * (d + d.T)
    import inspect

    if "metric_mds" in inspect.signature(MDS).parameters:  # scikit-learn >= 1.8
        mds = MDS(n_components=2, metric="precomputed", random_state=seed, n_init=1, init="classical_mds",
                  normalized_stress="auto")
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4, normalized_stress="auto")
    return Projection("mds", mds.fit_transform(d), seed)
