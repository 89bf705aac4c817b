"""A 2-D map of a vector space: principal component analysis, fitted once, applied to any query.

The catalog page draws every product photo at its first two principal coordinates and the
current query at its own, so a visitor sees where a search lands among the products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """The mean and the two leading principal axes of a set of vectors."""

    mean: np.ndarray
    axes: np.ndarray  # 2 x d, unit rows, by explained variance
    explained: tuple[float, float]  # share of the total variance along each axis

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Projection:
        """Eigenvectors of the d x d covariance: cheap for many vectors of a few hundred dimensions."""
        data = np.asarray(vectors, dtype=np.float64)
        if data.ndim != 2 or len(data) < 2 or data.shape[1] < 2:
            raise ValueError("A 2-D map needs at least two vectors of at least two dimensions.")
        mean = data.mean(axis=0)
        centred = data - mean
        covariance = centred.T @ centred / (len(data) - 1)
        values, vectors_ = np.linalg.eigh(covariance)
        order = np.argsort(values)[::-1][:2]
        axes = vectors_[:, order].T
        # eigenvectors have no sign of their own: fix one so the map does not flip between runs
        axes *= np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
        total = float(values.sum()) or 1.0
        explained = (float(values[order[0]]) / total, float(values[order[1]]) / total)
        return cls(mean.astype(np.float32), axes.astype(np.float32), explained)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """n x 2 coordinates of n vectors (one vector gives one row)."""
        return (np.atleast_2d(np.asarray(vectors, dtype=np.float32)) - self.mean) @ self.axes.T
