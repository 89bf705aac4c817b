"""Offline index builder: catalog -> decoded images and captions -> vectors -> index folder.

    python -m core.build_index --images ../shared/data/fashion-products/images \\
        --captions ../shared/data/fashion-products/products.csv --out index_data/fashion

The folder is assembled in a staging folder beside the target and swapped in only when
complete, so the app never sees a half-built index. Bad rows are skipped and reported.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from core.catalog import Catalog, CatalogError, SkippedRow, load_catalog
from core.images import ImageError, decode_image
from core.index import (
    THUMBNAILS_DIR,
    HnswParams,
    IndexEntry,
    Manifest,
    VectorIndex,
    replace_folder,
    write_items,
    write_manifest,
)
from core.models import REGISTRY, ModelLoadError, get_encoder, get_spec
from core.search import probe_vector

REPORT_FILE = "skipped.csv"
THUMBNAIL_PX = 256


@dataclass
class BuildSummary:
    out: Path
    indexed: int
    skipped: list[SkippedRow]
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        lines = [f"Indexed {self.indexed} images into {self.out} in {self.seconds:.1f} s ({rate:.1f} images/s)."]
        if self.stage_seconds:
            lines.append("Stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items()))
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} rows (see {self.out / REPORT_FILE}), e.g.:")
            lines += [f"  {row.row}: {row.reason}" for row in self.skipped[:5]]
        return "\n".join(lines)


def thumbnail_bytes(image: Image.Image, size: int = THUMBNAIL_PX) -> bytes:
    """A small WebP so the result grid never decodes full-size photos."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="WEBP", quality=82, method=4)
    return buffer.getvalue()


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
) -> BuildSummary:
    """Embed a catalog with the given models and write a complete index folder at `out`.

    `on_progress(stage, done, total)` lets a UI show the same progress the CLI's bar shows.
    """
    started = time.perf_counter()
    specs = [get_spec(key) for key in models]
    towers = {spec.image_tower for spec in specs}
    if len(towers) != 1:
        raise ModelLoadError(f"Models {', '.join(models)} use different image towers; build one index per tower.")
    tower = get_encoder(towers.pop(), device)
    out = Path(out)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / THUMBNAILS_DIR).mkdir(parents=True)

    items = catalog.items[:limit] if limit else catalog.items
    skipped = list(catalog.skipped)
    rows, vectors = [], []
    timer = {"decode": 0.0, "encode": 0.0, "index": 0.0}
    bar = tqdm(total=len(items), unit="img", desc="images", disable=not progress)
    for start in range(0, len(items), batch_size):
        batch, images = [], []
        t0 = time.perf_counter()
        for item in items[start : start + batch_size]:
            try:
                data = item.read_bytes()
                image = decode_image(data)
            except (ImageError, OSError) as err:
                skipped.append(SkippedRow(row=f"{item.id} ({item.image_path or 'embedded image'})", reason=str(err)))
                continue
            row = len(rows) + len(batch)
            (staging / THUMBNAILS_DIR / f"{row}.webp").write_bytes(thumbnail_bytes(image))
            batch.append((item, hashlib.sha1(data).hexdigest(), f"{THUMBNAILS_DIR}/{row}.webp"))
            images.append(image)
        t1 = time.perf_counter()
        if images:
            vectors.append(tower.encode_images(images, batch_size=batch_size))
        timer["decode"] += t1 - t0
        timer["encode"] += time.perf_counter() - t1
        rows += batch
        bar.update(len(items[start : start + batch_size]))
        if on_progress is not None:
            on_progress("images", min(start + batch_size, len(items)), len(items))
    bar.close()
    if not rows:
        shutil.rmtree(staging, ignore_errors=True)
        raise CatalogError(f"No image of {catalog.source} could be read; nothing to index.")

    table = pd.DataFrame(
        {
            "id": [item.id for item, _, _ in rows],
            "caption": [item.caption or "" for item, _, _ in rows],
            "image_path": [str(item.image_path) if item.image_path else "" for item, _, _ in rows],
            "thumbnail": [thumb for _, _, thumb in rows],
            "sha1": [sha1 for _, sha1, _ in rows],
            "metadata": [json.dumps(item.metadata, ensure_ascii=False) for item, _, _ in rows],
        }
    )
    image_vectors = np.concatenate(vectors)
    entries = [_write_vectors(staging, image_vectors, tower.spec.key, "image", params, timer)]
    model_facts = {}
    has_captions = bool((table["caption"] != "").any())
    for spec in specs:
        encoder = get_encoder(spec.key, device)
        model_facts[spec.key] = {"dim": encoder.dim, "probe": probe_vector(encoder).round(6).tolist()}
        if has_captions:
            t0 = time.perf_counter()
            caption_vectors = _encode_captions(encoder, table["caption"].tolist(), batch_size, progress)
            timer["encode"] += time.perf_counter() - t0
            entries.append(_write_vectors(staging, caption_vectors, spec.key, "caption", params, timer))

    write_items(staging, table)
    _write_report(staging / REPORT_FILE, skipped)
    write_manifest(
        staging,
        Manifest(
            catalog={
                "name": catalog.name,
                "source": catalog.source,
                "fingerprint": catalog.fingerprint(),
                "items": len(table),
                "products": int(table["id"].nunique()),
                "skipped": len(skipped),
            },
            hnsw=params,
            entries=entries,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            models=model_facts,
        ),
    )
    replace_folder(staging, out)
    return BuildSummary(out, len(table), skipped, time.perf_counter() - started, timer)


def _encode_captions(encoder, captions: list[str], batch_size: int, progress: bool) -> np.ndarray:
    """Caption vectors in row order; rows without a caption get a zero vector that matches nothing."""
    vectors = np.zeros((len(captions), encoder.dim), dtype=np.float32)
    present = [i for i, caption in enumerate(captions) if caption]
    step = max(64, batch_size)
    for start in tqdm(range(0, len(present), step), desc=f"captions {encoder.spec.key}", disable=not progress):
        chunk = present[start : start + step]
        vectors[chunk] = encoder.encode_texts([captions[i] for i in chunk], batch_size=step)
    return vectors


def _write_vectors(folder: Path, vectors: np.ndarray, encoder: str, modality: str, params: HnswParams, timer) -> IndexEntry:
    t0 = time.perf_counter()
    entry = IndexEntry(encoder=encoder, modality=modality, dim=int(vectors.shape[1]), count=len(vectors))
    VectorIndex.build(vectors, params).save(folder, entry.stem)
    timer["index"] += time.perf_counter() - t0
    return entry


def _write_report(path: Path, skipped: list[SkippedRow]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "reason"])
        writer.writerows((row.row, row.reason) for row in skipped)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.build_index", description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group("catalog")
    source.add_argument("--images", type=Path, help="folder of product images")
    source.add_argument("--captions", type=Path, help="CSV with one row per image (id, caption, metadata)")
    source.add_argument("--parquet", type=Path, nargs="+", default=[], help="parquet files (HF fashion schema)")
    source.add_argument("--id-column", default="id")
    source.add_argument("--caption-column", help="default: caption, productDisplayName, title, name or description")
    source.add_argument("--filename-column", help="image file per row; default: the image named after the id")
    parser.add_argument("--out", type=Path, required=True, help="index folder to write, e.g. index_data/shop")
    parser.add_argument("--models", default=",".join(REGISTRY), help="comma-separated model keys")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--m", type=int, default=HnswParams.m, help="HNSW graph degree")
    parser.add_argument("--ef-construction", type=int, default=HnswParams.ef_construction)
    parser.add_argument("--ef-search", type=int, default=HnswParams.ef_search)
    parser.add_argument("--limit", type=int, help="index only the first N catalog rows")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        catalog = load_catalog(
            images=args.images,
            captions=args.captions,
            parquet=args.parquet,
            id_column=args.id_column,
            caption_column=args.caption_column,
            filename_column=args.filename_column,
            name=args.out.name,
        )
        models = [key.strip() for key in args.models.split(",") if key.strip()]
        params = HnswParams(m=args.m, ef_construction=args.ef_construction, ef_search=args.ef_search)
        summary = build_index(
            catalog, args.out, models, params, device=args.device, batch_size=args.batch_size, limit=args.limit
        )
    except (CatalogError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
