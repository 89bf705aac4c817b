"""Full-size random models and an index over the shared photos, made once and reused by benches.

Random weights in the real architectures (a ViT-B/32 CLIP, a DistilBERT-multilingual-sized
text encoder) cost exactly what the trained models cost to run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core import settings
from core.catalog import Catalog

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fashion-products"
DEFAULT_WORK = Path("/tmp/vitrine-bench")


def prepare_models(work: Path) -> Path:
    """Point VITRINE_MODELS_DIR at full-size random models of every hub key, made once under `work`."""
    from core.random_models import make_models

    models = work / "models"
    if not (models / "fashion-clip" / "config.json").is_file():  # the last one make_models writes
        make_models(models, "full")
    os.environ[settings.MODELS_DIR_ENV] = str(models)
    return models


def prepare(work: Path, products: int) -> Path:
    """Point VITRINE_MODELS_DIR / VITRINE_INDEX_DIR at benchmark models and an index; return the index folder."""
    from core.build_index import build_index
    from core.catalog import from_folder

    prepare_models(work)
    index = work / f"index-{products}"
    if not (index / "fashion" / "manifest.json").is_file():
        catalog = from_folder(DATA / "images", DATA / "products.csv", name="fashion")
        build_index(catalog, index / "fashion", limit=products, progress=True)
    os.environ[settings.INDEX_DIR_ENV] = str(index)
    return index / "fashion"


def synthetic_folder(work: Path, size: int, caption_models: tuple[str, ...], image_towers: tuple[str, ...]) -> Path:
    return work / f"synthetic-{size}-{'-'.join(image_towers)}-{'-'.join(caption_models) or 'images'}"


def synthetic_index(
    work: Path, size: int, caption_models: tuple[str, ...] = (), image_towers: tuple[str, ...] = ("clip-ViT-B-32",)
) -> Path:
    """An index folder of `size` synthetic products (clustered 512-d vectors), made once under `work`:
    an image index per tower and a caption index per caption model.

    Its graph uses the default M (what load time and memory depend on) with a small
    ef_construction, so making a 200k folder takes minutes, not an hour.
    """
    import datetime as dt
    import json

    import pandas as pd

    from bench.vectors import clustered_unit_vectors
    from core.index import HnswParams, IndexEntry, Manifest, VectorIndex, write_items, write_manifest
    from core.models import get_encoder

    folder = synthetic_folder(work, size, caption_models, image_towers)
    if (folder / "manifest.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    params = HnswParams(ef_construction=40)
    entries = []
    outputs = [*(("image", k) for k in image_towers), *(("caption", k) for k in caption_models)]
    for seed, (modality, key) in enumerate(outputs):
        vectors = clustered_unit_vectors(size, 512, seed=seed)
        entry = IndexEntry(encoder=key, modality=modality, dim=512, count=size)
        VectorIndex.build(vectors, params).save(folder, entry.stem)
        entries.append(entry)
    ids = [str(100000 + i) for i in range(size)]
    write_items(
        folder,
        pd.DataFrame(
            {
                "id": ids,
                "caption": [f"Synthetic product {i}" for i in ids],
                "image_path": "",
                "thumbnail": "",
                "sha1": ids,
                "metadata": json.dumps({"masterCategory": "Apparel", "baseColour": "Blue"}),
            }
        ),
    )
    models = {key: {"dim": 512, "probe": get_encoder(key).probe().tolist()} for key in {*image_towers, *caption_models}}
    write_manifest(
        folder,
        Manifest(
            catalog={"name": folder.name, "source": "synthetic", "items": size, "products": size},
            hnsw=HnswParams(),
            entries=entries,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            models=models,
        ),
    )
    return folder


def full_clip_photos(models_dir: Path, limit: int) -> Catalog:
    """The first `limit` shared photos (no captions: the image path only), with VITRINE_MODELS_DIR
    pointed at a full-size random ViT-B/32 CLIP in `models_dir`, made there once."""
    from core.catalog import from_folder
    from core.models import CLIP_KEY
    from core.random_models import make_clip

    images = DATA / "images"
    if not images.is_dir():
        sys.exit(f"shared photos not found at {images}")
    if not (models_dir / CLIP_KEY / "modules.json").is_file():
        print(f"making a full-size random ViT-B/32 CLIP in {models_dir} ...", flush=True)
        make_clip(models_dir / CLIP_KEY, "full")
    os.environ[settings.MODELS_DIR_ENV] = str(models_dir)
    catalog = from_folder(images, name="bench")
    catalog.items[:] = catalog.items[:limit]
    return catalog
