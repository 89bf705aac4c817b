"""Ray Data engine: the builder's stages on a Ray cluster, for catalogs one machine indexes too slowly.

    catalog rows, one Arrow block per batch
      -> reader tasks on CPUs: read_batch (read, decode once, preprocess per image tower, thumbnail, SHA-1)
      -> an encode actor pool (map_batches): one EncodeStage per actor, a GPU each if any
      -> this process: rows gathered per shard, written by ShardWriter

The stages are the local engine's own code and the shards its file format, so build_index
resumes, assembles and swaps the index exactly as it does locally. Rows travel as Arrow
columns, one per photo, and Ray Data batches them for the actors. Photos are read where
the tasks run: a local path must exist on every node (a shared filesystem), a URI needs
the nodes' credentials, parquet rows bring their bytes along.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data
import torch

import core
from core.catalog import CatalogItem
from core.settings import model_location_env
from core.pipeline import BuildError
from core.devices import require_device
from core.pipeline.encode_stage import EncodePlan
from core.pipeline.executor import BuildJob
from core.pipeline.progress import BuildProgress
from core.pipeline.reader import BatchTask, DecodedBatch, ImagePrep, RowRecord, read_batch, stack_pixels
from core.pipeline.writer import ShardWriter

# Settings the encode actors load models with: a remote node does not inherit the driver's environment.
_SOURCE = pa.schema([
    ("position", pa.int64()), ("shard", pa.int64()), ("id", pa.string()), ("caption", pa.string()),
    ("path", pa.string()), ("uri", pa.string()), ("data", pa.binary()),
])
_RECORD = ("position", "shard", "sha1", "thumbnail", "error")
_NO_PIXELS = np.zeros((0, 0, 0), dtype=np.uint8)


def source_block(items: Sequence[CatalogItem], task: BatchTask) -> pa.Table:
    """The catalog rows of one batch as an Arrow block: what a reader task needs to find each photo."""
    rows = [items[p] for p in task.positions]
    return pa.table({
        "position": list(task.positions),
        "shard": [task.shard] * len(rows),
        "id": [item.id for item in rows],
        "caption": [item.caption for item in rows],
        "path": [str(item.image_path) if item.image_path is not None else None for item in rows],
        "uri": [item.image_uri for item in rows],
        "data": [item.image_bytes for item in rows],
    }, schema=_SOURCE)


def pixel_column(tower: int) -> str:
    """The column of one image tower's pixels (a build may feed several towers from one read)."""
    return f"pixels_{tower}"


def read_rows(batch: dict[str, np.ndarray], preps: Sequence[ImagePrep]) -> dict[str, np.ndarray]:
    """Reader task: one block of catalog rows -> one row per photo (pixels per tower, or the reason it has none)."""
    items = {
        int(position): CatalogItem(item_id, caption, {}, Path(path) if path else None, data, uri)
        for position, item_id, caption, path, data, uri in zip(
            batch["position"], batch["id"], batch["caption"], batch["path"], batch["data"], batch["uri"]
        )
    }
    decoded = read_batch(items, BatchTask(int(batch["shard"][0]), tuple(items)), preps)
    captions = iter(decoded.captions)
    readable = [row.error is None for row in decoded.rows]
    pixels = {}
    for tower, tensor in enumerate(decoded.pixels):
        arrays = iter(tensor.numpy())
        pixels[pixel_column(tower)] = [next(arrays) if ok else _NO_PIXELS for ok in readable]
    return {
        "position": np.array([row.position for row in decoded.rows], dtype=np.int64),
        "shard": batch["shard"],
        "sha1": _objects(row.sha1 for row in decoded.rows),
        "thumbnail": _objects(row.thumbnail for row in decoded.rows),
        "error": _objects(row.error or "" for row in decoded.rows),  # '' = readable: an all-None column loses its type
        "caption": _objects(next(captions) if ok else "" for ok in readable),
        **pixels,
        "read_seconds": np.full(len(readable), decoded.seconds / len(readable)),
    }


class EncodeRows:
    """Encoder actor: loads the models once, then encodes each batch of photos Ray Data hands it."""

    def __init__(self, plan: EncodePlan) -> None:
        if plan.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)  # as the local engine's model does: every core of the node
        self.stage = plan.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        readable = [i for i, error in enumerate(batch["error"]) if not error]
        pixels = tuple(
            stack_pixels([batch[pixel_column(tower)][i] for i in readable])
            for tower in range(len(self.stage.towers))
        )
        started = time.perf_counter()
        vectors = self.stage.encode(DecodedBatch(-1, [], pixels, [batch["caption"][i] for i in readable], 0.0))
        rows = len(batch["error"])
        out = {key: batch[key] for key in (*_RECORD, "read_seconds")}
        out["encode_seconds"] = np.full(rows, (time.perf_counter() - started) / rows)
        for stem, array in vectors.items():
            out[stem] = np.zeros((rows, array.shape[1]), dtype=np.float32)
            out[stem][readable] = array
        return out


class ShardRows:
    """Encoded rows as they come back, in any order; a shard is written as soon as its last row is in."""

    def __init__(self, writer: ShardWriter, sizes: dict[int, int], stems: Sequence[str]) -> None:
        self.writer = writer
        self.missing = dict(sizes)
        self.stems = list(stems)
        self._rows: dict[int, list[tuple[RowRecord, dict[str, np.ndarray] | None]]] = defaultdict(list)

    def add(self, batch: dict[str, np.ndarray], progress: BuildProgress) -> None:
        readable = 0
        for i, (position, shard, sha1, thumbnail, error) in enumerate(zip(*(batch[key] for key in _RECORD))):
            vectors = None if error else {stem: batch[stem][i] for stem in self.stems}
            readable += vectors is not None
            self._rows[int(shard)].append((RowRecord(int(position), sha1, thumbnail, error or None), vectors))
            self.missing[int(shard)] -= 1
            if not self.missing[int(shard)]:
                self._write(int(shard), {stem: batch[stem].shape[1] for stem in self.stems}, progress)
        progress.record("decode", float(batch["read_seconds"].sum()), len(batch["error"]))
        progress.record("encode", float(batch["encode_seconds"].sum()), readable)
        progress.advance(len(batch["error"]))

    def _write(self, shard: int, dims: dict[str, int], progress: BuildProgress) -> None:
        rows = sorted(self._rows.pop(shard), key=lambda row: row[0].position)
        vectors = {
            stem: np.array([v[stem] for _, v in rows if v is not None], dtype=np.float32).reshape(-1, dims[stem])
            for stem in self.stems
        }
        with progress.timed("write", len(rows)):
            self.writer.write(shard, [record for record, _ in rows], vectors)

    def unfinished(self) -> list[int]:
        return sorted(shard for shard, missing in self.missing.items() if missing)


class RayExecutor:
    """Runs a build's pending shards with Ray Data, on the cluster at `address` or on a Ray
    started here (address None). A Ray the caller already initialised is used as it is: its
    workers must be able to import core/ (this executor ships it only when it connects).
    `concurrency` is the number of encode actors: by default one per GPU of the cluster,
    or one per node without GPUs (a CPU actor uses all its node's cores)."""

    def __init__(self, address: str | None = None, concurrency: int | None = None) -> None:
        self.address = address
        self.concurrency = concurrency
        self._started = False

    def resolve_device(self, requested: str) -> str:
        """The encode actors' device: what the cluster has, not what this driver has."""
        self._connect()
        gpus = ray.cluster_resources().get("GPU", 0)
        if requested == "auto":
            return "cuda" if gpus else "cpu"
        if requested == "cuda" and not gpus:
            raise BuildError("--device cuda: the Ray cluster has no GPU. Use --device auto or cpu.")
        return require_device(requested) if requested == "mps" else requested

    def run(self, job: BuildJob, progress: BuildProgress) -> None:
        try:
            if job.shards:
                self._run(job, progress)
        finally:
            if self._started:  # a Ray started for this build goes with it
                ray.shutdown()
                self._started = False

    def _run(self, job: BuildJob, progress: BuildProgress) -> None:
        self._connect()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the builder's own bar shows progress
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # it warns that its bars are off
        rows = ShardRows(job.writer, {shard.number: len(shard) for shard in job.shards}, job.plan.stems)
        for batch in self.dataset(job).iter_batches(batch_size=None, batch_format="numpy"):
            rows.add(batch, progress)
        if rows.unfinished():
            raise BuildError(f"Ray returned no rows for shards {rows.unfinished()}; run the build again.")

    def dataset(self, job: BuildJob) -> ray.data.Dataset:
        """The build as a Ray Data pipeline, not yet run: reader tasks, then the encode actor pool."""
        plan = job.plan
        preps = plan.preps()
        blocks = [source_block(job.items, task) for shard in job.shards for task in shard.batches(job.batch_size)]
        env = model_location_env()
        gpu = plan.device == "cuda"
        return (
            ray.data.from_arrow(blocks)
            .map_batches(read_rows, fn_kwargs={"preps": preps}, batch_size=None, num_cpus=1)
            .map_batches(
                EncodeRows,
                fn_constructor_args=(plan,),
                batch_size=job.batch_size,
                compute=ray.data.ActorPoolStrategy(size=self.concurrency or self._default_actors(gpu)),
                num_cpus=1,
                num_gpus=1 if gpu else None,
                # Its own runtime_env also keeps Ray Data from fusing the reader into the actor,
                # where decoding would wait for the model instead of running beside it.
                runtime_env={"env_vars": {**env, "TOKENIZERS_PARALLELISM": "false"}},
            )
        )

    @staticmethod
    def _default_actors(gpu: bool) -> int:
        if gpu:
            return max(1, int(ray.cluster_resources().get("GPU", 1)))
        return max(1, sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU")))

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        _check_reachable(self.address)
        code = {"py_modules": [os.path.dirname(core.__file__)]}  # the nodes import this checkout's core/
        try:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING, runtime_env=code)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise BuildError(f"Could not start or reach {where}: {err}") from err
        self._started = True


def _check_reachable(address: str | None) -> None:
    """Refuse a host:port nobody answers on at once: ray.init would retry it for minutes."""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # None (start a local Ray), 'auto', 'local': Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as err:
        raise BuildError(f"Cannot reach the Ray cluster at {address} ({err}). Is it running? (ray status)") from err


def _objects(values) -> np.ndarray:
    """A 1-d object array (strings, bytes, None) that numpy does not try to reshape."""
    values = list(values)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
