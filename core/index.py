"""Index folders: hnswlib files per (model key, modality), the manifest and the items table.

Every file is written to a temporary name and renamed into place, so a reader never
sees half a file. Loading checks the manifest against what the caller expects and
refuses a mismatch with a message that says how to fix it. Nothing is pickled.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_path
from core.facets import Facet, Filters, RowFilter, compute_facets, filter_columns, filter_mask, normalise_filters

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.parquet"
THUMBNAILS_DIR = "thumbnails"
FACET_GRAPHS_DIR = "facet_graphs"
# Below this many vectors a brute-force scan is both exact and faster than HNSW.
EXACT_SEARCH_BELOW = 2048
# Filtered search (VectorIndex.search; bench/filtered_search.py measured these at 50k vectors):
# a walk fetches OVERFETCH * k / share rows to keep about OVERFETCH * k allowed ones, and costs
# about WALK_COST vectors per row its beam holds (at least ef): an exact scan over the allowed rows
# wins while they are fewer than that.
OVERFETCH = 3
WALK_COST = 20
# A facet graph holds a random share of each cluster, so its neighbourhoods are sparser: it walks
# with a wider beam than the whole graph (recall@10 at 10 % of 50k: 0.990 at 1x, 0.996 at 1.5x).
FACET_EF_FACTOR = 1.5
FILTER_CACHE_SIZE = 64  # filters (row masks) kept per reader: a visitor's reruns reuse theirs
# The items table's columns, each a string column (metadata holds a JSON object per row).
ITEM_COLUMNS = ("id", "caption", "image_path", "thumbnail", "sha1", "metadata")
MODALITIES = ("image", "caption")
# hnswlib's file header (0.8): offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t), maxlevel (int), enterpoint (uint), maxM, maxM0, M (size_t),
# mult (double), ef_construction (size_t). Then per element its level-0 block, then its upper links.
_HNSW_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
REBUILD = "Rebuild it: `python -m core.build_index ... --out {folder}`."


class IndexMismatchError(ValueError):
    """An index folder that does not fit what the caller asked for (format, model, dims), or is damaged."""


def damaged(path: Path, what: str, folder: Path | None = None) -> IndexMismatchError:
    """The one-line error for a damaged index file: which file, what is wrong, how to fix it."""
    folder = Path(folder) if folder is not None else Path(path).parent
    return IndexMismatchError(f"{path} is damaged: {what}. {REBUILD.format(folder=folder)}")


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

    def __post_init__(self) -> None:
        for name in ("m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"hnsw {name} must be a whole number of at least 1, not {value!r}")


def vector_stem(modality: str, model_key: str) -> str:
    """File name (without suffix) of the vectors one model made from one modality."""
    return f"{modality}__{model_key}"


@dataclass(frozen=True)
class IndexEntry:
    """One vector file of an index folder: which model made it (`encoder`, the manifest's name for
    the model key), from which modality."""

    encoder: str
    modality: str  # "image" or "caption"
    dim: int
    count: int
    # facet key -> casefolded value -> {"file": path in the folder, "count": rows}: a graph per common value
    facet_graphs: dict[str, dict[str, dict]] = field(default_factory=dict, hash=False)

    @property
    def stem(self) -> str:
        return vector_stem(self.modality, self.encoder)

    def facet_graph_files(self) -> list[tuple[str, int]]:
        """(file, rows) of every facet graph of this vector file."""
        return [(graph["file"], graph["count"]) for values in self.facet_graphs.values() for graph in values.values()]


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
    # new for every build or update: a running server that sees another one reopens the folder
    build_id: str = ""
    # what the last update changed (products added, changed, removed, unchanged); empty after a full build
    changes: dict[str, int] = field(default_factory=dict)

    def find(self, model_key: str, modality: str) -> IndexEntry | None:
        return next((e for e in self.entries if e.encoder == model_key and e.modality == modality), None)

    @property
    def image_entry(self) -> IndexEntry | None:
        """The default image index: the first tower the index was built with."""
        return next((e for e in self.entries if e.modality == "image"), None)

    def image_entry_for(self, tower: str) -> IndexEntry | None:
        """The image index of one image tower (an index holds one per tower it was built with)."""
        return self.find(tower, "image")

    @property
    def image_towers(self) -> list[str]:
        """Image towers with an image index here, the default first."""
        return [e.encoder for e in self.entries if e.modality == "image"]

    @property
    def version(self) -> str:
        """What tells one build of this folder from the next (older manifests have no build id)."""
        return self.build_id or self.created_at

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
    def facets(self) -> dict[str, Facet]:
        """Facets recorded at build time (values with product counts); empty for indexes built before facets."""
        return {name: Facet.from_dict(name, data) for name, data in self.catalog.get("facets", {}).items()}

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
        """A manifest from its JSON; ValueError (KeyError, TypeError) says what does not fit."""
        _require(isinstance(data, dict), "it is not a JSON object")
        catalog, hnsw, entries = data["catalog"], data["hnsw"], data["entries"]
        _require(isinstance(catalog, dict), "'catalog' is not an object")
        _require(isinstance(hnsw, dict), "'hnsw' is not an object")
        _require(isinstance(entries, list) and all(isinstance(e, dict) for e in entries), "'entries' is not a list of objects")
        models = data.get("models", {})
        _require(isinstance(models, dict), "'models' is not an object")
        manifest = cls(
            catalog=catalog,
            hnsw=HnswParams(**hnsw),
            entries=[IndexEntry(**entry) for entry in entries],
            created_at=str(data["created_at"]),
            models=models,
            format_version=data["format_version"],
            build_id=str(data.get("build_id", "")),
            changes=dict(data.get("changes", {})),
        )
        for entry in manifest.entries:
            _require(
                isinstance(entry.encoder, str) and entry.modality in MODALITIES
                and _whole(entry.dim) and entry.dim >= 1 and _whole(entry.count) and entry.count >= 0,
                f"the entry {entry} is not a valid vector file",
            )
            _require(
                isinstance(entry.facet_graphs, dict)
                and all(isinstance(values, dict) for values in entry.facet_graphs.values())
                and all(
                    isinstance(graph, dict) and _inside_graphs_dir(graph.get("file")) and _whole(graph.get("count"))
                    and 1 <= graph["count"] <= entry.count
                    for values in entry.facet_graphs.values() for graph in values.values()
                ),
                f"the facet graphs of {entry.stem} are not a list of files with row counts",
            )
        for name in ("items", "products", "skipped"):
            _require(_whole(catalog.get(name, 0)), f"catalog '{name}' is not a whole number")
        return manifest


def _inside_graphs_dir(file: object) -> bool:
    return isinstance(file, str) and file.startswith(f"{FACET_GRAPHS_DIR}/") and ".." not in file.split("/")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


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
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise damaged(path, f"it is not readable JSON ({_first_line(err)})", folder) from err
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(data, dict) and version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"{folder} has index format {version}, this version of Vitrine reads format {FORMAT_VERSION}. "
            + REBUILD.format(folder=folder)
        )
    try:
        return Manifest.from_dict(data)
    except KeyError as err:
        raise damaged(path, f"the field {err} is missing", folder) from err
    except (ValueError, TypeError) as err:
        raise damaged(path, _first_line(err), folder) from err


def _holds_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


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
    """The items table, checked: readable parquet with every column the reader uses, as strings."""
    path = Path(folder) / ITEMS_FILE
    if not path.is_file():
        raise IndexMismatchError(f"{path} is missing: the index folder is incomplete. {REBUILD.format(folder=folder)}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as err:  # emptied, truncated, not parquet
        raise damaged(path, f"it is not a readable parquet table ({_first_line(err)})", folder) from err
    missing = [name for name in ITEM_COLUMNS if name not in table.schema.names]
    if missing:
        raise damaged(path, f"the column(s) {', '.join(missing)} are missing", folder)
    wrong = [name for name in ITEM_COLUMNS if not _holds_text(table.schema.field(name).type)]
    if wrong:
        raise damaged(path, f"the column(s) {', '.join(wrong)} do not hold text", folder)
    return table.to_pandas()


class FacetGraph:
    """One facet value's HNSW graph: its rows' vectors, labelled with their rows in the whole index.

    Loaded on the first filter that walks it, so a catalog pays memory only for the values visitors use."""

    def __init__(self, path: Path, count: int, dim: int, ef_search: int) -> None:
        self.path, self.count, self.dim, self.ef_search = path, count, dim, ef_search
        self._graph: hnswlib.Index | None = None
        self._lock = threading.Lock()

    def graph(self) -> hnswlib.Index:
        with self._lock:
            if self._graph is None:
                graph = hnswlib.Index(space="ip", dim=self.dim)
                try:
                    graph.load_index(str(self.path), max_elements=self.count)
                except (RuntimeError, MemoryError, ValueError) as err:
                    raise damaged(self.path, f"hnswlib cannot load it ({_first_line(err)})") from err
                graph.set_ef(int(np.ceil(self.ef_search * FACET_EF_FACTOR)))
                self._graph = graph
            return self._graph


def _hnsw_graph(
    vectors: np.ndarray, labels: np.ndarray, params: HnswParams, batch_size: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> hnswlib.Index:
    graph = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
    graph.init_index(max_elements=max(1, len(vectors)), M=params.m, ef_construction=params.ef_construction)
    for start in range(0, len(vectors), batch_size):
        chunk = vectors[start : start + batch_size]
        graph.add_items(chunk, labels[start : start + len(chunk)])
        if progress is not None:
            progress(len(chunk))
    graph.set_ef(params.ef_search)
    return graph


def _save_graph(graph: hnswlib.Index, path: Path) -> None:
    with atomic_path(path) as tmp:
        graph.save_index(str(tmp))


class VectorIndex:
    """Unit vectors with an HNSW graph over them (inner product = cosine), an exact fallback, and
    optionally a graph per common facet value (FacetGraph) that filtered searches walk instead."""

    def __init__(
        self, vectors: np.ndarray, graph: hnswlib.Index, facet_graphs: dict[str, dict[str, FacetGraph]] | None = None
    ) -> None:
        self.vectors = vectors
        self.graph = graph
        self.facet_graphs = facet_graphs or {}
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
        return cls(vectors, _hnsw_graph(vectors, np.arange(len(vectors)), params, batch_size, progress))

    def save(self, folder: Path, stem: str) -> None:
        with atomic_path(folder / f"{stem}.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, self.vectors, allow_pickle=False)
        _save_graph(self.graph, folder / f"{stem}.hnsw")

    def save_facet_graphs(
        self, folder: Path, stem: str, value_rows: dict[str, dict[str, np.ndarray]], params: HnswParams = HnswParams()
    ) -> dict[str, dict[str, dict]]:
        """Build and save a graph per facet value (key -> value -> rows); returns the manifest entry's `facet_graphs`."""
        recorded: dict[str, dict[str, dict]] = {}
        for key, values in value_rows.items():
            for value, rows in values.items():
                (folder / FACET_GRAPHS_DIR).mkdir(exist_ok=True)
                digest = hashlib.sha1(f"{key}\0{value}".encode()).hexdigest()[:16]
                file = f"{FACET_GRAPHS_DIR}/{stem}__{digest}.hnsw"
                vectors = np.ascontiguousarray(self.vectors[rows], dtype=np.float32)
                _save_graph(_hnsw_graph(vectors, np.asarray(rows, np.int64), params), folder / file)
                recorded.setdefault(key, {})[value] = {"file": file, "count": int(len(rows))}
        return recorded

    @classmethod
    def load(cls, folder: Path, entry: IndexEntry, ef_search: int) -> VectorIndex:
        """Load and check against the manifest entry; vectors are memory-mapped, not copied."""
        npy, hnsw_file = check_vector_files(folder, entry)
        try:
            vectors = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise damaged(npy, f"its vectors cannot be read ({_first_line(err)})", folder) from err
        if vectors.shape != (entry.count, entry.dim) or vectors.dtype != np.float32:
            raise damaged(
                npy, f"it holds {'x'.join(map(str, vectors.shape))} {vectors.dtype} vectors, the manifest says "
                f"{entry.count}x{entry.dim} float32", folder,
            )
        graph = hnswlib.Index(space="ip", dim=entry.dim)
        try:
            graph.load_index(str(hnsw_file), max_elements=max(1, entry.count))
        except (RuntimeError, MemoryError, ValueError) as err:
            raise damaged(hnsw_file, f"hnswlib cannot load it ({_first_line(err)})", folder) from err
        if graph.get_current_count() != entry.count:
            raise damaged(hnsw_file, f"it holds {graph.get_current_count()} items, the manifest says {entry.count}", folder)
        graph.set_ef(ef_search)
        facet_graphs = {
            key: {value: FacetGraph(folder / g["file"], g["count"], entry.dim, ef_search) for value, g in values.items()}
            for key, values in entry.facet_graphs.items()
        }
        return cls(vectors, graph, facet_graphs)

    def search(self, queries: np.ndarray, k: int, allowed: RowFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, cosine scores) per query row, best first, among the `allowed` rows if given.

        The method follows the selectivity and costs (bench/filtered_search.py measures each): an
        exact scan over the allowed rows when few pass (it touches only them); the graphs of the
        filtered facet values where they exist, over-fetched by the share of their rows that pass
        the other keys; else an over-fetched walk of the whole graph. A walk that finds too few
        allowed rows (a filter that avoids the query's neighbourhood) ends in hnswlib's own filter."""
        if allowed is not None and allowed.count < self.count:
            rows = allowed.rows
            fetch = int(np.ceil(OVERFETCH * k * self.count / max(len(rows), 1)))
            walk_cost = WALK_COST * max(self.graph.ef, fetch)
            cover = self._facet_cover(allowed, k)
            graph_cost = np.inf if cover is None else WALK_COST * sum(max(self.graph.ef, f) for _, f in cover)
            if self.count < EXACT_SEARCH_BELOW or len(rows) <= min(walk_cost, graph_cost) or fetch >= self.count:
                return self.exact_search(queries, k, rows)
            if cover is not None and graph_cost <= walk_cost:
                found = self._walk_facet_graphs(queries, k, allowed, cover)
                if found is not None:
                    return found
            return self._overfetched(queries, k, allowed.mask, fetch)
        if self.count < EXACT_SEARCH_BELOW:
            return self.exact_search(queries, k)
        return self.hnsw_search(queries, k)

    def _facet_cover(self, allowed: RowFilter, k: int) -> list[tuple[FacetGraph, int]] | None:
        """The facet graphs to walk for a filter, each with how many rows to fetch from it, or None.

        Of the filtered keys whose every value has a graph, the one covering the fewest rows; each
        graph is fetched k rows over the share of the covered rows that pass the other keys too."""
        best: list[FacetGraph] | None = None
        for key, values in allowed.terms.items():
            graphs = self.facet_graphs.get(key, {})
            if all(value in graphs for value in values):
                chosen = [graphs[value] for value in values]
                if best is None or sum(g.count for g in chosen) < sum(g.count for g in best):
                    best = chosen
        if best is None:
            return None
        inner = min(1.0, allowed.count / sum(g.count for g in best))
        fetch = k if inner >= 1.0 else int(np.ceil(OVERFETCH * k / inner))
        return [(graph, min(fetch, graph.count)) for graph in best]

    def _walk_facet_graphs(
        self, queries: np.ndarray, k: int, allowed: RowFilter, cover: list[tuple[FacetGraph, int]]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Each graph's best rows (labelled with their rows here), cut to the allowed ones and merged;
        None where a query keeps fewer than k (the caller walks the whole graph instead)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, allowed.count)
        try:
            found = [graph.graph().knn_query(queries, k=fetch, num_threads=1) for graph, fetch in cover]
        except RuntimeError:  # hnswlib reached fewer than `fetch` rows of a graph
            return None
        labels = np.concatenate([labels for labels, _ in found], axis=1).astype(np.int64)
        scores = 1.0 - np.concatenate([distances for _, distances in found], axis=1)
        kept_labels, kept_scores = [], []
        for row_labels, row_scores in zip(labels, scores):
            passing = allowed.mask[row_labels]
            if np.count_nonzero(passing) < k:
                return None
            row_labels, row_scores = row_labels[passing], row_scores[passing]
            best = np.argsort(-row_scores, kind="stable")[:k]
            kept_labels.append(row_labels[best])
            kept_scores.append(row_scores[best])
        return np.asarray(kept_labels, np.int64), np.asarray(kept_scores, np.float32)

    def hnsw_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW top-k; with `allowed`, hnswlib's filter keeps the walk to those rows (exact scan if it runs dry)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, self.count)
        if k <= 0:
            return _no_hits(len(queries))
        if allowed is None:
            labels, distances = self.graph.knn_query(queries, k=k, num_threads=1)
        else:
            try:
                labels, distances = self.graph.knn_query(
                    queries, k=k, num_threads=1, filter=allowed.view(np.uint8).tobytes().__getitem__
                )
            except RuntimeError:  # fewer than k allowed rows reachable in the graph
                return self.exact_search(queries, k, np.flatnonzero(allowed))
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def _overfetched(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fetch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """An unfiltered walk with a `fetch`-wide beam, cut to the allowed rows; hnswlib's filter if too few pass.

        hnswlib calls a Python filter for every candidate it keeps, which costs more than the
        wider beam at every selectivity measured; it is the fallback, not the first choice."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, int(np.count_nonzero(allowed)))
        labels, distances = self.graph.knn_query(queries, k=fetch, num_threads=1)  # hnswlib's beam is max(ef, k)
        kept_labels, kept_scores = [], []
        for row_labels, row_distances in zip(labels, distances):
            passing = allowed[row_labels]
            if np.count_nonzero(passing) < k:
                return self.hnsw_search(queries, k, allowed)
            kept_labels.append(row_labels[passing][:k])
            kept_scores.append(1.0 - row_distances[passing][:k])
        return np.asarray(kept_labels, np.int64), np.asarray(kept_scores, np.float32)

    def exact_search(
        self, queries: np.ndarray, k: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over every vector (or only `rows`): the oracle for HNSW and the path for small sets."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, self.count if rows is None else len(rows))
        if k <= 0:
            return _no_hits(len(queries))
        vectors = np.asarray(self.vectors) if rows is None else np.asarray(self.vectors[rows])
        scores = queries @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        labels = np.take_along_axis(top, order, axis=1)
        if rows is not None:
            labels = rows[labels]
        return labels.astype(np.int64), np.take_along_axis(top_scores, order, axis=1)


def check_folder(folder: Path) -> tuple[Manifest, pd.DataFrame]:
    """The checks every load makes, from headers and sizes, loading no graph: the manifest, the items
    table, and each vector file against them (caption files load only at the first words query)."""
    folder = Path(folder)
    manifest, items = read_manifest(folder), read_items(folder)
    if manifest.image_entry is None:
        raise damaged(folder / MANIFEST_FILE, "it records no image index")
    for entry in manifest.entries:
        if entry.count != len(items):
            raise damaged(folder / MANIFEST_FILE, f"it records {entry.count} {entry.stem} vectors for {len(items)} rows of {ITEMS_FILE}")
        check_vector_files(folder, entry)
    return manifest, items


def check_vector_files(folder: Path, entry: IndexEntry) -> tuple[Path, Path]:
    """Cheap checks of one entry's .npy and .hnsw against the manifest, from their headers and sizes
    (nothing is loaded): catches truncated, emptied and overwritten files before they reach hnswlib."""
    folder = Path(folder)
    npy, hnsw_file = folder / f"{entry.stem}.npy", folder / f"{entry.stem}.hnsw"
    for path in (npy, hnsw_file):
        if not path.is_file():
            raise IndexMismatchError(f"{path} is missing: the index folder is incomplete. {REBUILD.format(folder=folder)}")
    _check_npy(npy, entry, folder)
    _check_hnsw(hnsw_file, entry.dim, entry.count, folder)
    for file, count in entry.facet_graph_files():
        if not (folder / file).is_file():
            raise IndexMismatchError(f"{folder / file} is missing: the index folder is incomplete. {REBUILD.format(folder=folder)}")
        _check_hnsw(folder / file, entry.dim, count, folder)
    return npy, hnsw_file


def _check_npy(path: Path, entry: IndexEntry, folder: Path) -> None:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            data_start = handle.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as err:
        raise damaged(path, f"its header cannot be read ({_first_line(err)})", folder) from err
    if tuple(shape) != (entry.count, entry.dim) or dtype != np.float32 or fortran:
        raise damaged(
            path, f"it holds {'x'.join(map(str, shape))} {dtype} vectors, the manifest says {entry.count}x{entry.dim} float32",
            folder,
        )
    expected = data_start + entry.count * entry.dim * 4
    if os.path.getsize(path) != expected:
        raise damaged(path, f"it is {os.path.getsize(path):,} bytes, {entry.count}x{entry.dim} vectors take {expected:,}", folder)


def _check_hnsw(path: Path, dim: int, expected_count: int, folder: Path) -> None:
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(_HNSW_HEADER.size)
    if len(head) < _HNSW_HEADER.size:
        raise damaged(path, f"it is {size:,} bytes, shorter than an hnswlib header", folder)
    (offset0, _, count, per_element, label_offset, offset_data, max_level, _, max_m, max_m0, m, _, _) = (
        _HNSW_HEADER.unpack(head)
    )
    layout_ok = (
        offset0 == 0 and 1 <= m <= 4096 and max_m == m and max_m0 == 2 * m and offset_data == max_m0 * 4 + 4
        and label_offset == offset_data + dim * 4 and per_element == label_offset + 8 and 0 <= max_level < 64
    )
    if not layout_ok:
        raise damaged(path, f"its header is not that of an hnswlib graph of {dim}-d vectors", folder)
    if count != expected_count:
        raise damaged(path, f"it holds {count:,} items, the manifest says {expected_count:,}", folder)
    smallest = _HNSW_HEADER.size + count * (per_element + 4)  # level-0 blocks and a link-list size per element
    largest = smallest + count * max_level * (max_m * 4 + 4)
    if not smallest <= size <= largest:
        raise damaged(path, f"it is {size:,} bytes, a graph of {count:,} items takes {smallest:,} to {largest:,}", folder)


def _no_hits(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((rows, 0), np.int64), np.empty((rows, 0), np.float32)


class IndexReader:
    """An opened, validated index folder: the manifest, the items table, the default image index, the
    other towers' image indexes and the caption indexes (loaded on first use) and the rows turned into
    hits. Safe to share between threads."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.manifest, self.items = check_folder(self.folder)
        items = self.items
        image_entry = self.manifest.image_entry
        self.image_model = image_entry.encoder
        self.image_index = VectorIndex.load(self.folder, image_entry, self.manifest.hnsw.ef_search)
        self._caption_indexes: dict[str, VectorIndex] = {}
        self._image_indexes: dict[str, VectorIndex] = {self.image_model: self.image_index}
        self._lock = threading.Lock()
        # Plain lists (pulled from arrow in one call each): building a hit must not go through pandas
        # row lookups, and loading a 200k catalog must not parse every row's metadata up front.
        self.id_list: list[str] = [str(i) for i in items["id"].tolist()]
        self.ids = np.array(self.id_list, dtype=object)
        self._product_codes = pd.factorize(self.ids)[0]
        self.sha1s = np.array(items["sha1"].tolist(), dtype=object)
        self._captions = [c or None for c in items["caption"].fillna("").tolist()]
        self.has_caption = np.array([c is not None for c in self._captions], dtype=bool)
        self._image_paths = [p or None for p in items["image_path"].tolist()]
        self._thumbnail_names = items["thumbnail"].tolist()
        self._metadata_json = items["metadata"].tolist()
        self._filter_columns: dict[str, np.ndarray] | None = None
        self._facets: dict[str, Facet] | None = None
        self._filters: dict[tuple, RowFilter] = {}
        self._row_by_sha1: dict[str, int] = {}
        for row, sha1 in enumerate(self.sha1s.tolist()):
            self._row_by_sha1.setdefault(sha1, row)

    @property
    def count(self) -> int:
        return self.image_index.count

    @property
    def image_vectors(self) -> np.ndarray:
        """Every photo's vector from this reader's image tower, in row order (memory-mapped)."""
        return self.image_index.vectors

    @property
    def image_towers(self) -> list[str]:
        """The image towers this index has an image index for, the default first."""
        return self.manifest.image_towers

    def image_index_for(self, tower: str | None = None) -> VectorIndex:
        """The image index of one image tower (None: the default), loaded on first use."""
        tower = tower or self.image_model
        with self._lock:
            if tower not in self._image_indexes:
                entry = self.manifest.image_entry_for(tower)
                if entry is None:
                    raise IndexMismatchError(
                        f"{self.folder} holds no image index for '{tower}' (it has {', '.join(self.image_towers)}). "
                        f"Rebuild it with `python -m core.build_index --models ...,{tower}`."
                    )
                index = VectorIndex.load(self.folder, entry, self.manifest.hnsw.ef_search)
                if index.count != self.count:
                    raise IndexMismatchError(
                        f"{self.folder}: the image index of '{tower}' holds {index.count} vectors, the items "
                        f"table {len(self.id_list)} rows. Rebuild the index."
                    )
                self._image_indexes[tower] = index
            return self._image_indexes[tower]

    def for_tower(self, tower: str) -> IndexReader:
        """This index as a model of another image tower sees it: the same items, hits and caption
        indexes, with that tower's image index (and so its photo and product vectors) as the default."""
        if tower == self.image_model:
            return self
        view = copy.copy(self)  # shares the loaded indexes, the tables and the lock
        view.image_model, view.image_index = tower, self.image_index_for(tower)
        return view

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

    @property
    def facets(self) -> dict[str, Facet]:
        """The catalog's facets: the manifest's, or computed once from the items table for an index that predates them."""
        if self._facets is None:
            self._facets = self.manifest.facets or compute_facets(self.id_list, self._records())
        return self._facets

    @property
    def filter_keys(self) -> list[str]:
        """Every metadata key a filter can name (facets and other columns alike)."""
        return list(self._columns())

    def allowed_rows(self, filters: Filters | None) -> RowFilter | None:
        """The rows whose metadata passes the filters, or None when nothing is filtered.

        Values of one key OR, keys AND, case-insensitive; an unknown key is a FilterError."""
        clean = normalise_filters(filters, self._columns())
        if not clean:
            return None
        key = tuple(sorted(clean.items(), key=lambda pair: pair[0]))
        with self._lock:
            allowed = self._filters.get(key)
            if allowed is None:
                if len(self._filters) >= FILTER_CACHE_SIZE:
                    self._filters.pop(next(iter(self._filters)))
                allowed = self._filters[key] = RowFilter(filter_mask(self._filter_columns, clean, self.count), clean)
        return allowed

    def products_in(self, rows: np.ndarray) -> int:
        """How many distinct products a row mask (or row numbers) covers."""
        return int(np.count_nonzero(np.bincount(self._product_codes[rows], minlength=1)))

    def _records(self) -> list[dict]:
        return [self._metadata(row) for row in range(self.count)]

    def _columns(self) -> dict[str, np.ndarray]:
        """Casefolded metadata values per key, parsed once on the first filter (not at load)."""
        if self._filter_columns is None:
            self._filter_columns = filter_columns(self._records())
        return self._filter_columns

    def hit(self, row: int, score: float = 1.0, matched: tuple[str, ...] = (), rank_score: float = 0.0) -> Hit:
        """A row as a hit; a thumbnail file that is gone is None (the grid draws a placeholder)."""
        thumbnail = self.folder / self._thumbnail_names[row] if self._thumbnail_names[row] else None
        return Hit(
            id=self.id_list[row],
            score=float(score),
            caption=self._captions[row],
            metadata=self._metadata(row),
            image_path=self._image_paths[row],
            thumbnail=str(thumbnail) if thumbnail is not None and thumbnail.is_file() else None,
            matched=matched,
            rank_score=rank_score,
            row=int(row),
        )

    def _metadata(self, row: int) -> dict[str, str]:
        """One row's metadata, parsed when first shown (parsing all of a large catalog at load would be slow)."""
        text = self._metadata_json[row]
        if not text:
            return {}
        try:
            metadata = json.loads(text)
        except ValueError as err:
            raise damaged(self.folder / ITEMS_FILE, f"row {row}'s metadata is not JSON ({err})") from err
        if not isinstance(metadata, dict):
            raise damaged(self.folder / ITEMS_FILE, f"row {row}'s metadata is not a JSON object")
        return metadata

    def metadata_table(self) -> pd.DataFrame:
        """One row per indexed photo, in index order: id, caption and a column per metadata key."""
        table = pd.DataFrame.from_records(self._records(), index=range(self.count)).fillna("").astype(str)
        table = table.rename(columns={name: f"{name} (metadata)" for name in ("id", "caption") if name in table})
        table.insert(0, "caption", [c or "" for c in self._captions])
        table.insert(0, "id", self.ids)
        return table
