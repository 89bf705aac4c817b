"""Queries to results: encode, blend, search the indexes, fuse, de-duplicate, cut to K.

Text queries search the image index and, when the catalog has captions, the caption
index of the chosen text encoder. Text-image and text-text cosines live on different
scales, so the two lists are fused by weighted reciprocal rank, never by raw cosine.
A blend query puts `w` on the caption list too, which makes w=0 exactly an image
search and w=1 exactly a text search. A model whose image tower is not the index's default
(FashionCLIP beside CLIP) searches that tower's own image index: the engine hands the query
to an engine over the reader's view of that tower, so photos, blends, products and steering
all use that tower's vectors. Steering (core/steering.py) moves the query before the
search: away from "not" words, toward liked and away from unliked products. Filters on
facets restrict both lists to the passing products (core/facets.py, IndexReader.allowed_rows).

    python -m core.search --index index_data/fashion --text "red summer dress" -k 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core import cli
from core.facets import FilterError, Filters, RowFilter, parse_filter_args
from core.fusion import RankedList, best_per_product, cut, fuse
from core.images import ImageError, ImageSource, decode_query_image, read_image_bytes
from core.index import Hit, IndexMismatchError, IndexReader, Manifest, VectorIndex
from core.lru import LRU
from core.models import CLIP_KEY, Encoder, ModelLoadError, get_encoder, get_spec
from core.steering import SteeringError, steer
from core.weights import check_fits

MAX_K = 1000
TEXT_CACHE_SIZE = 512
# Query photos by content hash: a rerun of the app, or the same photo sent again, is not re-encoded.
IMAGE_CACHE_SIZE = 64


class QueryError(ValueError):
    """A query that cannot be run as given; the message is fit to show a user."""


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    mode: str  # "text", "image" or "blend"
    below_threshold: int = 0  # hits dropped by the threshold: >0 with no hits means "no confident match"
    model: str = CLIP_KEY
    query_vector: np.ndarray | None = field(default=None, repr=False)  # what was searched with (for maps)
    matching: int | None = None  # products that pass the filters (None: no filter); 0 means "nothing matches"

    def to_json(self) -> list[dict]:
        return [asdict(hit) for hit in self.hits]


@dataclass
class _Query:
    """A query on its way through the engine: its vectors and what they cost."""

    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    image_sha1: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ranking:
    """What the ranking step needs: the vectors, the caption list's weight, the rows left out."""

    vector: np.ndarray
    text_vector: np.ndarray | None
    captions: VectorIndex | None
    text_weight: float
    excluded: np.ndarray
    allowed: RowFilter | None  # rows that pass the filters; None: every row
    k: int
    threshold: float | None


class SearchEngine:
    """A query -> ranked hits over one index folder; safe to share between threads (and Streamlit sessions)."""

    def __init__(
        self,
        reader: IndexReader | Path | str,
        device: str = "auto",
        load_encoder: Callable[[str, str], Encoder] = get_encoder,
    ) -> None:
        """`load_encoder(key, device)` gives the model of a key (this process's; Serve's replicas in core/serve.py)."""
        self.reader = reader if isinstance(reader, IndexReader) else IndexReader(reader)
        self.device = device
        self._load_encoder = load_encoder
        self._checked_encoders: dict[str, Encoder] = {}
        self._tower_engines: dict[str, SearchEngine] = {}
        self._lock = threading.Lock()
        self._text_vectors: LRU[np.ndarray] = LRU(TEXT_CACHE_SIZE)
        self._image_vectors: LRU[np.ndarray] = LRU(IMAGE_CACHE_SIZE)

    @property
    def folder(self) -> Path:
        return self.reader.folder

    @property
    def manifest(self) -> Manifest:
        return self.reader.manifest

    @property
    def count(self) -> int:
        return self.reader.count

    @property
    def models(self) -> list[str]:
        """Model keys this index records (its image tower's, and those it has captions for)."""
        return list(self.manifest.models)

    def encoder(self, key: str) -> Encoder:
        """The model for `key`, loaded once and checked against the index (core/weights.py)."""
        with self._lock:
            if key not in self._checked_encoders:
                encoder = self._load_encoder(key, self.device)
                check_fits(encoder, self.manifest, self.folder)
                self._checked_encoders[key] = encoder
            return self._checked_encoders[key]

    def for_model(self, key: str) -> SearchEngine:
        """The engine that searches with `key`: this one, or one over the image index of the model's
        own image tower (loaded once, sharing the items and caption indexes). A tower without an image
        index here stays with this engine, whose model check then says so."""
        tower = get_spec(key).image_tower
        if tower == self.reader.image_model or tower not in self.reader.image_towers:
            return self
        with self._lock:
            if tower not in self._tower_engines:
                self._tower_engines[tower] = SearchEngine(self.reader.for_tower(tower), self.device)
            return self._tower_engines[tower]

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
        product: str | None = None,
        filters: Filters | None = None,
        not_text: Sequence[str] = (),
        like: Sequence[str] = (),
        unlike: Sequence[str] = (),
    ) -> SearchResult:
        """Run a text, image or blended query, steered and filtered; see the module docstring.

        `product` names a catalog product whose stored photo vector is the query image ("more like
        this", or an example product): nothing is decoded or encoded, and the product is left out.
        `filters` maps a metadata key to the values allowed (one key's values OR, keys AND).
        `not_text` words push the query away; `like` / `unlike` product ids pull it toward / push it
        away from their stored photo vectors (core/steering.py); unliked products are left out.
        With only `like` ids, the query is their mean. Fewer passing products than K give what
        there is; `matching` says how many products pass the filters.
        """
        engine = self.for_model(model)
        if engine is not self:  # another image tower: the same query over that tower's image index
            return engine.search(
                text=text, image=image, model=model, blend=blend, k=k, threshold=threshold, use_captions=use_captions,
                exclude_ids=exclude_ids, product=product, filters=filters, not_text=not_text, like=like, unlike=unlike,
            )
        started = time.perf_counter()
        text = _clean_text(text)
        like, unlike = _ids(like), _ids(unlike)
        not_words = [word for word in map(_clean_text, [not_text] if isinstance(not_text, str) else not_text) if word]
        if image is not None and product is not None:
            raise QueryError("Search with either an image or a catalog product, not both.")
        if text is None and image is None and product is None and not like:
            raise QueryError("Type a description or give an image to search with.")
        if not 0.0 <= blend <= 1.0:
            raise QueryError(f"The blend weight must be between 0 and 1, not {blend}.")
        if not 1 <= k <= MAX_K:
            raise QueryError(f"K must be between 1 and {MAX_K}, not {k}.")
        try:
            allowed = self.reader.allowed_rows(filters)
        except FilterError as err:
            raise QueryError(str(err)) from err
        encoder = self.encoder(model)
        query = _Query()
        if product is not None:
            query.image_vector = self.product_vector(product)
            exclude_ids = [*exclude_ids, str(product)]
        elif image is not None:
            self._encode_image(image, encoder, query)
        if text is not None:
            self._encode_text(text, model, encoder, query)
        has_query = query.image_vector is not None or query.text_vector is not None
        text_weight = 0.0 if query.text_vector is None else 1.0 if query.image_vector is None else blend
        mode = "image" if text_weight == 0.0 else "text" if text_weight == 1.0 else "blend"
        if not has_query:
            vector = None
        elif text_weight == 1.0:
            vector = query.text_vector
        elif text_weight == 0.0:
            vector = query.image_vector
        else:
            vector = _normalise((1.0 - text_weight) * query.image_vector + text_weight * query.text_vector)
        not_vectors = [self._text_vector(word, model, encoder, query) for word in not_words]
        try:
            vector = steer(
                vector, liked=[self.product_vector(i) for i in like],
                unliked=[self.product_vector(i) for i in unlike], not_vectors=not_vectors,
            )
            text_vector = None if query.text_vector is None else steer(query.text_vector, not_vectors=not_vectors)
        except SteeringError as err:
            raise QueryError(str(err)) from err
        ranking = _Ranking(
            vector=vector,
            text_vector=text_vector,
            captions=self.reader.caption_index(model) if use_captions and text_weight > 0.0 else None,
            text_weight=text_weight,
            excluded=self.reader.excluded_rows([*exclude_ids, *unlike], query.image_sha1),
            allowed=allowed,
            k=k,
            threshold=threshold,
        )
        hits, below = self._ranked_hits(ranking, query.timings_ms)
        query.timings_ms["total"] = (time.perf_counter() - started) * 1000
        return SearchResult(
            hits=hits, timings_ms=query.timings_ms, mode=mode, below_threshold=below, model=model,
            query_vector=vector, matching=None if allowed is None else self.reader.products_in(allowed.rows),
        )

    def product_vector(self, item_id: str) -> np.ndarray:
        """A product's stored photo vector, never re-encoded; an unknown id is a QueryError."""
        vector = self.reader.product_vector(item_id)
        if vector is None:
            raise QueryError(f"No product with id '{item_id}' in this catalog.")
        return vector

    def _encode_image(self, image: Image.Image | ImageSource, encoder: Encoder, query: _Query) -> None:
        """Bytes already seen (in the catalog, or recently) reuse their vector: same bytes, same vector."""
        started = time.perf_counter()
        vector = None
        if not isinstance(image, Image.Image):
            data = read_image_bytes(image)
            query.image_sha1 = hashlib.sha1(data).hexdigest()
            vector = self._known_image_vector(query.image_sha1)
            if vector is None:
                image = decode_query_image(data)  # shared with the app's preview: decoded once
        decoded = time.perf_counter()
        if vector is None:
            vector = encoder.encode_images([image])[0]
            if query.image_sha1 is not None:
                self._image_vectors.put(query.image_sha1, vector)
        query.image_vector = vector
        query.timings_ms["decode"] = (decoded - started) * 1000
        query.timings_ms["encode_image"] = (time.perf_counter() - decoded) * 1000

    def _known_image_vector(self, sha1: str) -> np.ndarray | None:
        vector = self._image_vectors.get(sha1)
        if vector is not None:
            return vector
        row = self.reader.row_of_photo(sha1)
        return None if row is None else np.asarray(self.reader.image_vectors[row], dtype=np.float32)

    def _encode_text(self, text: str, model: str, encoder: Encoder, query: _Query) -> None:
        query.text_vector = self._text_vector(text, model, encoder, query)

    def _text_vector(self, text: str, model: str, encoder: Encoder, query: _Query) -> np.ndarray:
        """A text's vector, from the cache when this text was seen; the time adds to encode_text."""
        started = time.perf_counter()
        vector = self._text_vectors.get((model, text))
        if vector is None:
            vector = encoder.encode_texts([text])[0]
            self._text_vectors.put((model, text), vector)
        elapsed = (time.perf_counter() - started) * 1000
        query.timings_ms["encode_text"] = query.timings_ms.get("encode_text", 0.0) + elapsed
        return vector

    def _ranked_hits(self, ranking: _Ranking, timings_ms: dict[str, float]) -> tuple[list[Hit], int]:
        """Search with a growing fetch until K hits survive exclusion, de-duplication and the threshold."""
        reader, allowed = self.reader, ranking.allowed
        count = reader.count if allowed is None else allowed.count
        keep = ~ranking.excluded
        search_ms = merge_ms = 0.0
        excluded = ranking.excluded if allowed is None else ranking.excluded & allowed.mask
        fetch = min(count, 2 * ranking.k + 16 + int(np.count_nonzero(excluded)))
        while True:
            started = time.perf_counter()
            labels, _ = reader.image_index.search(ranking.vector, fetch, allowed)
            lists = [RankedList("image", 1.0, labels[0], keep[labels[0]])]
            if ranking.captions is not None:
                labels, _ = ranking.captions.search(ranking.text_vector, fetch, allowed)
                rows = labels[0]
                lists.append(RankedList("caption", ranking.text_weight, rows, keep[rows] & reader.has_caption[rows]))
            searched = time.perf_counter()
            hits, below = self._fuse(lists, ranking)
            merge_ms += (time.perf_counter() - searched) * 1000
            search_ms += (searched - started) * 1000
            if len(hits) + below >= ranking.k or fetch >= count:
                timings_ms.update(search=search_ms, merge=merge_ms)
                return hits[: ranking.k], below
            fetch = min(count, fetch * 4)

    def _fuse(self, lists: list[RankedList], ranking: _Ranking) -> tuple[list[Hit], int]:
        candidates = np.unique(np.concatenate([ranked.rows[ranked.keep] for ranked in lists]))
        if len(candidates) == 0:
            return [], 0
        scores = np.asarray(self.reader.image_vectors[candidates], dtype=np.float32) @ ranking.vector
        cosine = dict(zip(candidates.tolist(), scores.tolist()))
        fused = fuse(lists, cosine)
        rows, below = cut(best_per_product(fused.rows, self.reader.id_list), cosine, ranking.k, ranking.threshold)
        return [self.reader.hit(row, cosine[row], fused.matched[row], fused.rank_score[row]) for row in rows], below


def _clean_text(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = "".join(ch for ch in text if ch.isprintable() or ch in " \t\n").strip()
    return cleaned or None


def _ids(ids: Sequence[str] | str) -> list[str]:
    """Product ids as a list of strings (one id may come bare)."""
    return [str(ids)] if isinstance(ids, str) else [str(i) for i in ids]


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
    parser.add_argument("--json", action="store_true", help="print a JSON list of hits (with their metadata)")
    steering = parser.add_argument_group("steering (each repeatable but --product)")
    steering.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                          help="only products with this metadata value; one key's values OR, keys AND")
    steering.add_argument("--not", dest="not_text", action="append", default=[], metavar="WORDS",
                          help="push the query away from these words")
    steering.add_argument("--like", action="append", default=[], metavar="ID", help="pull toward this product")
    steering.add_argument("--unlike", action="append", default=[], metavar="ID", help="push away from this product")
    steering.add_argument("--product", metavar="ID", help="search with this catalog product's photo (more like this)")
    args = parser.parse_args(argv)
    return cli.run(lambda: _search(args), QueryError, FilterError, ImageError, ModelLoadError, IndexMismatchError)


def _search(args: argparse.Namespace) -> int:
    """The command's body: one query, its hits printed as a list or as JSON."""
    result = SearchEngine(args.index).search(
        text=args.text, image=args.image, model=args.model, blend=args.blend, k=args.k,
        threshold=args.threshold, use_captions=not args.no_captions, product=args.product,
        filters=parse_filter_args(args.filter), not_text=args.not_text, like=args.like, unlike=args.unlike,
    )
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return 0
    for rank, hit in enumerate(result.hits, 1):
        print(_format_hit(rank, hit))
    if not result.hits:
        print("no product matches the filters" if result.matching == 0 else
              "no confident match" if result.below_threshold else "no results")
    timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings_ms.items())
    print(f"({result.mode} search, {timings})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
