"""Offline index builder: catalog -> reader -> encoder -> writer -> index folder.

    python -m core.build_index --images ../shared/data/fashion-products/images \\
        --captions ../shared/data/fashion-products/products.csv --out index_data/fashion

The stages live in core/pipeline/: worker processes decode and preprocess photos, the
model encodes batches on the device, finished shards go to a work folder beside the
target. A build killed at any moment continues from its last finished shard when run
again with the same arguments; the index folder is assembled from the shards and swapped
in only when complete. Bad rows are skipped and listed in <out>/skipped.csv.
With --engine ray the same stages run on a Ray cluster (core/pipeline/ray_executor.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.catalog import Catalog, CatalogError, SkippedRow, conflicting_ids, load_catalog
from core.atomic import replace_folder
from core.index import HnswParams, Manifest, check_folder
from core.models import REGISTRY, ModelLoadError, get_encoder, get_spec
from core.pipeline import BuildError
from core.pipeline.assemble import NOTES_FILE, REPORT_FILE, assemble_index
from core.devices import DeviceError, local_device
from core.pipeline.encoder import PRECISIONS, EncoderConfig, resolve_precision
from core.pipeline.executor import BuildJob, Executor, LocalExecutor, plan_shards
from core.pipeline.progress import BuildProgress
from core.pipeline.work import WorkFolder, needed_bytes
from core.pipeline.writer import ShardWriter, intact_shards
from core.sample import sample_catalog
from core.weights import model_facts

# A shard is this many batches: on a laptop CPU about two minutes of work to redo after a
# kill; on a GPU few enough files that flushing each shard to disk costs nothing.
SHARD_BATCHES = 16
SHARD_FORMAT = 1  # bump when the shard files change: older work folders are then not reused
ENGINES = ("local", "ray")


@dataclass
class BuildSummary:
    out: Path
    indexed: int
    skipped: list[SkippedRow]
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_items: dict[str, int] = field(default_factory=dict)  # rows (vectors, for index) each clock covers
    shards: int = 0
    resumed_shards: int = 0  # shards a killed earlier run had finished, reused as they were
    notes: list[SkippedRow] = field(default_factory=list)  # indexed, but worth a look (see NOTES_FILE)

    def describe(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        lines = [f"Indexed {self.indexed} images into {self.out} in {self.seconds:.1f} s ({rate:.1f} images/s)."]
        stages = [self._stage(name, seconds) for name, seconds in self.stage_seconds.items() if seconds > 0]
        if stages:
            lines.append("Stages: " + ", ".join(stages) + ".")
        if self.resumed_shards:
            lines.append(f"Continued an interrupted build: {self.resumed_shards} of {self.shards} shards were already done.")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} rows (see {self.out / REPORT_FILE}), e.g.:")
            lines += [f"  {row.row}: {row.reason}" for row in self.skipped[:5]]
        if self.notes:
            lines.append(
                f"{len(self.notes)} product ids are shared by rows that disagree on caption or metadata; "
                f"each is searched as one product (see {self.out / NOTES_FILE}), e.g.:"
            )
            lines += [f"  {row.row}: {row.reason}" for row in self.notes[:5]]
        return "\n".join(lines)

    def _stage(self, name: str, seconds: float) -> str:
        unit = {"decode": "images/s per worker", "index": "vectors/s"}.get(name, "images/s")
        return f"{name} {seconds:.1f} s ({self.stage_items.get(name, 0) / seconds:.0f} {unit})"


def build_index(
    catalog: Catalog,
    out: Path,
    models: Sequence[str] = tuple(REGISTRY),
    params: HnswParams = HnswParams(),
    *,
    device: str = "auto",
    batch_size: int = 32,
    limit: int | None = None,
    progress: bool = True,
    on_progress: Callable[[str, int, int], None] | None = None,
    workers: int | None = None,
    precision: str = "auto",
    shard_size: int | None = None,
    executor: Executor | None = None,
) -> BuildSummary:
    """Embed a catalog with the given models and write a complete index folder at `out`.

    `on_progress(stage, done, total)` lets a UI show the same progress the CLI's bar shows
    ("images" while photos are encoded, then "index" per vector file). `workers` reader
    processes (default: one on a CPU, all cores but one with a GPU); `precision` auto is
    fp16 on CUDA, fp32 elsewhere; `executor` runs the stages (default: this machine).
    """
    started = time.perf_counter()
    out = Path(out)
    if batch_size < 1 or (shard_size is not None and shard_size < 1) or (workers is not None and workers < 0):
        raise BuildError("batch size and shard size must be at least 1, workers at least 0.")
    items = catalog.items[:limit] if limit else catalog.items
    if not items:
        raise CatalogError(f"{catalog.source} holds no product with an image; nothing to index.")
    image_model = _image_tower(models)
    engine = executor or LocalExecutor(workers)
    device = engine.resolve_device(device)
    precision = resolve_precision(precision, device)
    captions = tuple(models) if any(item.caption for item in items) else ()
    config = EncoderConfig(image_model, captions, device, precision, batch_size)
    model_facts = _model_facts(models, image_model, local_device(device))
    shard_size = shard_size or batch_size * SHARD_BATCHES
    fingerprint = catalog.fingerprint()
    work = WorkFolder(out, {
        "format": SHARD_FORMAT, "catalog": fingerprint, "rows": len(items), "models": model_facts,
        "image_model": image_model, "captions": list(captions), "device": device, "precision": precision,
        "batch_size": batch_size, "shard_size": shard_size,
    })
    plan = plan_shards(len(items), shard_size)
    notes = conflicting_ids(items)
    with work.locked():
        done = intact_shards(work.shards, config.stems, {shard.number: len(shard) for shard in plan})
        pending = [shard for shard in plan if shard.number not in done]
        dims = [model_facts[key]["dim"] for key in [image_model, *captions]]
        work.check_free_space(needed_bytes(sum(map(len, pending)), len(items), dims, params.m))
        tracker = BuildProgress(
            len(items), len(items) - sum(map(len, pending)), show=progress, on_progress=on_progress
        )
        try:
            engine.run(
                BuildJob(items, pending, batch_size, config, ShardWriter(work.shards)), tracker
            )
        finally:
            tracker.close()
        manifest = Manifest(
            catalog={"name": catalog.name, "source": catalog.source, "fingerprint": fingerprint},
            hnsw=params,
            entries=[],
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            models=model_facts,
        )
        try:
            indexed, skipped = assemble_index(
                work.staging, items, work.shards, [shard.number for shard in plan], config,
                params=params, manifest=manifest, skipped=catalog.skipped, progress=tracker, notes=notes,
            )
        except CatalogError:
            work.remove()  # nothing readable: the same arguments would fail the same way
            raise
        check_folder(work.staging)  # never swap in a folder that fails the checks a reader makes
        replace_folder(work.staging, out)
        work.remove()
    return BuildSummary(
        out, indexed, skipped, time.perf_counter() - started, tracker.seconds, tracker.items,
        shards=len(plan), resumed_shards=len(done), notes=notes,
    )


def _model_facts(models: Sequence[str], image_model: str, device: str) -> dict[str, dict]:
    """Per model, and for the image tower they share: what core/weights.py checks later."""
    return {key: model_facts(get_encoder(key, device)) for key in dict.fromkeys([*models, image_model])}


def _image_tower(models: Sequence[str]) -> str:
    """The one image tower all the given models share (one image index per build)."""
    if not models:
        raise ModelLoadError("No model given: pass at least one model key with --models.")
    towers = {get_spec(key).image_tower for key in models}
    if len(towers) != 1:
        raise ModelLoadError(
            f"Models {', '.join(models)} do not share one image tower; build one index per tower."
        )
    return towers.pop()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.build_index", description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group(
        "catalog (one of: --images [--captions], --parquet, --sample; paths or URIs such as s3://bucket/shop)"
    )
    source.add_argument("--images", help="folder of product images")
    source.add_argument("--captions", help="CSV with one row per image (id, caption, metadata)")
    source.add_argument("--parquet", nargs="+", default=[], help="parquet files or folder URIs (HF fashion schema)")
    source.add_argument("--sample", type=_positive, metavar="N",
                        help="download the first N products of the Hugging Face fashion dataset and index them")
    source.add_argument("--id-column", default="id")
    source.add_argument("--caption-column", help="default: caption, productDisplayName, title, name or description")
    source.add_argument("--filename-column", help="image file per row; default: the image named after the id")
    parser.add_argument("--out", type=Path, required=True, help="index folder to write, e.g. index_data/shop")
    parser.add_argument("--models", default=",".join(REGISTRY), help="comma-separated model keys (default: both)")
    run = parser.add_argument_group("how the build runs")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    run.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: fp16 on CUDA, fp32 elsewhere")
    run.add_argument("--batch-size", type=_positive, default=32)
    run.add_argument("--workers", type=_count, help="reader processes (default: 1 on CPU, cores-1 with a GPU)")
    run.add_argument("--shard-size", type=_positive, help=f"rows per resumable shard (default: {SHARD_BATCHES} batches)")
    run.add_argument("--limit", type=_positive, help="index only the first N catalog rows")
    run.add_argument("--engine", choices=ENGINES, default="local",
                     help="local: this machine; ray: Ray Data reader tasks and encoder actors (a cluster or a local Ray)")
    ray = parser.add_argument_group("ray engine (--engine ray; pip install -r requirements-ray.txt)")
    ray.add_argument("--ray-address", help="cluster to run on, e.g. auto or ray://head:10001 (default: a Ray started here)")
    ray.add_argument("--ray-concurrency", type=_positive, metavar="N",
                     help="encoder actors (default: one per GPU of the cluster, or one per node without GPUs)")
    hnsw = parser.add_argument_group("HNSW graph")
    hnsw.add_argument("--m", type=_positive, default=HnswParams.m, help="graph degree")
    hnsw.add_argument("--ef-construction", type=_positive, default=HnswParams.ef_construction)
    hnsw.add_argument("--ef-search", type=_positive, default=HnswParams.ef_search)
    args = parser.parse_args(argv)
    if args.engine != "ray" and (args.ray_address or args.ray_concurrency):
        parser.error("--ray-address and --ray-concurrency need --engine ray")
    if args.engine == "ray" and args.workers is not None:
        parser.error("--workers is for the local engine; with --engine ray, reader tasks run on every free CPU")
    return args


def make_executor(engine: str, workers: int | None = None, ray_address: str | None = None,
                  ray_concurrency: int | None = None) -> Executor:
    """The engine that runs the stages; Ray is an optional install, so it is imported only when asked for."""
    if engine == "local":
        return LocalExecutor(workers)
    try:
        from core.pipeline.ray_executor import RayExecutor
    except ImportError as err:
        raise BuildError(
            f"--engine ray needs Ray Data, which cannot be imported here ({err}). "
            "Install it with: pip install -r requirements-ray.txt"
        ) from err
    return RayExecutor(ray_address, ray_concurrency)


def _catalog(args: argparse.Namespace) -> Catalog:
    if args.sample is None:
        return load_catalog(
            images=args.images,
            captions=args.captions,
            parquet=args.parquet,
            id_column=args.id_column,
            caption_column=args.caption_column,
            filename_column=args.filename_column,
            name=args.out.name,
        )
    if args.images or args.captions or args.parquet:
        raise CatalogError("give either --sample N or your own catalog (--images or --parquet), not both")
    return sample_catalog(args.sample)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        executor = make_executor(args.engine, args.workers, args.ray_address, args.ray_concurrency)
        summary = build_index(
            _catalog(args),
            args.out,
            [key.strip() for key in args.models.split(",") if key.strip()],
            HnswParams(m=args.m, ef_construction=args.ef_construction, ef_search=args.ef_search),
            device=args.device,
            batch_size=args.batch_size,
            limit=args.limit,
            workers=args.workers,
            precision=args.precision,
            shard_size=args.shard_size,
            executor=executor,
        )
    except (CatalogError, ModelLoadError, BuildError, DeviceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where the build stopped.", file=sys.stderr)
        return 130
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
