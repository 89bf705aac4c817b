"""Queries to results: encode, blend, search the indexes, fuse, de-duplicate, cut to K.

Text queries search the image index and, when the catalog has captions, the caption
index of the chosen text encoder. Text-image and text-text cosines live on different
scales, so the two lists are fused by weighted reciprocal rank, never by raw cosine.
A blend query puts `w` on the caption list too, which makes w=0 exactly an image
search and w=1 exactly a text search.

    python -m core.search --index index_data/fashion --text "red summer dress" -k 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.images import ImageError, ImageSource, decode_image, read_image_bytes
from core.index import IndexMismatchError, Manifest, VectorIndex, read_items, read_manifest
from core.models import CLIP_KEY, Encoder, ModelLoadError, get_encoder, get_spec, probe_vector

PROBE_MIN_COSINE = 0.98
RRF_K = 60
# Query photos are decoded no larger than needed for CLIP's 224 px input (see decode_image).
QUERY_DECODE_MIN_SIDE = 224
MAX_K = 1000
_TEXT_CACHE_SIZE = 512
# Query photos by content hash: a rerun of the app, or the same photo sent again, is not re-encoded.
_IMAGE_CACHE_SIZE = 64


class QueryError(ValueError):
    """A query that cannot be run as given; the message is fit to show a user."""


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


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    mode: str  # "text", "image" or "blend"
    below_threshold: int = 0  # hits dropped by the threshold: >0 with no hits means "no confident match"
    model: str = CLIP_KEY
    query_vector: np.ndarray | None = field(default=None, repr=False)  # what was searched with (for maps)

    def to_json(self) -> list[dict]:
        return [asdict(hit) for hit in self.hits]


@dataclass
class _Query:
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    image_sha1: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class SearchEngine:
    """Search over one index folder; safe to share between threads (and Streamlit sessions)."""

    def __init__(self, folder: Path | str, device: str = "auto") -> None:
        self.folder = Path(folder)
        self.device = device
        self.manifest: Manifest = read_manifest(self.folder)
        self.items: pd.DataFrame = read_items(self.folder)
        image_entries = [e for e in self.manifest.entries if e.modality == "image"]
        if not image_entries:
            raise IndexMismatchError(f"{self.folder} holds no image index. Rebuild it.")
        self.image_encoder_key = image_entries[0].encoder
        self.image_index = VectorIndex.load(self.folder, image_entries[0], self.manifest.hnsw.ef_search)
        if len(self.items) != self.image_index.count:
            raise IndexMismatchError(
                f"{self.folder}: the items table has {len(self.items)} rows but the image index "
                f"{self.image_index.count}. Rebuild the index."
            )
        self._caption_indexes: dict[str, VectorIndex] = {}
        self._checked_encoders: dict[str, Encoder] = {}
        self._text_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._image_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        # Plain lists (pulled from arrow in one call each): building a hit must not go through pandas
        # row lookups, and loading a 200k catalog must not parse every row's metadata up front.
        self._id_list = [str(i) for i in self.items["id"].tolist()]
        self._ids = np.array(self._id_list, dtype=object)
        self._sha1 = np.array(self.items["sha1"].tolist(), dtype=object)
        self._captions = [c or None for c in self.items["caption"].fillna("").tolist()]
        self._image_paths = [p or None for p in self.items["image_path"].tolist()]
        self._thumbnail_names = self.items["thumbnail"].tolist()
        self._metadata_json = self.items["metadata"].tolist()
        self._row_by_sha1: dict[str, int] = {}
        for row, sha1 in enumerate(self._sha1.tolist()):
            self._row_by_sha1.setdefault(sha1, row)

    @property
    def count(self) -> int:
        return self.image_index.count

    @property
    def models(self) -> list[str]:
        """Model keys this index can serve (its image tower's, and those it has captions for)."""
        return list(self.manifest.models)

    def encoder(self, key: str) -> Encoder:
        """Load a model and check it is the one the index was built with."""
        with self._lock:
            if key in self._checked_encoders:
                return self._checked_encoders[key]
            spec = get_spec(key)
            if spec.image_tower != self.image_encoder_key:
                raise IndexMismatchError(
                    f"Model '{key}' reads images with '{spec.image_tower}', but this index was built with "
                    f"'{self.image_encoder_key}'. Pick another model or rebuild the index."
                )
            encoder = get_encoder(key, self.device)
            if encoder.dim != self.image_index.dim:
                raise IndexMismatchError(
                    f"Model '{key}' makes {encoder.dim}-d vectors, the index in {self.folder} holds "
                    f"{self.image_index.dim}-d vectors: it was built by another model. Rebuild it with "
                    f"`python -m core.build_index --models {key} ...`."
                )
            recorded = self.manifest.models.get(key)
            if recorded is not None:
                agreement = float(np.dot(probe_vector(encoder), np.asarray(recorded["probe"], np.float32)))
                if agreement < PROBE_MIN_COSINE:
                    raise IndexMismatchError(
                        f"The index in {self.folder} was built with other weights for '{key}' than the ones "
                        f"loaded now (probe cosine {agreement:.3f}). Rebuild the index with the current model."
                    )
            self._checked_encoders[key] = encoder
            return encoder

    def caption_index(self, key: str) -> VectorIndex | None:
        with self._lock:
            if key not in self._caption_indexes:
                entry = self.manifest.find(key, "caption")
                if entry is None:
                    return None
                self._caption_indexes[key] = VectorIndex.load(self.folder, entry, self.manifest.hnsw.ef_search)
            return self._caption_indexes[key]

    def search(
        self,
        *,
        text: str | None = None,
        image: Image.Image | ImageSource | None = None,
        model: str = CLIP_KEY,
        blend: float = 0.5,
        k: int = 12,
        threshold: float | None = None,
        use_captions: bool = True,
        exclude_ids: Sequence[str] = (),
        like: str | None = None,
    ) -> SearchResult:
        """Run a text, image or blended query; see the module docstring for the semantics.

        `like` names a catalog product whose stored photo vector is the query image ("more like
        this", or an example product): nothing is decoded or encoded, and the product is left out.
        """
        started = time.perf_counter()
        text = _clean_text(text)
        if image is not None and like is not None:
            raise QueryError("Search with either an image or a catalog product, not both.")
        if text is None and image is None and like is None:
            raise QueryError("Type a description or give an image to search with.")
        if not 0.0 <= blend <= 1.0:
            raise QueryError(f"The blend weight must be between 0 and 1, not {blend}.")
        if not 1 <= k <= MAX_K:
            raise QueryError(f"K must be between 1 and {MAX_K}, not {k}.")
        encoder = self.encoder(model)
        query = _Query()
        if like is not None:
            query.image_vector = self.stored_image_vector(like)
            exclude_ids = [*exclude_ids, str(like)]
        elif image is not None:
            self._encode_image(image, encoder, query)
        if text is not None:
            self._encode_text(text, model, encoder, query)
        text_weight = 1.0 if query.image_vector is None else (0.0 if text is None else blend)
        mode = "image" if text_weight == 0.0 else "text" if text_weight == 1.0 else "blend"
        if text_weight == 1.0:
            vector = query.text_vector
        elif text_weight == 0.0:
            vector = query.image_vector
        else:
            vector = _normalise((1.0 - text_weight) * query.image_vector + text_weight * query.text_vector)
        captions = self.caption_index(model) if use_captions and text_weight > 0.0 else None
        hits, below, timings = self._ranked_hits(vector, query.text_vector, captions, text_weight, k, threshold, query, exclude_ids)
        query.timings_ms.update(timings)
        query.timings_ms["total"] = (time.perf_counter() - started) * 1000
        return SearchResult(
            hits=hits, timings_ms=query.timings_ms, mode=mode, below_threshold=below, model=model, query_vector=vector
        )

    def similar_to(self, item_id: str, *, k: int = 12, threshold: float | None = None) -> SearchResult:
        """"More like this": the product's stored image vector as the query, the product itself excluded."""
        started = time.perf_counter()
        vector = self.stored_image_vector(item_id)
        query = _Query(image_vector=vector)
        hits, below, timings = self._ranked_hits(vector, None, None, 0.0, k, threshold, query, [str(item_id)])
        timings["total"] = (time.perf_counter() - started) * 1000
        return SearchResult(
            hits=hits, timings_ms=timings, mode="image", below_threshold=below, model=self.image_encoder_key,
            query_vector=vector,
        )

    def stored_image_vector(self, item_id: str) -> np.ndarray:
        """A product's photo vector from the index (the mean over its photos), never re-encoded."""
        rows = self.item_rows(item_id)
        if len(rows) == 0:
            raise QueryError(f"No product with id '{item_id}' in this catalog.")
        return _normalise(np.asarray(self.image_index.vectors[rows], dtype=np.float32).mean(axis=0))

    def metadata_table(self) -> pd.DataFrame:
        """One row per indexed photo, in index order: id, caption and a column per metadata key."""
        records = [json.loads(m) if m else {} for m in self._metadata_json]
        table = pd.DataFrame.from_records(records, index=range(self.count)).fillna("").astype(str)
        table = table.rename(columns={name: f"{name} (metadata)" for name in ("id", "caption") if name in table})
        table.insert(0, "caption", self.items["caption"].fillna("").astype(str).to_numpy())
        table.insert(0, "id", self._ids)
        return table

    def item_rows(self, item_id: str) -> np.ndarray:
        return np.flatnonzero(self._ids == str(item_id))

    def hit_for_row(self, row: int, score: float = 1.0) -> Hit:
        return Hit(
            id=self._id_list[row],
            score=float(score),
            caption=self._captions[row],
            metadata=json.loads(self._metadata_json[row]) if self._metadata_json[row] else {},
            image_path=self._image_paths[row],
            thumbnail=str(self.folder / self._thumbnail_names[row]) if self._thumbnail_names[row] else None,
            matched=(),
            rank_score=0.0,
            row=int(row),
        )

    def _encode_image(self, image, encoder: Encoder, query: _Query) -> None:
        """Bytes already seen (in the catalog, or recently) reuse their vector: same bytes, same vector."""
        started = time.perf_counter()
        vector = None
        if not isinstance(image, Image.Image):
            data = read_image_bytes(image)
            query.image_sha1 = hashlib.sha1(data).hexdigest()
            vector = self._known_image_vector(query.image_sha1)
            if vector is None:
                image = decode_image(data, min_side=QUERY_DECODE_MIN_SIDE)
        decoded = time.perf_counter()
        if vector is None:
            vector = encoder.encode_images([image])[0]
            if query.image_sha1 is not None:
                with self._lock:
                    self._image_cache[query.image_sha1] = vector
                    while len(self._image_cache) > _IMAGE_CACHE_SIZE:
                        self._image_cache.popitem(last=False)
        query.image_vector = vector
        query.timings_ms["decode"] = (decoded - started) * 1000
        query.timings_ms["encode_image"] = (time.perf_counter() - decoded) * 1000

    def _known_image_vector(self, sha1: str) -> np.ndarray | None:
        with self._lock:
            vector = self._image_cache.get(sha1)
            if vector is not None:
                self._image_cache.move_to_end(sha1)
                return vector
        row = self._row_by_sha1.get(sha1)
        if row is None:
            return None
        return np.asarray(self.image_index.vectors[row], dtype=np.float32)

    def _encode_text(self, text: str, model: str, encoder: Encoder, query: _Query) -> None:
        started = time.perf_counter()
        key = (model, text)
        with self._lock:
            vector = self._text_cache.get(key)
            if vector is not None:
                self._text_cache.move_to_end(key)
        if vector is None:
            vector = encoder.encode_texts([text])[0]
            with self._lock:
                self._text_cache[key] = vector
                while len(self._text_cache) > _TEXT_CACHE_SIZE:
                    self._text_cache.popitem(last=False)
        query.text_vector = vector
        query.timings_ms["encode_text"] = (time.perf_counter() - started) * 1000

    def _excluded_rows(self, exclude_ids: Sequence[str], image_sha1: str | None) -> np.ndarray:
        mask = np.isin(self._ids, [str(i) for i in exclude_ids]) if exclude_ids else np.zeros(self.count, bool)
        if image_sha1 is not None:
            mask |= self._sha1 == image_sha1
        if mask.any():
            # every photo of an excluded product goes, not only the matching one
            mask |= np.isin(self._ids, self._ids[mask])
        return mask

    def _ranked_hits(self, vector, text_vector, captions, text_weight, k, threshold, query, exclude_ids):
        excluded = self._excluded_rows(exclude_ids, query.image_sha1)
        search_ms = merge_ms = 0.0
        fetch = min(self.count, 2 * k + 16 + int(excluded.sum()))
        while True:
            started = time.perf_counter()
            lists = [("image", 1.0, *self.image_index.search(vector, fetch))]
            if captions is not None:
                lists.append(("caption", text_weight, *captions.search(text_vector, fetch)))
            searched = time.perf_counter()
            hits, below = self._fuse(lists, vector, excluded, k, threshold)
            merge_ms += (time.perf_counter() - searched) * 1000
            search_ms += (searched - started) * 1000
            if len(hits) + below >= k or fetch >= self.count:
                return hits[:k], below, {"search": search_ms, "merge": merge_ms}
            fetch = min(self.count, fetch * 4)

    def _fuse(self, lists, vector, excluded, k, threshold) -> tuple[list[Hit], int]:
        fused: dict[int, float] = {}
        matched: dict[int, list[str]] = {}
        for name, weight, labels, _scores in lists:
            if weight <= 0.0:
                continue
            for rank, row in enumerate(labels[0].tolist()):
                if excluded[row] or (name == "caption" and self._captions[row] is None):
                    continue
                fused[row] = fused.get(row, 0.0) + weight / (RRF_K + rank + 1)
                matched.setdefault(row, []).append(name)
        if not fused:
            return [], 0
        rows = np.fromiter(fused, dtype=np.int64, count=len(fused))
        image_scores = np.asarray(self.image_index.vectors[np.sort(rows)], dtype=np.float32) @ vector
        score_of = dict(zip(np.sort(rows).tolist(), image_scores.tolist()))
        best_by_id: dict[str, int] = {}
        for row in sorted(fused, key=lambda r: (-fused[r], -score_of[r])):
            best_by_id.setdefault(self._id_list[row], row)
        hits, below = [], 0
        for row in best_by_id.values():
            if threshold is not None and score_of[row] < threshold:
                below += 1
                continue
            hit = self.hit_for_row(row, score_of[row])
            hit.matched, hit.rank_score = tuple(matched[row]), fused[row]
            hits.append(hit)
            if len(hits) == k:
                break
        return hits, below


def _clean_text(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = "".join(ch for ch in text if ch.isprintable() or ch in " \t\n").strip()
    return cleaned or None


def _normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise QueryError("The text and the image cancel each other out; change the blend weight.")
    return (vector / norm).astype(np.float32)


def _format_hit(rank: int, hit: Hit) -> str:
    caption = hit.caption or ""
    return f"{rank:>3}. {hit.score:6.3f}  {hit.id:<16} {caption}  [{'+'.join(hit.matched)}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.search", description="Search a Vitrine index.")
    parser.add_argument("--index", type=Path, required=True, help="index folder (index_data/<name>)")
    parser.add_argument("--text", help="description, in any language with the multilingual model")
    parser.add_argument("--image", type=Path, help="query image file")
    parser.add_argument("--blend", type=float, default=0.5, help="text weight when both are given (0=image, 1=text)")
    parser.add_argument("-k", type=int, default=10, help="number of results")
    parser.add_argument("--model", default=CLIP_KEY, help="model key")
    parser.add_argument("--threshold", type=float, help="drop hits whose image cosine is below this")
    parser.add_argument("--no-captions", action="store_true", help="search product images only")
    parser.add_argument("--json", action="store_true", help="print a JSON list of hits")
    args = parser.parse_args(argv)
    try:
        engine = SearchEngine(args.index)
        result = engine.search(
            text=args.text,
            image=args.image,
            model=args.model,
            blend=args.blend,
            k=args.k,
            threshold=args.threshold,
            use_captions=not args.no_captions,
        )
    except (QueryError, ImageError, ModelLoadError, IndexMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return 0
    for rank, hit in enumerate(result.hits, 1):
        print(_format_hit(rank, hit))
    if not result.hits:
        print("no confident match" if result.below_threshold else "no results")
    timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings_ms.items())
    print(f"({result.mode} search, {timings})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
