"""Synthetic embeddings for index benchmarks: clustered unit vectors shaped like CLIP's.

Real CLIP vectors are anisotropic (a shared direction) and clustered by product type;
uniform noise would make HNSW look better than it is on a catalog.
"""

from __future__ import annotations

import numpy as np


def clustered_unit_vectors(n: int, dim: int = 512, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre_rng = np.random.default_rng(12345)  # the same clusters for the catalog and its queries
    shared = centre_rng.normal(size=dim).astype(np.float32)
    centres = centre_rng.normal(size=(clusters, dim)).astype(np.float32) + 1.5 * shared
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        chunk = centres[rng.integers(0, clusters, size)] + 0.6 * rng.normal(size=(size, dim)).astype(np.float32)
        out[start : start + size] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out
