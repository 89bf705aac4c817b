"""Pure ranking functions: weighted reciprocal-rank fusion, one hit per product, threshold.

Text-image and text-text cosines sit on different scales, so lists are fused by rank,
never by raw cosine. Nothing here knows about indexes or models: rows in, rows out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RRF_K = 60


@dataclass(frozen=True)
class RankedList:
    """One index's answer, best first; `weight` scales its reciprocal ranks in the fusion.

    Rows where `keep` is False (excluded products, captionless rows) take no part, but
    still hold their rank: leaving the query's own product out moves no one else up."""

    name: str  # "image" or "caption"
    weight: float
    rows: np.ndarray
    keep: np.ndarray


@dataclass(frozen=True)
class Fused:
    """Rows ordered by fused value (ties by photo cosine), with what each row scored."""

    rows: list[int]
    rank_score: dict[int, float]
    matched: dict[int, tuple[str, ...]]


def fuse(lists: Sequence[RankedList], cosine: dict[int, float]) -> Fused:
    """Weighted reciprocal rank, `weight / (RRF_K + rank)`, summed over lists; lists of weight 0 are ignored.

    `cosine` gives each listed row's photo cosine, the tie-breaker."""
    value: dict[int, float] = {}
    matched: dict[int, list[str]] = {}
    for ranked in lists:
        if ranked.weight <= 0.0:
            continue
        for rank, (row, keep) in enumerate(zip(ranked.rows.tolist(), ranked.keep.tolist()), 1):
            if not keep:
                continue
            value[row] = value.get(row, 0.0) + ranked.weight / (RRF_K + rank)
            matched.setdefault(row, []).append(ranked.name)
    order = sorted(value, key=lambda row: (-value[row], -cosine[row]))
    return Fused(order, value, {row: tuple(names) for row, names in matched.items()})


def best_per_product(rows: Sequence[int], product_of: Sequence[str]) -> list[int]:
    """The first (best) row of each product, in the given order: several photos, one hit."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        product = product_of[row]
        if product not in seen:
            seen.add(product)
            kept.append(row)
    return kept


def cut(rows: Sequence[int], cosine: dict[int, float], k: int, threshold: float | None) -> tuple[list[int], int]:
    """The first `k` rows whose cosine reaches the threshold, and how many were dropped below it."""
    kept, below = [], 0
    for row in rows:
        if threshold is not None and cosine[row] < threshold:
            below += 1
            continue
        kept.append(row)
        if len(kept) == k:
            break
    return kept, below
