"""Assembly: finished shards -> the index folder, then the swap onto the target.

Runs once every shard is done, inside the work folder, and writes what core/search.py
reads: thumbnails, the items table, one .npy + .hnsw per vector file (and a graph per common
facet value, core/facets.py), the skipped-rows report and, last, the manifest. Only a complete
folder replaces the existing index.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.catalog import CatalogError, CatalogItem, SkippedRow
from core.autotag import Tags
from core.facets import Facet, compute_facets, filter_columns, graph_values
from core.index import (
    THUMBNAILS_DIR, HnswParams, IndexEntry, Manifest, VectorIndex, vector_stem, write_items, write_manifest,
)
from core.pipeline.encode_stage import EncodePlan
from core.pipeline.progress import BuildProgress
from core.pipeline.thumbnails import thumbnail_path
from core.pipeline.writer import read_shard

REPORT_FILE = "skipped.csv"
NOTES_FILE = "notes.csv"  # rows that were indexed but look wrong (ids shared by different products)


def row_label(item: CatalogItem) -> str:
    """How a skipped row is named in the report: the product id and where its photo was."""
    return f"{item.id} ({item.location or 'embedded image'})"


def assemble_index(
    staging: Path,
    items: Sequence[CatalogItem],
    shard_folder: Path,
    shards: Sequence[int],
    plan: EncodePlan,
    *,
    params: HnswParams,
    manifest: Manifest,
    skipped: Sequence[SkippedRow],
    progress: BuildProgress,
    tagger: Callable[[np.ndarray], list[Tags]] | None = None,
    notes: Sequence[SkippedRow] = (),
) -> tuple[int, list[SkippedRow]]:
    """Write the index folder into `staging` from the shards, in row order; returns (indexed, skipped).

    `manifest` comes without entries and counts; they are filled in here and it is written last.
    `tagger` (for a catalog without metadata) tags the photos from their vectors: automatic facets."""
    shutil.rmtree(staging, ignore_errors=True)  # a half-assembled folder from a killed run: start it over
    (staging / THUMBNAILS_DIR).mkdir(parents=True)
    skipped = list(skipped)
    positions, sha1s, parts = [], [], {stem: [] for stem in plan.stems}
    for number in shards:
        rows, vectors = read_shard(shard_folder, number, plan.stems)
        for record in rows:
            if record.error is not None:
                skipped.append(SkippedRow(row_label(items[record.position]), record.error))
                continue
            (staging / thumbnail_path(record.sha1)).write_bytes(record.thumbnail)
            positions.append(record.position)
            sha1s.append(record.sha1)
        for stem, array in vectors.items():
            parts[stem].append(array)
    if not positions:
        source = manifest.catalog.get("source", "the catalog")
        raise CatalogError(f"No image of {source} could be read; nothing to index. {_first_reasons(skipped)}".strip())

    # catalog order, whatever order the shards hold rows in (an update writes reused rows apart)
    order = np.argsort(np.asarray(positions), kind="stable")
    indexed_items = [items[positions[i]] for i in order]
    vectors_of = {stem: np.concatenate(parts[stem])[order] for stem in plan.stems}
    metadata = [dict(item.metadata) for item in indexed_items]
    tags = [] if tagger is None else tagger(vectors_of[vector_stem("image", plan.image_models[0])])
    for tag in tags:
        for record, label in zip(metadata, tag.labels):
            if label is not None:
                record[tag.facet] = label
    table = _items_table(indexed_items, [sha1s[i] for i in order], metadata, tags)
    facets = compute_facets([item.id for item in indexed_items], metadata)
    facets |= {tag.facet: Facet(tag.facet, facets[tag.facet].values, automatic=True) for tag in tags if tag.facet in facets}
    graphed = graph_values(filter_columns(metadata), facets)
    for done, ((modality, model_key), stem) in enumerate(zip(plan.outputs, plan.stems), 1):
        vectors = vectors_of[stem]
        with progress.timed("index", len(vectors)):
            index = VectorIndex.build(vectors, params)
            index.save(staging, stem)
            facet_graphs = index.save_facet_graphs(staging, stem, graphed, params)
        manifest.entries.append(IndexEntry(
            encoder=model_key, modality=modality, dim=int(vectors.shape[1]), count=len(vectors), facet_graphs=facet_graphs,
        ))
        progress.index_step(done, len(plan.stems))
    write_items(staging, table)
    _write_report(staging / REPORT_FILE, skipped)
    if notes:
        _write_report(staging / NOTES_FILE, notes, ("row", "note"))
    manifest.catalog.update(
        items=len(table), products=int(table["id"].nunique()), skipped=len(skipped),
        facets={name: facet.to_dict() for name, facet in facets.items()},
    )
    write_manifest(staging, manifest)
    return len(table), skipped


def _items_table(
    items: Sequence[CatalogItem], sha1s: Sequence[str], metadata: Sequence[dict], tags: Sequence[Tags]
) -> pd.DataFrame:
    """The metadata table core/search.py reads: one row per indexed photo, in vector order.

    `tag_confidence` holds each automatic tag's confidence (JSON, empty without automatic facets)."""
    confidence = [
        json.dumps({tag.facet: round(float(tag.confidence[row]), 3) for tag in tags if tag.labels[row] is not None})
        if tags else "" for row in range(len(items))
    ]
    return pd.DataFrame(
        {
            "id": [item.id for item in items],
            "caption": [item.caption or "" for item in items],
            "image_path": [item.location for item in items],
            "thumbnail": [thumbnail_path(sha1) for sha1 in sha1s],
            "sha1": list(sha1s),
            "metadata": [json.dumps(record, ensure_ascii=False) for record in metadata],
            "tag_confidence": confidence,
        }
    )


def _write_report(path: Path, rows: Sequence[SkippedRow], header: Sequence[str] = ("row", "reason")) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows((row.row, row.reason) for row in rows)


def _first_reasons(skipped: Sequence[SkippedRow], count: int = 3) -> str:
    return "First reasons: " + "; ".join(f"{row.row}: {row.reason}" for row in skipped[:count]) if skipped else ""
