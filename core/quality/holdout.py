"""The held-out split, by product id: the same products are held out by fine-tuning and evaluation.

A product is held out when a hash of its id falls below the fraction. That needs no seed
and no list of ids, survives catalog reordering and growth, keeps every photo of a product
on one side, and nests: the products held out at 0.1 are also held out at 0.2. So
`core.evaluate --val-fraction F` never queries a product that `core.finetune
--val-fraction F` (or any larger F) trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

DEFAULT_VAL_FRACTION = 0.1


def holdout_position(product_id: str) -> float:
    """A fixed pseudo-random number in [0, 1) for the product id."""
    digest = hashlib.sha256(f"vitrine-holdout\x1f{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def held_out_mask(product_ids: Iterable[str], fraction: float) -> np.ndarray:
    """True for the ids on the held-out side of the split."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1], not {fraction}")
    return np.array([holdout_position(str(pid)) < fraction for pid in product_ids], dtype=bool)
