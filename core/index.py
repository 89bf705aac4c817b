"""Index folders: hnswlib files per (encoder, modality), the manifest and the items table.

Every file is written to a temporary name and renamed into place, so a reader never
sees half a file. Loading checks the manifest against what the caller expects and
refuses a mismatch with a message that says how to fix it. Nothing is pickled.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
import pandas as pd

from core.atomic import atomic_path

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.parquet"
THUMBNAILS_DIR = "thumbnails"
# Below this many vectors a brute-force scan is both exact and faster than HNSW.
EXACT_SEARCH_BELOW = 2048


class IndexMismatchError(ValueError):
    """An index folder that does not fit what the caller asked for (format, model, dims)."""


@dataclass
class Hit:
    """One product in a result list."""

    id: str
    score: float  # cosine between the query and the product image: comparable to the threshold
    caption: str | None
    metadata: dict[str, str]
    image_path: str | None
    thumbnail: str | None
    matched: tuple[str, ...]  # which indexes ranked it: "image", "caption"
    rank_score: float  # the fused reciprocal-rank value the list is ordered by
    row: int


@dataclass(frozen=True)
class HnswParams:
    """Graph degree, build beam and query beam (see bench/hnsw_params.py for the choice)."""

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 64


def vector_stem(modality: str, encoder: str) -> str:
    """File name (without suffix) of the vectors one encoder made from one modality."""
    return f"{modality}__{encoder}"


@dataclass(frozen=True)
class IndexEntry:
    """One vector file of an index folder: which encoder made it, from which modality."""

    encoder: str
    modality: str  # "image" or "caption"
    dim: int
    count: int

    @property
    def stem(self) -> str:
        return vector_stem(self.modality, self.encoder)


@dataclass
class Manifest:
    """What an index folder holds; written last, so its presence means the folder is complete."""

    catalog: dict
    hnsw: HnswParams
    entries: list[IndexEntry]
    created_at: str
    # model key -> {"dim": int, "probe": [floats]}: the probe recognises the exact weights later
    models: dict[str, dict] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def find(self, encoder: str, modality: str) -> IndexEntry | None:
        return next((e for e in self.entries if e.encoder == encoder and e.modality == modality), None)

    @property
    def image_entry(self) -> IndexEntry | None:
        return next((e for e in self.entries if e.modality == "image"), None)

    @property
    def name(self) -> str:
        return str(self.catalog.get("name", ""))

    @property
    def source(self) -> str:
        return str(self.catalog.get("source", ""))

    @property
    def photo_count(self) -> int:
        entry = self.image_entry
        return int(self.catalog.get("items", entry.count if entry else 0))

    @property
    def product_count(self) -> int:
        return int(self.catalog.get("products", self.photo_count))

    @property
    def skipped_count(self) -> int:
        return int(self.catalog.get("skipped", 0))

    @property
    def variants_column(self) -> str:
        """What makes two products variants of one (shown as one card): "caption" (the name) or a metadata column."""
        return str(self.catalog.get("variants", "caption"))

    @property
    def caption_models(self) -> list[str]:
        """Text encoders with a caption index here."""
        return [e.encoder for e in self.entries if e.modality == "caption"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        return cls(
            catalog=data["catalog"],
            hnsw=HnswParams(**data["hnsw"]),
            entries=[IndexEntry(**entry) for entry in data["entries"]],
            created_at=data["created_at"],
            models=data.get("models", {}),
            format_version=data["format_version"],
        )


def write_manifest(folder: Path, manifest: Manifest) -> None:
    with atomic_path(folder / MANIFEST_FILE) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")


def read_manifest(folder: Path) -> Manifest:
    """The manifest, or a clear error when the folder is not a (complete, current) index."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise IndexMismatchError(
            f"{folder} is not a Vitrine index (no {MANIFEST_FILE}). Build one with `python -m core.build_index`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexMismatchError(
                f"{folder} has index format {version}, this version of Vitrine reads format {FORMAT_VERSION}. "
                "Rebuild it with `python -m core.build_index`."
            )
        return Manifest.from_dict(data)
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, IndexMismatchError):
            raise
        raise IndexMismatchError(f"{path} is damaged ({err}). Rebuild the index.") from err


def list_indexes(root: Path) -> list[Path]:
    """Complete index folders directly under `root`, by name (staging and old folders are hidden)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        child for child in root.iterdir()
        if not child.name.startswith(".") and (child / MANIFEST_FILE).is_file()
    )


def write_items(folder: Path, items: pd.DataFrame) -> None:
    with atomic_path(folder / ITEMS_FILE) as tmp:
        items.to_parquet(tmp, index=False)


def read_items(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(folder) / ITEMS_FILE)


class VectorIndex:
    """Unit vectors with an HNSW graph over them (inner product = cosine) and an exact fallback."""

    def __init__(self, vectors: np.ndarray, graph: hnswlib.Index) -> None:
        self.vectors = vectors
        self.graph = graph
        self.dim = int(vectors.shape[1])
        self.count = int(vectors.shape[0])

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        params: HnswParams = HnswParams(),
        batch_size: int = 4096,
        progress: Callable[[int], None] | None = None,
    ) -> VectorIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        graph = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
        graph.init_index(max_elements=max(1, len(vectors)), M=params.m, ef_construction=params.ef_construction)
        for start in range(0, len(vectors), batch_size):
            chunk = vectors[start : start + batch_size]
            graph.add_items(chunk, np.arange(start, start + len(chunk)))
            if progress is not None:
                progress(len(chunk))
        graph.set_ef(params.ef_search)
        return cls(vectors, graph)

    def save(self, folder: Path, stem: str) -> None:
        with atomic_path(folder / f"{stem}.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, self.vectors, allow_pickle=False)
        with atomic_path(folder / f"{stem}.hnsw") as tmp:
            self.graph.save_index(str(tmp))

    @classmethod
    def load(cls, folder: Path, entry: IndexEntry, ef_search: int) -> VectorIndex:
        """Load and check against the manifest entry; vectors are memory-mapped, not copied."""
        npy, hnsw_file = Path(folder) / f"{entry.stem}.npy", Path(folder) / f"{entry.stem}.hnsw"
        for path in (npy, hnsw_file):
            if not path.is_file():
                raise IndexMismatchError(f"{path} is missing: the index folder is incomplete. Rebuild it.")
        vectors = np.load(npy, mmap_mode="r", allow_pickle=False)
        if vectors.shape != (entry.count, entry.dim):
            raise IndexMismatchError(
                f"{npy} holds {vectors.shape[0]}x{vectors.shape[1]} vectors, the manifest says "
                f"{entry.count}x{entry.dim}. Rebuild the index."
            )
        graph = hnswlib.Index(space="ip", dim=entry.dim)
        graph.load_index(str(hnsw_file), max_elements=max(1, entry.count))
        if graph.get_current_count() != entry.count:
            raise IndexMismatchError(f"{hnsw_file} holds {graph.get_current_count()} items, expected {entry.count}.")
        graph.set_ef(ef_search)
        return cls(vectors, graph)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, cosine scores) per query row, best first."""
        if self.count < EXACT_SEARCH_BELOW:
            return self.exact_search(queries, k)
        return self.hnsw_search(queries, k)

    def hnsw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, self.count)
        if k <= 0:
            return _no_hits(len(queries))
        labels, distances = self.graph.knn_query(queries, k=k, num_threads=1)
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over every vector: the oracle for HNSW and the path for small catalogs."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, self.count)
        if k <= 0:
            return _no_hits(len(queries))
        scores = queries @ np.asarray(self.vectors).T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64), np.take_along_axis(top_scores, order, axis=1)


def _no_hits(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((rows, 0), np.int64), np.empty((rows, 0), np.float32)


class IndexReader:
    """An opened, validated index folder: the manifest, the items table, the image index, the
    caption indexes (loaded on first use) and the rows turned into hits. Safe to share between threads."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.items = items = read_items(self.folder)
        image_entry = self.manifest.image_entry
        if image_entry is None:
            raise IndexMismatchError(f"{self.folder} holds no image index. Rebuild it.")
        self.image_model = image_entry.encoder
        self.image_index = VectorIndex.load(self.folder, image_entry, self.manifest.hnsw.ef_search)
        if len(items) != self.image_index.count:
            raise IndexMismatchError(
                f"{self.folder}: the items table has {len(items)} rows but the image index "
                f"{self.image_index.count}. Rebuild the index."
            )
        self._caption_indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()
        # Plain lists (pulled from arrow in one call each): building a hit must not go through pandas
        # row lookups, and loading a 200k catalog must not parse every row's metadata up front.
        self.id_list: list[str] = [str(i) for i in items["id"].tolist()]
        self.ids = np.array(self.id_list, dtype=object)
        self.sha1s = np.array(items["sha1"].tolist(), dtype=object)
        self._captions = [c or None for c in items["caption"].fillna("").tolist()]
        self.has_caption = np.array([c is not None for c in self._captions], dtype=bool)
        self._image_paths = [p or None for p in items["image_path"].tolist()]
        self._thumbnail_names = items["thumbnail"].tolist()
        self._metadata_json = items["metadata"].tolist()
        self._row_by_sha1: dict[str, int] = {}
        for row, sha1 in enumerate(self.sha1s.tolist()):
            self._row_by_sha1.setdefault(sha1, row)

    @property
    def count(self) -> int:
        return self.image_index.count

    @property
    def image_vectors(self) -> np.ndarray:
        """Every photo's vector, in row order (memory-mapped)."""
        return self.image_index.vectors

    def caption_index(self, key: str) -> VectorIndex | None:
        with self._lock:
            if key not in self._caption_indexes:
                entry = self.manifest.find(key, "caption")
                if entry is None:
                    return None
                self._caption_indexes[key] = VectorIndex.load(self.folder, entry, self.manifest.hnsw.ef_search)
            return self._caption_indexes[key]

    def rows_of(self, item_id: str) -> np.ndarray:
        """The rows (photos) of one product."""
        return np.flatnonzero(self.ids == str(item_id))

    def row_of_photo(self, sha1: str) -> int | None:
        """The row of a photo with exactly these bytes, if the catalog has one."""
        return self._row_by_sha1.get(sha1)

    def product_vector(self, item_id: str) -> np.ndarray | None:
        """A product's photo vector (the normalised mean over its photos), or None for an unknown id."""
        rows = self.rows_of(item_id)
        if len(rows) == 0:
            return None
        mean = np.asarray(self.image_vectors[rows], dtype=np.float32).mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def excluded_rows(self, item_ids: Sequence[str], photo_sha1: str | None = None) -> np.ndarray:
        """A mask of every photo of the given products, and of the product whose photo has this hash."""
        mask = np.isin(self.ids, [str(i) for i in item_ids]) if item_ids else np.zeros(self.count, bool)
        if photo_sha1 is not None:
            mask |= self.sha1s == photo_sha1
        if mask.any():
            mask |= np.isin(self.ids, self.ids[mask])
        return mask

    def hit(self, row: int, score: float = 1.0, matched: tuple[str, ...] = (), rank_score: float = 0.0) -> Hit:
        return Hit(
            id=self.id_list[row],
            score=float(score),
            caption=self._captions[row],
            metadata=json.loads(self._metadata_json[row]) if self._metadata_json[row] else {},
            image_path=self._image_paths[row],
            thumbnail=str(self.folder / self._thumbnail_names[row]) if self._thumbnail_names[row] else None,
            matched=matched,
            rank_score=rank_score,
            row=int(row),
        )

    def metadata_table(self) -> pd.DataFrame:
        """One row per indexed photo, in index order: id, caption and a column per metadata key."""
        records = [json.loads(m) if m else {} for m in self._metadata_json]
        table = pd.DataFrame.from_records(records, index=range(self.count)).fillna("").astype(str)
        table = table.rename(columns={name: f"{name} (metadata)" for name in ("id", "caption") if name in table})
        table.insert(0, "caption", [c or "" for c in self._captions])
        table.insert(0, "id", self.ids)
        return table
