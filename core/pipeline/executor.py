"""Executors drive the three stages over the pending shards of a build.

`Executor.run(job, progress)` is the whole contract: read every row of `job.shards`,
encode the readable ones, hand each completed shard to `job.writer`, report to
`progress`; `resolve_device` says where the encode stage will run. LocalExecutor does it on
this machine with DataLoader worker processes; RayExecutor (ray_executor.py: Ray Data
reader tasks, an encode actor pool) implements the same methods with the same stage
objects, and the rest of the build does not change.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from core.catalog import CatalogItem
from core.devices import require_device
from core.pipeline.encode_stage import EncodePlan
from core.pipeline.progress import BuildProgress
from core.pipeline.reader import BatchTask, DecodedBatch, ImagePrep, bind_to_parent, read_batch
from core.pipeline.writer import ShardBuffer, ShardWriter


@dataclass(frozen=True)
class ShardTask:
    """One unit of resumable work: some rows of the build's item list, by position, in order."""

    number: int
    positions: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.positions)

    def batches(self, batch_size: int) -> list[BatchTask]:
        return [
            BatchTask(self.number, self.positions[first : first + batch_size])
            for first in range(0, len(self.positions), batch_size)
        ]


def plan_shards(positions: Sequence[int], shard_size: int, first_number: int = 0) -> list[ShardTask]:
    """Fixed groups of rows: shard n always holds the same rows, so any run can pick up any shard.

    A full build plans every row; an update only the rows it must encode (core/pipeline/delta.py)."""
    positions = tuple(positions)
    return [
        ShardTask(first_number + n, positions[start : start + shard_size])
        for n, start in enumerate(range(0, len(positions), shard_size))
    ]


@dataclass
class BuildJob:
    """Everything an executor needs; each piece is plain data or picklable."""

    items: Sequence[CatalogItem]
    shards: list[ShardTask]  # the pending ones, in row order
    batch_size: int
    plan: EncodePlan
    writer: ShardWriter


class Executor(Protocol):
    def resolve_device(self, requested: str) -> str:
        """The device the encode stage will run on ('auto' resolved), or BuildError if there is none such."""
        ...

    def run(self, job: BuildJob, progress: BuildProgress) -> None: ...


class CatalogRows(Dataset):
    """A map-style dataset whose index is a whole BatchTask: each worker reads one batch at a time."""

    def __init__(self, items: Sequence[CatalogItem], preps: Sequence[ImagePrep]) -> None:
        self.items = items
        self.preps = tuple(preps)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, task: BatchTask) -> DecodedBatch:
        return read_batch(self.items, task, self.preps)


def default_workers(device: torch.device) -> int:
    """Reader processes: on a CPU one keeps ahead of the model and leaves it the other cores;
    a GPU eats images far faster, so it gets every core but the one feeding it."""
    cpus = os.cpu_count() or 1
    if cpus == 1:
        return 0
    return 1 if device.type == "cpu" else min(cpus - 1, 16)


class LocalExecutor:
    """Reader in DataLoader worker processes (one torch thread each), encode stage and writer in this process."""

    def __init__(self, workers: int | None = None, ready_batches: int = 4) -> None:
        self.workers = workers
        self.ready_batches = ready_batches  # decoded batches kept waiting for the encode stage, across workers

    def resolve_device(self, requested: str) -> str:
        return require_device(requested)

    def run(self, job: BuildJob, progress: BuildProgress) -> None:
        if not job.shards:
            return
        stage = job.plan.load()
        workers = default_workers(stage.device) if self.workers is None else self.workers
        loader = DataLoader(
            CatalogRows(job.items, stage.preps),
            sampler=[task for shard in job.shards for task in shard.batches(job.batch_size)],
            batch_size=None,
            num_workers=workers,
            pin_memory=stage.device.type == "cuda",
            prefetch_factor=max(2, math.ceil(self.ready_batches / workers)) if workers else None,
            worker_init_fn=functools.partial(bind_to_parent, os.getpid()),
        )
        sizes = {shard.number: len(shard) for shard in job.shards}
        buffer = ShardBuffer()
        for batch in loader:  # in sampler order: a shard's batches come together, shards in order
            progress.read(batch)
            with progress.timed("encode", len(batch.captions)):
                vectors = stage.encode(batch)
            buffer.add(batch.rows, vectors)
            if len(buffer.rows) == sizes[batch.shard]:
                with progress.timed("write", len(buffer.rows)):
                    job.writer.write(batch.shard, buffer.rows, buffer.vectors())
                buffer = ShardBuffer()
            progress.advance(len(batch.rows))
