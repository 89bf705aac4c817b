"""What an update costs next to a full build, and patching the HNSW graph against rebuilding it.

    python -m bench.update_cost --photos 9583 --changes 100

Part 1 (graph): the same 100 removals + 100 additions applied to an index of N synthetic
512-d vectors either by rebuilding the graph from the stored vectors (what the builder
does) or by patching the saved graph (`mark_deleted` + `add_items(replace_deleted=True)`),
with each result's recall@10 against exact search over the new set.

Part 2 (end to end): an index of the first N shared photos is built with the tiny test
models, then the catalog changes by `--changes` products (a third added, a third with a new
caption, a third removed) and the same command updates it. With tiny models encoding is
almost free, so the update's own work (hashing every photo, taking vectors over, the graph,
assembly) shows; the encoding a real model would add is measured on a full-size ViT-B/32
with random weights (the cost of the real one) and added to both sides.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import hnswlib

from bench.setup import DATA, DEFAULT_WORK
from bench.vectors import clustered_unit_vectors
from core import models, settings
from core.build_index import build_index
from core.catalog import from_folder
from core.index import HnswParams, VectorIndex
from core.random_models import make_models

K = 10


def recall(index: VectorIndex, vectors: np.ndarray, live: np.ndarray, queries: np.ndarray) -> float:
    """recall@10 of the graph against exact search over the live rows (labels are row numbers)."""
    exact = np.argsort(-(queries @ vectors[live].T), axis=1)[:, :K]
    truth = [set(live[row].tolist()) for row in exact]
    labels, _ = index.hnsw_search(queries, K)
    return float(np.mean([len(set(found.tolist()) & want) / K for found, want in zip(labels, truth)]))


def graph_cost(size: int, changes: int, folder: Path) -> None:
    params = HnswParams()
    vectors = clustered_unit_vectors(size + changes, 512, seed=1)
    queries = clustered_unit_vectors(200, 512, seed=2)
    old = VectorIndex.build(vectors[:size], params)
    old.save(folder, "old")
    removed = np.arange(0, size, size // changes)[:changes]
    live = np.setdiff1d(np.arange(size + changes), removed)

    started = time.perf_counter()
    rebuilt = VectorIndex.build(vectors[live], params)
    rebuild_s = time.perf_counter() - started
    rebuilt_recall = recall(rebuilt, vectors[live], np.arange(len(live)), queries)

    started = time.perf_counter()
    graph = hnswlib.Index(space="ip", dim=512)
    graph.load_index(str(folder / "old.hnsw"), max_elements=size, allow_replace_deleted=True)
    for label in removed:
        graph.mark_deleted(int(label))
    graph.add_items(vectors[size:], np.arange(size, size + changes), replace_deleted=True)
    graph.set_ef(params.ef_search)
    patch_s = time.perf_counter() - started
    patched = VectorIndex(vectors, graph)
    patched_recall = recall(patched, vectors, live, queries)
    print(f"graph, {size:,} vectors, {changes} removed + {changes} added: "
          f"rebuild {rebuild_s:.2f} s (recall@10 {rebuilt_recall:.3f}), "
          f"patch {patch_s:.2f} s (recall@10 {patched_recall:.3f})")


def use_models(folder: Path, size: str) -> None:
    """Random models of this size (made once in `folder`) for what this process loads next."""
    if not (folder / "clip-ViT-B-32" / "modules.json").is_file():
        make_models(folder, size)
    os.environ[settings.MODELS_DIR_ENV] = str(folder)
    models.clear_cache()


def encode_seconds_per_photo(work: Path, photos: int) -> float:
    """Seconds a full-size ViT-B/32 (random weights) and both caption encoders spend per photo in a build."""
    use_models(work / "models", "full")
    catalog = from_folder(DATA / "images", DATA / "products.csv", name="probe")
    with tempfile.TemporaryDirectory() as tmp:
        summary = build_index(catalog, Path(tmp) / "probe", limit=photos, progress=False)
    models.clear_cache()
    return summary.stage_seconds["encode"] / summary.stage_items["encode"]


def end_to_end(photos: int, changes: int, work: Path, per_photo: float) -> None:
    use_models(work / "tiny-models", "tiny")
    catalog = from_folder(DATA / "images", DATA / "products.csv", name="shop")
    third = changes // 3
    base_items = catalog.items[:photos]
    base = replace(catalog, items=base_items)
    out = work / f"update-{photos}" / "shop"
    if not (out / "manifest.json").is_file():
        started = time.perf_counter()
        build_index(base, out, progress=True, full=True)
        print(f"base build of {photos:,} photos with tiny models: {time.perf_counter() - started:.1f} s")
    changed_items = list(base_items[third:])  # a third removed
    for i in range(third):  # a third with a new caption
        changed_items[i] = replace(changed_items[i], caption=(changed_items[i].caption or "") + " (new season)")
    changed_items += catalog.items[photos : photos + changes - 2 * third]  # the rest added
    trial = out.parent / "trial"
    shutil.rmtree(trial, ignore_errors=True)
    shutil.copytree(out, trial)
    started = time.perf_counter()
    summary = build_index(replace(catalog, items=changed_items), trial, progress=False)
    wall = time.perf_counter() - started
    print(summary.describe())
    encoded = summary.stage_items["encode"]
    update_real = wall - summary.stage_seconds["encode"] + (encoded + third) * per_photo
    full_real = len(changed_items) * per_photo
    print(f"update of {photos:,} photos by {changes} products: {wall:.1f} s with tiny models "
          f"({encoded} photos and {third} captions encoded)")
    print(f"full-size encoding: {per_photo * 1000:.0f} ms per photo (image + both caption encoders)")
    print(f"update with full-size models ~ {update_real:.0f} s; full build's encoding alone ~ {full_real:.0f} s; "
          f"ratio {update_real / full_real:.3f} (goal <= 0.10)")
    shutil.rmtree(trial, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=9583)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--graph-sizes", default="10000,50000")
    parser.add_argument("--probe-photos", type=int, default=64, help="photos timed with the full-size models")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.graph_sizes.split(",") if s):
            graph_cost(size, args.changes, Path(tmp))
    end_to_end(args.photos, args.changes, args.work, encode_seconds_per_photo(args.work, args.probe_photos))


if __name__ == "__main__":
    main()
