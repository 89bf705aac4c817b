"""Steering: move a query vector away from "not" words and toward / away from example products.

Rocchio-style, on unit vectors, before the search (nothing is re-encoded: products use their
stored photo vectors, words the text tower's cached vectors):

    q' = normalize(q + LIKE_WEIGHT * mean(liked) - UNLIKE_WEIGHT * mean(unliked) - NOT_WEIGHT * mean(not words))

With no query of its own (only liked products), q is the mean of the liked products.
Pure functions: vectors in, a vector out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rocchio's classic weights (alpha 1, beta 0.75, gamma 0.15) let positive feedback dominate; a
# shopper's thumbs-down is a clear "not this", so it gets more than the classic 0.15.
LIKE_WEIGHT = 0.75
UNLIKE_WEIGHT = 0.25
# "Not" words: strong enough to reorder a CLIP top 10, weak enough that the query's own subject
# (the text part shared by "shoes" and "black") survives; see the README's steering section.
NOT_WEIGHT = 0.5


class SteeringError(ValueError):
    """Steering that leaves no direction to search in (everything cancelled out)."""


def _mean(vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    if not len(vectors):
        return None
    return np.mean(np.asarray(vectors, dtype=np.float32), axis=0)


def steer(
    query: np.ndarray | None,
    *,
    liked: Sequence[np.ndarray] = (),
    unliked: Sequence[np.ndarray] = (),
    not_vectors: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """The steered unit query vector (see the module docstring); `query` None means "start from the likes"."""
    liked_mean = _mean(liked)
    if query is None:
        if liked_mean is None:
            raise SteeringError("Give words, a photo or a liked product to search with.")
        moved = liked_mean.astype(np.float32)
    else:
        moved = np.asarray(query, dtype=np.float32).copy()
        if liked_mean is not None:
            moved += LIKE_WEIGHT * liked_mean
    for weight, vectors in ((UNLIKE_WEIGHT, unliked), (NOT_WEIGHT, not_vectors)):
        mean = _mean(vectors)
        if mean is not None:
            moved -= weight * mean
    norm = float(np.linalg.norm(moved))
    if norm < 1e-6:
        raise SteeringError("The query and its steering cancel each other out; drop a 'not' word or a dislike.")
    return (moved / norm).astype(np.float32)
