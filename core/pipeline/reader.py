"""Reader stage: catalog rows -> decoded, preprocessed pixels, thumbnails and row records.

Each photo is read and decoded once; each image tower of the build then gets its own resize
and crop of it (cheap beside the decode), so one pass over the catalog feeds every tower.

It runs where the executor puts it (DataLoader worker processes locally, each with one
torch thread, so decoding overlaps the model instead of competing for its cores). A row
that cannot be read ends as an error on its record: one bad file never stops a build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.catalog import CatalogItem
from core.images import ImageError, decode_image, read_image_bytes
from core.remote import RemoteError
from core.pipeline.thumbnails import make_thumbnail

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_S = 1.0


@dataclass(frozen=True)
class ImagePrep:
    """The model's own image processor, stopped before rescale and normalise.

    Resize and centre crop give uint8 pixels: four times less to ship between processes
    and to the GPU than float32. The encode stage rescales and normalises on the device.
    """

    processor: Any  # a transformers image processor (picklable configuration)

    def __call__(self, image: Image.Image) -> np.ndarray:
        out = self.processor(image, do_rescale=False, do_normalize=False, return_tensors="np")
        return out["pixel_values"][0]


@dataclass(frozen=True)
class BatchTask:
    """Which catalog rows (positions in the build's item list) one batch reads, and their shard."""

    shard: int
    positions: tuple[int, ...]


@dataclass(frozen=True)
class RowRecord:
    """What the index keeps of one row: its photo's hash and thumbnail, or why it was skipped."""

    position: int
    sha1: str = ""
    thumbnail: bytes = b""
    error: str | None = None


@dataclass
class DecodedBatch:
    """One batch out of the reader: a record per row, pixels and caption per readable row."""

    shard: int
    rows: list[RowRecord]
    pixels: tuple[torch.Tensor, ...]  # per image tower: (readable rows, 3, H, W), uint8 from the processors we know
    captions: list[str]  # '' where a row has no caption
    seconds: float  # reader time spent on this batch (read, decode, preprocess, thumbnail)

    def pin_memory(self) -> DecodedBatch:
        """Called by the DataLoader's pinning thread: page-locked pixels copy to the GPU asynchronously."""
        return replace(self, pixels=tuple(tensor.pin_memory() for tensor in self.pixels))


def read_row(
    position: int, item: CatalogItem, preps: Sequence[ImagePrep]
) -> tuple[RowRecord, list[np.ndarray] | None]:
    """A row's record and its pixels as each tower's processor prepares them (decoded once), or a
    record that says why it cannot be indexed."""
    try:
        data = read_image_bytes(item.image_path if item.image_path is not None else item.read_bytes())
        image = decode_image(data)
        pixels = [prep(image) for prep in preps]
        thumbnail = make_thumbnail(image)
    except (ImageError, RemoteError) as err:
        return RowRecord(position, error=str(err)), None
    except Exception as err:  # decoders and processors fail on odd input in odd ways; skip the row, say why
        return RowRecord(position, error=f"{type(err).__name__}: {err}"), None
    return RowRecord(position, hashlib.sha1(data).hexdigest(), thumbnail), pixels


def read_batch(
    items: Sequence[CatalogItem] | Mapping[int, CatalogItem], task: BatchTask, preps: Sequence[ImagePrep]
) -> DecodedBatch:
    """Read every row of a batch task (items by position: the whole catalog, or just these rows);
    the pixels of the readable ones are stacked for the encode stage, one tensor per tower."""
    started = time.perf_counter()
    rows, pixels, captions = [], [], []
    for position in task.positions:
        record, arrays = read_row(position, items[position], preps)
        rows.append(record)
        if arrays is not None:
            pixels.append(arrays)
            captions.append(items[position].caption or "")
    stacked = tuple(stack_pixels([arrays[tower] for arrays in pixels]) for tower in range(len(preps)))
    return DecodedBatch(task.shard, rows, stacked, captions, time.perf_counter() - started)


def stack_pixels(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """One tower's pixels of a batch as one uint8 tensor (an empty one when no row was readable)."""
    return torch.from_numpy(np.stack(arrays)) if len(arrays) else torch.empty((0, 3, 0, 0), dtype=torch.uint8)


def bind_to_parent(parent: int, worker_id: int = 0) -> None:
    """A reader worker's first step (the DataLoader's worker_init_fn): die with the builder.

    A builder killed outright (SIGKILL, the OOM killer, a task manager) runs no cleanup, and
    its workers would live on holding hundreds of MB each. On Linux the kernel sends them
    SIGKILL when the builder dies (PR_SET_PDEATHSIG); everywhere a watchdog thread exits as
    soon as the worker's parent is no longer the builder (it was re-parented)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog still stands
    if os.getppid() != parent:  # the builder died before the line above
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)
