"""(image, caption) pairs of a catalog for fine-tuning, split into training and held-out products.

Every image is decoded once up front, so a row that cannot be read is reported before
training starts instead of failing an epoch halfway; pairs are then re-decoded per batch
(holding a large catalog's pixels in memory would not fit a laptop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from core.catalog import Catalog, CatalogError, CatalogItem, SkippedRow
from core.quality.holdout import held_out_mask
from core.images import ImageError, decode_image

ENCODE_CHUNK = 256


@dataclass(frozen=True)
class Pair:
    product_id: str
    caption: str
    item: CatalogItem


@dataclass
class TrainingPairs:
    train: list[Pair]
    held_out: list[Pair]
    skipped: list[SkippedRow]


def training_pairs(catalog: Catalog, val_fraction: float, limit: int | None = None, progress: bool = True) -> TrainingPairs:
    """The catalog's readable, captioned items, split by product id (core/quality/holdout.py)."""
    items = catalog.items[:limit] if limit else catalog.items
    if not items:
        raise CatalogError(f"The catalog {catalog.source} is empty: there is nothing to fine-tune on.")
    if not any(item.caption for item in items):
        raise CatalogError(
            f"The catalog {catalog.source} has no captions. Fine-tuning learns from (image, caption) pairs: "
            "give a captions CSV (or parquet) with a caption column, e.g. --caption-column productDisplayName."
        )
    pairs, skipped = [], list(catalog.skipped)
    for item in tqdm(items, desc="checking images", unit="img", disable=not progress):
        if not item.caption:
            skipped.append(SkippedRow(item.id, "no caption"))
            continue
        try:
            decode_image(item.read_bytes())
        except (ImageError, OSError) as err:
            skipped.append(SkippedRow(f"{item.id} ({item.image_path or 'embedded image'})", str(err)))
            continue
        pairs.append(Pair(item.id, item.caption, item))
    held = held_out_mask([pair.product_id for pair in pairs], val_fraction)
    split = TrainingPairs(
        train=[pair for pair, out in zip(pairs, held) if not out],
        held_out=[pair for pair, out in zip(pairs, held) if out],
        skipped=skipped,
    )
    if len(split.train) < 2 or len(split.held_out) < 2:
        raise CatalogError(
            f"{len(pairs)} usable (image, caption) pairs give {len(split.train)} for training and "
            f"{len(split.held_out)} held out at --val-fraction {val_fraction}; each side needs at least 2. "
            "Use a larger catalog or another --val-fraction."
        )
    return split


def decode_images(pairs: Sequence[Pair]) -> list[Image.Image]:
    return [decode_image(pair.item.read_bytes()) for pair in pairs]


def encode_pair_images(
    encode: Callable[[list[Image.Image]], np.ndarray | torch.Tensor], pairs: Sequence[Pair], desc: str, progress: bool
) -> torch.Tensor:
    """Unit image vectors of `pairs` in order, decoding a chunk at a time to bound memory."""
    chunks = []
    for start in tqdm(range(0, len(pairs), ENCODE_CHUNK), desc=desc, disable=not progress):
        chunks.append(torch.as_tensor(encode(decode_images(pairs[start : start + ENCODE_CHUNK]))))
    return torch.cat(chunks)
