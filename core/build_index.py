"""Offline index builder: catalog -> read -> encode -> write -> index folder.

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
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from core import cli
from core.autotag import DEFAULT_VOCABULARY, VocabularyError, read_vocabulary, tag_photos
from core.catalog import Catalog, CatalogError, SkippedRow, conflicting_ids
from core.atomic import replace_folder
from core.index import HnswParams, Manifest, check_folder, read_manifest
from core.models import DEFAULT_MODELS, ModelLoadError, get_encoder, get_spec
from core.pipeline import BuildError
from core.pipeline.assemble import NOTES_FILE, REPORT_FILE, assemble_index
from core.pipeline.delta import PreviousIndex, plan_update, write_reused
from core.devices import local_device
from core.pipeline.encode_stage import PRECISIONS, EncodePlan, resolve_precision
from core.pipeline.thumbnails import THUMBNAIL_PX
from core.pipeline.executor import BuildJob, Executor, LocalExecutor, plan_shards
from core.pipeline.progress import BuildProgress
from core.pipeline.work import WorkFolder, needed_bytes
from core.pipeline.writer import ShardWriter, intact_shards
from core.recipe import Recipe
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
    changes: dict[str, int] | None = None  # an update's products added, changed, removed, unchanged
    update_notes: list[str] = field(default_factory=list)  # why an update encoded more than the changes
    notes: list[SkippedRow] = field(default_factory=list)  # indexed, but worth a look (see NOTES_FILE)

    def describe(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        lines = [f"Indexed {self.indexed:,} images into {self.out} in {self.seconds:.1f} s ({rate:.1f} images/s)."]
        if self.changes is not None:
            lines.append(
                "Updated the existing index: products {added:,} added, {changed:,} changed, {removed:,} removed, "
                "{unchanged:,} unchanged (their vectors reused).".format(**self.changes)
            )
        lines += self.update_notes
        stages = [self._stage(name, seconds) for name, seconds in self.stage_seconds.items() if seconds > 0]
        if stages:
            lines.append("Stages: " + ", ".join(stages) + ".")
        if self.resumed_shards:
            lines.append(f"Continued an interrupted build: {self.resumed_shards} of {self.shards} shards were already done.")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped):,} rows (see {self.out / REPORT_FILE}), e.g.:")
            lines += [f"  {row.row}: {row.reason}" for row in self.skipped[:5]]
        if self.notes:
            lines.append(
                f"{len(self.notes)} product ids are shared by rows that disagree on caption or metadata; "
                f"each is searched as one product (see {self.out / NOTES_FILE}), e.g.:"
            )
            lines += [f"  {row.row}: {row.reason}" for row in self.notes[:5]]
        return "\n".join(lines)

    def _stage(self, name: str, seconds: float) -> str:
        unit = {"decode": "images/s per worker", "index": "vectors/s", "reuse": "rows/s"}.get(name, "images/s")
        return f"{name} {seconds:.1f} s ({self.stage_items.get(name, 0) / seconds:.0f} {unit})"


def build_index(
    catalog: Catalog,
    out: Path,
    models: Sequence[str] = DEFAULT_MODELS,
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
    full: bool = False,
    auto_tags: bool = True,
    tag_vocabulary: Mapping[str, Sequence[str]] | None = None,
    recipe: Recipe | None = None,
    variants: str = "caption",
) -> BuildSummary:
    """Embed a catalog with the given models and write a complete index folder at `out`.

    `on_progress(stage, done, total)` lets a UI show the same progress the CLI's bar shows
    ("images" while photos are encoded, then "index" per vector file). `workers` reader
    processes (default: one on a CPU, all cores but one with a GPU); `precision` auto is
    fp16 on CUDA, fp32 elsewhere; `executor` runs the stages (default: this machine).
    Onto an existing index, only what changed is encoded (core/pipeline/delta.py); `full` rebuilds all.
    A catalog without any metadata gets automatic facets (core/autotag.py) unless `auto_tags`
    is False; `tag_vocabulary` replaces the default colour and category labels.
    `variants` names what makes products variants of one (the app shows them as one card):
    "caption" (same name) or a metadata column such as a style or model number.
    `recipe` (core/recipe.py) is recorded in the manifest, so the catalog can be updated later from it.
    """
    started = time.perf_counter()
    out = Path(out)
    if batch_size < 1 or (shard_size is not None and shard_size < 1) or (workers is not None and workers < 0):
        raise BuildError("batch size and shard size must be at least 1, workers at least 0.")
    items = catalog.items[:limit] if limit else catalog.items
    if not items:
        raise CatalogError(f"{catalog.source} holds no product with an image; nothing to index.")
    towers = image_towers(models)
    _check_variants_column(items, variants)
    engine = executor or LocalExecutor(workers)
    device = engine.resolve_device(device)
    precision = resolve_precision(precision, device)
    captions = tuple(models) if any(item.caption for item in items) else ()
    encode_plan = EncodePlan(towers, captions, device, precision, batch_size)
    facts = _model_facts(models, towers, local_device(device))
    _check_one_space(facts, models)
    shard_size = shard_size or batch_size * SHARD_BATCHES
    fingerprint = catalog.fingerprint()
    previous = None if full else PreviousIndex.open(out)
    update = None if previous is None else plan_update(items, previous, towers, captions, facts, progress)
    plan = plan_shards(range(len(items)) if update is None else update.encode, shard_size)
    reuse_plan = [] if update is None else plan_shards([p for p, _ in update.reuse], shard_size, len(plan))
    work = WorkFolder(out, {
        "format": SHARD_FORMAT, "catalog": fingerprint, "rows": len(items), "models": facts,
        "image_models": list(towers), "captions": list(captions), "device": device, "precision": precision,
        "batch_size": batch_size, "shard_size": shard_size, "thumbnail_px": THUMBNAIL_PX,
        "update": None if update is None else [previous.manifest.version, update.fingerprint],
    })
    notes = conflicting_ids(items)
    with work.locked():
        shards = plan + reuse_plan
        done = intact_shards(work.shards, encode_plan.stems, {shard.number: len(shard) for shard in shards})
        pending = [shard for shard in plan if shard.number not in done]
        pending_reuse = [shard for shard in reuse_plan if shard.number not in done]
        dims = [facts[key]["dim"] for key in [*towers, *captions]]
        work.check_free_space(needed_bytes(sum(map(len, pending)), len(items), dims, params.m))
        tracker = BuildProgress(
            len(items), len(items) - sum(map(len, pending + pending_reuse)), show=progress, on_progress=on_progress
        )
        try:
            if pending_reuse:
                with tracker.timed("reuse", sum(map(len, pending_reuse))):
                    write_reused(
                        update, previous, items, towers,
                        {key: get_encoder(key, local_device(device)) for key in captions},
                        pending_reuse, ShardWriter(work.shards), batch_size,
                    )
                tracker.advance(sum(map(len, pending_reuse)))
            engine.run(BuildJob(items, pending, batch_size, encode_plan, ShardWriter(work.shards)), tracker)
        finally:
            tracker.close()
        manifest = Manifest(
            catalog={
                "name": catalog.name, "source": catalog.source, "fingerprint": fingerprint, "variants": variants,
                **({"recipe": recipe.to_dict()} if recipe is not None else {}),
            },
            hnsw=params,
            entries=[],
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            models=facts,
            build_id=uuid.uuid4().hex,
            changes={} if update is None else update.changes,
        )
        tagger = None
        if auto_tags and not any(item.metadata for item in items):
            text_tower = get_encoder(towers[0], local_device(device))
            tagger = partial(tag_photos, encode_texts=text_tower.encode_texts,
                             vocabulary=tag_vocabulary or DEFAULT_VOCABULARY)
        try:
            indexed, skipped = assemble_index(
                work.staging, items, work.shards, [shard.number for shard in shards], encode_plan,
                params=params, manifest=manifest, skipped=catalog.skipped, progress=tracker, tagger=tagger,
                notes=notes,
            )
        except CatalogError:
            work.remove()  # nothing readable: the same arguments would fail the same way
            raise
        check_folder(work.staging)  # never swap in a folder that fails the checks a reader makes
        replace_folder(work.staging, out)
        work.remove()
    return BuildSummary(
        out, indexed, skipped, time.perf_counter() - started, tracker.seconds, tracker.items,
        shards=len(shards), resumed_shards=len(done), notes=notes,
        changes=None if update is None else update.changes, update_notes=[] if update is None else update.notes,
    )


def _model_facts(models: Sequence[str], towers: Sequence[str], device: str) -> dict[str, dict]:
    """Per model, and for each image tower they read with: what core/weights.py checks later."""
    return {key: model_facts(get_encoder(key, device)) for key in dict.fromkeys([*models, *towers])}


def _check_one_space(facts: dict[str, dict], models: Sequence[str]) -> None:
    """Refuse a text model whose vectors cannot be compared with its image tower's photo vectors (another size)."""
    for key in models:
        tower = get_spec(key).image_tower
        if facts[key]["dim"] != facts[tower]["dim"]:
            raise ModelLoadError(
                f"Model '{key}' makes {facts[key]['dim']}-d vectors but its image tower '{tower}' makes "
                f"{facts[tower]['dim']}-d ones: its words could not search these photos. Leave it out of --models, "
                f"or use a copy of it trained into '{tower}''s space."
            )


def _check_variants_column(items: Sequence, column: str) -> None:
    if column != "caption" and not any(column in item.metadata for item in items):
        raise CatalogError(
            f"--variants-column '{column}' is not a column of this catalog; name a column of its CSV, or leave it out "
            "to group products by name."
        )


def image_towers(models: Sequence[str]) -> tuple[str, ...]:
    """The image towers the given models read photos with, in the order of the models: one image
    index each (the multilingual model has none of its own; CLIP and FashionCLIP one each).
    The first is the index's default tower."""
    if not models:
        raise ModelLoadError("No model given: pass at least one model key with --models.")
    return tuple(dict.fromkeys(get_spec(key).image_tower for key in models))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.build_index", description=__doc__.split("\n\n")[0])
    source = cli.add_catalog_flags(
        parser, "catalog (one of: --images [--captions], --parquet, --sample; paths or URIs such as s3://bucket/shop)"
    )
    source.add_argument("--sample", type=cli.positive, metavar="N",
                        help="download the first N products of the Hugging Face fashion dataset and index them")
    parser.add_argument("--out", type=Path, required=True,
                        help="index folder to write, e.g. index_data/shop; an existing one is updated (only changes encoded)")
    parser.add_argument("--full", action="store_true", help="rebuild every vector, even onto an existing index")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated model keys (default: {','.join(DEFAULT_MODELS)})")
    run = parser.add_argument_group("how the build runs")
    cli.add_device_flag(run)
    run.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: fp16 on CUDA, fp32 elsewhere")
    run.add_argument("--batch-size", type=cli.positive, default=32)
    run.add_argument("--workers", type=cli.count, help="reader processes (default: 1 on CPU, cores-1 with a GPU)")
    run.add_argument("--shard-size", type=cli.positive, help=f"rows per resumable shard (default: {SHARD_BATCHES} batches)")
    run.add_argument("--limit", type=cli.positive, help="index only the first N catalog rows")
    run.add_argument("--engine", choices=ENGINES, default="local",
                     help="local: this machine; ray: Ray Data reader tasks and encode actors (a cluster or a local Ray)")
    ray = parser.add_argument_group("ray engine (--engine ray; pip install -r requirements-ray.txt)")
    ray.add_argument("--ray-address", help="cluster to run on, e.g. auto or ray://head:10001 (default: a Ray started here)")
    ray.add_argument("--ray-concurrency", type=cli.positive, metavar="N",
                     help="encode actors (default: one per GPU of the cluster, or one per node without GPUs)")
    tags = parser.add_argument_group("automatic facets (a catalog without metadata)")
    tags.add_argument("--tag-vocabulary", type=Path, metavar="FILE",
                      help='JSON {"colour": [...], "category": [...]} replacing the default labels')
    tags.add_argument("--no-auto-tags", action="store_true", help="do not tag photos without metadata")
    source.add_argument("--variants-column", default="caption", metavar="COLUMN",
                        help="products with the same value here are variants of one (one card in the app); "
                             "default: the same name (caption)")
    hnsw = parser.add_argument_group("HNSW graph")
    hnsw.add_argument("--m", type=cli.positive, default=HnswParams.m, help="graph degree")
    hnsw.add_argument("--ef-construction", type=cli.positive, default=HnswParams.ef_construction)
    hnsw.add_argument("--ef-search", type=cli.positive, default=HnswParams.ef_search)
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


def _recipe(args: argparse.Namespace, models: Sequence[str]) -> Recipe:
    if args.sample is not None and (args.images or args.captions or args.parquet):
        raise CatalogError("give either --sample N or your own catalog (--images or --parquet), not both")
    return Recipe(
        images=args.images, captions=args.captions, parquet=tuple(args.parquet), id_column=args.id_column,
        caption_column=args.caption_column, filename_column=args.filename_column, sample=args.sample,
        limit=args.limit, models=tuple(models),
    )


def update_from_recipe(folder: Path, on_progress: Callable[[str, int, int], None] | None = None) -> BuildSummary:
    """Run the recorded build of an index again onto it: an update of what changed at its source."""
    manifest = read_manifest(folder)
    if "recipe" not in manifest.catalog:
        raise CatalogError(f"{folder} records no build recipe (it predates them): run its build command again.")
    recipe = Recipe.from_dict(manifest.catalog["recipe"])
    return build_index(
        recipe.catalog(Path(folder).name), folder, recipe.models or DEFAULT_MODELS, manifest.hnsw,
        limit=recipe.limit, progress=False, on_progress=on_progress, variants=manifest.variants_column, recipe=recipe,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def build() -> int:
        executor = make_executor(args.engine, args.workers, args.ray_address, args.ray_concurrency)
        models = [key.strip() for key in args.models.split(",") if key.strip()]
        recipe = _recipe(args, models)
        summary = build_index(
            recipe.catalog(args.out.name),
            args.out,
            models,
            HnswParams(m=args.m, ef_construction=args.ef_construction, ef_search=args.ef_search),
            device=args.device,
            batch_size=args.batch_size,
            limit=args.limit,
            workers=args.workers,
            precision=args.precision,
            shard_size=args.shard_size,
            executor=executor,
            full=args.full,
            auto_tags=not args.no_auto_tags,
            tag_vocabulary=read_vocabulary(args.tag_vocabulary) if args.tag_vocabulary else None,
            variants=args.variants_column,
            recipe=recipe,
        )
        print(summary.describe())
        return 0

    return cli.run(
        build, ModelLoadError, BuildError, VocabularyError,
        on_interrupt="run the same command again to continue where the build stopped.",
    )


if __name__ == "__main__":
    sys.exit(main())
