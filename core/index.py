"""Index folders: hnswlib files per (encoder, modality), the manifest and the items table.

Every file is written to a temporary name and renamed into place, so a reader never
sees half a file. Loading checks the manifest against what the caller expects and
refuses a mismatch with a message that says how to fix it. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
import pandas as pd

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.parquet"
THUMBNAILS_DIR = "thumbnails"
# Below this many vectors a brute-force scan is both exact and faster than HNSW.
EXACT_SEARCH_BELOW = 2048


class IndexMismatchError(ValueError):
    """An index folder that does not fit what the caller asked for (format, model, dims)."""


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


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished staging folder onto `target`; the old one goes only once the new one is there."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


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
