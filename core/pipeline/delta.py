"""An update's plan: which catalog rows the existing index already holds vectors for.

Running the builder onto an existing index encodes only what changed. Photos are matched
by content hash (SHA-1 of their bytes), so a photo that moved or was renamed keeps its
vectors and a photo whose bytes changed is encoded again; captions are matched by text,
per text encoder. Vectors are reused only from models whose recorded probe equals the
loaded model's (other weights mean other vectors). Reused rows are written as ordinary
shards of the work folder, so an update resumes after a kill like a build does, and the
index is assembled from the shards exactly as a full build assembles it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.catalog import CatalogItem
from core.images import ImageError, read_image_bytes
from core.index import IndexMismatchError, Manifest, read_items, read_manifest, vector_stem
from core.models import Encoder
from core.pipeline.encode_stage import caption_vectors
from core.pipeline.executor import ShardTask
from core.pipeline.reader import RowRecord
from core.pipeline.writer import ShardWriter
from core.remote import RemoteError

# Reuse a model's vectors only when its probe is this close to the recorded one: the same weights.
SAME_WEIGHTS_COSINE = 0.99999


@dataclass
class PreviousIndex:
    """The index an update starts from: its manifest, items and vector files (memory-mapped)."""

    folder: Path
    manifest: Manifest
    items: pd.DataFrame

    @classmethod
    def open(cls, folder: Path) -> PreviousIndex | None:
        """The index at `folder`, or None when there is none to update (or it cannot be read)."""
        try:
            return cls(Path(folder), read_manifest(folder), read_items(folder))
        except (IndexMismatchError, OSError, ValueError):
            return None

    def vectors(self, modality: str, key: str) -> np.ndarray | None:
        entry = self.manifest.find(key, modality)
        path = self.folder / f"{vector_stem(modality, key)}.npy"
        if entry is None or not path.is_file():
            return None
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        return vectors if vectors.shape == (len(self.items), entry.dim) else None

    def same_weights(self, key: str, facts: Mapping[str, object]) -> bool:
        recorded = self.manifest.models.get(key) or {}
        if not isinstance(recorded, dict) or not recorded.get("probe") or not facts.get("probe"):
            return False
        old, new = np.asarray(recorded["probe"], np.float32), np.asarray(facts["probe"], np.float32)
        return old.shape == new.shape and float(old @ new) >= SAME_WEIGHTS_COSINE


@dataclass
class UpdatePlan:
    """Which rows to read and encode, which to take from the previous index, and what changed."""

    encode: list[int]  # positions whose photo is read and encoded as in a full build
    reuse: list[tuple[int, int]]  # (position, row of the previous index with the same photo bytes)
    changes: dict[str, int]  # products added, changed, removed, unchanged
    notes: list[str] = field(default_factory=list)
    caption_reuse: set[str] = field(default_factory=set)  # text encoders whose stored caption vectors still hold
    sha1s: dict[int, str | None] = field(default_factory=dict)  # position -> photo hash (None: unreadable)

    @property
    def fingerprint(self) -> str:
        """What the work folder's key needs: the same update after a kill finds its shards again."""
        return hashlib.sha256(repr((self.encode, self.reuse)).encode()).hexdigest()[:16]


def photo_sha1(item: CatalogItem) -> str | None:
    """The hash of a row's photo bytes, or None when they cannot be read (the reader will say why)."""
    try:
        return hashlib.sha1(read_image_bytes(item.image_path if item.image_path is not None else item.read_bytes())).hexdigest()
    except (ImageError, RemoteError, OSError):
        return None


def plan_update(
    items: Sequence[CatalogItem],
    previous: PreviousIndex,
    image_models: Sequence[str],
    caption_models: Sequence[str],
    model_facts: Mapping[str, Mapping[str, object]],
    show_progress: bool = True,
) -> UpdatePlan:
    """Match every catalog row with the previous index by photo hash; see the module docstring.
    A photo's vectors are taken over only when every image tower of the build has them there."""
    new_towers = [
        key for key in image_models
        if previous.manifest.find(key, "image") is None or not previous.same_weights(key, model_facts[key])
    ]
    reusable_images = not new_towers
    notes = _model_notes(previous, new_towers, caption_models, model_facts)
    row_of_sha1: dict[str, int] = {}
    for row, sha1 in enumerate(previous.items["sha1"].astype(str).tolist()):
        row_of_sha1.setdefault(sha1, row)
    thumbnails = previous.items["thumbnail"].astype(str).tolist()
    encode, reuse, sha1s = [], [], {}
    for position, item in enumerate(tqdm(items, desc="checking photos", unit="photo", disable=not show_progress)):
        sha1 = sha1s[position] = photo_sha1(item)
        row = row_of_sha1.get(sha1) if sha1 is not None and reusable_images else None
        if row is not None and (previous.folder / thumbnails[row]).is_file():
            reuse.append((position, row))
        else:
            encode.append(position)
    caption_reuse = {
        key for key in caption_models
        if previous.manifest.find(key, "caption") is not None and previous.same_weights(key, model_facts[key])
    }
    return UpdatePlan(encode, reuse, _changes(items, previous, sha1s), notes, caption_reuse, sha1s)


def _model_notes(
    previous: PreviousIndex,
    new_towers: Sequence[str],
    caption_models: Sequence[str],
    model_facts: Mapping[str, Mapping[str, object]],
) -> list[str]:
    """What the user should know about vectors that cannot be taken over, model by model."""
    notes = [
        f"The index in {previous.folder} has no image vectors of '{key}' (a new image tower, or other weights): "
        "every photo is encoded afresh."
        for key in new_towers
    ]
    for key in caption_models:
        if previous.manifest.find(key, "caption") is None:
            notes.append(f"'{key}' has no caption index here yet: every caption is encoded with it.")
        elif not previous.same_weights(key, model_facts[key]):
            notes.append(f"'{key}' has other weights than the index was built with: its captions are encoded afresh.")
    dropped = sorted(set(previous.manifest.caption_models) - set(caption_models))
    if dropped:
        notes.append(f"The caption indexes of {', '.join(dropped)} are dropped (not in --models).")
    return notes


def _changes(items: Sequence[CatalogItem], previous: PreviousIndex, sha1s: Mapping[int, str | None]) -> dict[str, int]:
    """Products (ids) added, changed (a photo, caption or metadata differs) and removed, and those unchanged.

    Automatic tags are the builder's, not the catalog's metadata: they do not count as a change."""
    old = previous.items
    automatic = {name for name, facet in previous.manifest.facets.items() if facet.automatic}
    old_rows: dict[str, set[tuple]] = {}
    for id_, sha1, caption, metadata in zip(old["id"].astype(str), old["sha1"], old["caption"].fillna(""), old["metadata"]):
        given = {key: value for key, value in json.loads(metadata or "{}").items() if key not in automatic}
        old_rows.setdefault(id_, set()).add((sha1, caption, _canonical(given)))
    new_rows: dict[str, set[tuple]] = {}
    for position, item in enumerate(items):
        new_rows.setdefault(str(item.id), set()).add((sha1s[position], item.caption or "", _canonical(item.metadata)))
    common = set(old_rows) & set(new_rows)
    changed = sum(1 for id_ in common if old_rows[id_] != new_rows[id_])
    return {
        "added": len(set(new_rows) - set(old_rows)),
        "changed": changed,
        "removed": len(set(old_rows) - set(new_rows)),
        "unchanged": len(common) - changed,
    }


def _canonical(metadata: Mapping[str, object]) -> str:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False)


def write_reused(
    plan: UpdatePlan,
    previous: PreviousIndex,
    items: Sequence[CatalogItem],
    image_models: Sequence[str],
    caption_encoders: Mapping[str, Encoder],
    shards: Sequence[ShardTask],
    writer: ShardWriter,
    batch_size: int,
) -> None:
    """Write each reuse shard: the previous index's image vectors and thumbnails, and caption vectors
    taken over where the text and the model's weights are the same, encoded where not."""
    image_vectors = {key: previous.vectors("image", key) for key in image_models}
    row_of = dict(plan.reuse)
    row_of_caption: dict[str, int] = {}
    for row, caption in enumerate(previous.items["caption"].fillna("").astype(str).tolist()):
        row_of_caption.setdefault(caption, row)
    thumbnails = previous.items["thumbnail"].astype(str).tolist()
    for shard in shards:
        rows = [row_of[p] for p in shard.positions]
        records = [
            RowRecord(p, plan.sha1s[p], (previous.folder / thumbnails[r]).read_bytes()) for p, r in zip(shard.positions, rows)
        ]
        vectors = {
            vector_stem("image", key): np.asarray(stored[rows], dtype=np.float32) for key, stored in image_vectors.items()
        }
        captions = [items[p].caption or "" for p in shard.positions]
        for key, encoder in caption_encoders.items():
            stored = previous.vectors("caption", key) if key in plan.caption_reuse else None
            vectors[vector_stem("caption", key)] = _caption_vectors(encoder, captions, stored, row_of_caption, batch_size)
        writer.write(shard.number, records, vectors)


def _caption_vectors(
    encoder: Encoder,
    captions: Sequence[str],
    old_vectors: np.ndarray | None,
    row_of_caption: Mapping[str, int],
    batch_size: int,
) -> np.ndarray:
    """Caption vectors for reused rows: the stored vector of the same text, else encoded now."""
    if old_vectors is None:
        return caption_vectors(encoder, captions, batch_size)
    known = [bool(c) and c in row_of_caption for c in captions]
    fresh = [c if c and not is_known else "" for c, is_known in zip(captions, known)]
    vectors = caption_vectors(encoder, fresh, batch_size)
    for i, (caption, is_known) in enumerate(zip(captions, known)):
        if is_known:
            vectors[i] = old_vectors[row_of_caption[caption]]
    return vectors
