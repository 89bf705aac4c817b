"""Writer stage: a shard is the row records and vectors of one contiguous range of catalog rows.

    shards/000012/rows.parquet   position, sha1, thumbnail (WebP bytes), error (null when indexed)
    shards/000012/<stem>.npy     float32 vectors of the indexed rows, in row order

A shard is written into a temporary folder, flushed to disk and renamed into place, so a
shard folder that exists is complete: that is what lets a killed build continue where it
stopped. This module owns the format; assembly reads shards back through it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.pipeline.reader import RowRecord

ROWS_FILE = "rows.parquet"
_ROWS_SCHEMA = pa.schema(
    [("position", pa.int64()), ("sha1", pa.string()), ("thumbnail", pa.binary()), ("error", pa.string())]
)


def shard_name(number: int) -> str:
    return f"{number:06d}"


class ShardBuffer:
    """Collects a shard's batches until all its rows are in (batches arrive in row order)."""

    def __init__(self) -> None:
        self.rows: list[RowRecord] = []
        self._vectors: dict[str, list[np.ndarray]] = {}

    def add(self, rows: Sequence[RowRecord], vectors: Mapping[str, np.ndarray]) -> None:
        self.rows.extend(rows)
        for stem, array in vectors.items():
            self._vectors.setdefault(stem, []).append(array)

    def vectors(self) -> dict[str, np.ndarray]:
        return {stem: np.concatenate(parts) for stem, parts in self._vectors.items()}


class ShardWriter:
    """Writes finished shards into one folder; picklable, so a remote worker can write too."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def write(self, number: int, rows: Sequence[RowRecord], vectors: Mapping[str, np.ndarray]) -> None:
        final = self.folder / shard_name(number)
        tmp = self.folder / f".{shard_name(number)}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for stem, array in vectors.items():
            with open(tmp / f"{stem}.npy", "wb") as handle:
                np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
                _sync(handle)
        table = pa.table(
            {
                "position": [r.position for r in rows],
                "sha1": [r.sha1 for r in rows],
                "thumbnail": [r.thumbnail for r in rows],
                "error": [r.error for r in rows],
            },
            schema=_ROWS_SCHEMA,
        )
        with open(tmp / ROWS_FILE, "wb") as handle:
            pq.write_table(table, handle)
            _sync(handle)
        os.replace(tmp, final)
        _sync_folder(self.folder)


def read_shard(folder: Path, number: int, stems: Sequence[str]) -> tuple[list[RowRecord], dict[str, np.ndarray]]:
    """A finished shard's row records (in row order) and its vectors by stem."""
    path = Path(folder) / shard_name(number)
    rows = [RowRecord(**row) for row in pq.read_table(path / ROWS_FILE).to_pylist()]
    vectors = {stem: np.load(path / f"{stem}.npy", allow_pickle=False) for stem in stems}
    return rows, vectors


def intact_shards(folder: Path, stems: Sequence[str], expected_rows: Mapping[int, int]) -> set[int]:
    """Numbers of the finished shards that hold what they should; damaged ones are removed, to be redone."""
    folder = Path(folder)
    if not folder.is_dir():
        return set()
    intact = set()
    for path in folder.iterdir():
        if not path.name.isdigit():
            shutil.rmtree(path, ignore_errors=True)  # a shard write cut short by a kill
            continue
        number = int(path.name)
        if _holds(path, stems, expected_rows.get(number)):
            intact.add(number)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return intact


def _holds(path: Path, stems: Sequence[str], rows: int | None) -> bool:
    """Row count, vector files and their shapes agree (headers only: cheap for thousands of shards)."""
    try:
        errors = pq.read_table(path / ROWS_FILE, columns=["error"]).column("error")
        indexed = errors.null_count  # rows without an error are the ones with vectors
        shapes = [np.load(path / f"{stem}.npy", mmap_mode="r", allow_pickle=False).shape for stem in stems]
    except (OSError, ValueError, pa.ArrowException):
        return False
    return len(errors) == rows and all(shape[0] == indexed for shape in shapes)


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (power loss), where the platform allows opening folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
