"""The catalogs a server answers for: their engines, the models each can search, warm-up, lookups.

What the HTTP API (core/api.py) and its Ray Serve ingress (core/serve.py) share, free of HTTP:
the API maps these errors to status codes, this module decides what is an error.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.index import MANIFEST_FILE, THUMBNAILS_DIR, Hit, IndexMismatchError, list_indexes, read_manifest
from core.models import CLIP_KEY, ModelLoadError, available_models
from core.search import QueryError, SearchEngine, SearchResult

WARM_UP_TEXT = "a photo of a product"


class NotFound(LookupError):
    """An unknown catalog, product, photo or thumbnail; the message names it."""


@dataclass(frozen=True)
class Query:
    """One search as a client sends it, in plain values."""

    text: str | None = None
    image: bytes | None = None
    product: str | None = None  # a catalog product whose stored photo vector is the query photo
    model: str = CLIP_KEY
    k: int = 12
    blend: float = 0.5
    threshold: float | None = None
    use_captions: bool = True
    catalog: str | None = None
    filters: dict[str, list[str]] | None = None  # one key's values OR, keys AND
    not_text: tuple[str, ...] = ()  # words to push the query away from
    like: tuple[str, ...] = ()  # product ids to pull the query toward
    unlike: tuple[str, ...] = ()  # product ids to push it away from (and leave out)
    exclude: tuple[str, ...] = ()  # product ids to leave out


def searchable_models(image_towers: Sequence[str]) -> list[str]:
    """Model keys that read images with one of an index's image towers (as the app's model picker)."""
    return [spec.key for spec in available_models() if spec.image_tower in image_towers]


def catalog_folders(paths: Sequence[Path]) -> list[Path]:
    """Each path is an index folder, or a folder of them (core.index.list_indexes); raises NotFound."""
    folders: list[Path] = []
    for path in paths:
        if (Path(path) / MANIFEST_FILE).is_file():
            folders.append(Path(path))
            continue
        found = list_indexes(Path(path))
        if not found:
            raise NotFound(f"{path} is neither an index folder nor a folder of index folders.")
        folders.extend(found)
    names = [folder.name for folder in folders]
    if len(set(names)) != len(names):
        raise NotFound(f"Two catalogs share a name ({', '.join(sorted(names))}); give each folder its own name.")
    return folders


class SearchService:
    """Engines by catalog name (the first is the default); ready once every model is warmed up."""

    def __init__(self, folders: Sequence[Path], open_engine: Callable[[Path], SearchEngine] = SearchEngine) -> None:
        self._open_engine = open_engine
        self.engines: dict[str, SearchEngine] = {Path(f).name: open_engine(Path(f)) for f in folders}
        if not self.engines:
            raise NotFound("No catalog to serve.")
        self._swap_lock = threading.Lock()
        self.default = next(iter(self.engines))
        self.ready = threading.Event()
        self.unavailable: dict[tuple[str, str], str] = {}  # (catalog, model key) -> why it is not served

    def engine(self, catalog: str | None) -> SearchEngine:
        name = self.default if catalog is None else catalog
        if name not in self.engines:
            raise NotFound(f"Unknown catalog '{catalog}'. Catalogs: {', '.join(self.engines)}.")
        return self._current(name)

    def _current(self, name: str) -> SearchEngine:
        """The catalog's engine, reopened when a build or update put a new version in its folder;
        a search already running keeps the engine it started with."""
        engine = self.engines[name]
        try:
            version = read_manifest(engine.folder).version
        except IndexMismatchError:  # mid-swap or damaged: keep serving what is open
            return engine
        if version == engine.manifest.version:
            return engine
        with self._swap_lock:
            if self.engines[name].manifest.version != version:
                try:
                    self.engines[name] = self._open_engine(engine.folder)
                except IndexMismatchError as err:
                    print(f"warning: catalog '{name}' changed but cannot be opened ({err}); serving the old one",
                          file=sys.stderr)
            return self.engines[name]

    def models(self, engine: SearchEngine) -> list[str]:
        """The models a catalog can be searched with, less those that failed to load."""
        name = engine.folder.name
        return [key for key in searchable_models(engine.reader.image_towers) if (name, key) not in self.unavailable]

    def warm_up(self) -> None:
        """Load every searchable model and run one text and one image query through it, then be ready.

        A model that cannot be loaded is left out (and said so on stderr); the others still serve.
        """
        white = Image.new("RGB", (224, 224), "white")
        for name, engine in self.engines.items():
            for key in self.models(engine):
                try:
                    engine.search(text=WARM_UP_TEXT, model=key, k=1)
                    engine.search(image=white, model=key, k=1)
                except (ModelLoadError, IndexMismatchError) as err:
                    self.unavailable[(name, key)] = str(err)
                    print(f"warning: catalog '{name}', model '{key}' is not served: {err}", file=sys.stderr)
        self.ready.set()

    def search(self, query: Query) -> SearchResult:
        engine = self.engine(query.catalog)
        models = self.models(engine)
        if query.model not in models:
            raise QueryError(f"Unknown model '{query.model}' for this catalog. Models: {', '.join(models)}.")
        return engine.search(
            text=query.text,
            image=query.image,
            product=query.product,
            model=query.model,
            blend=query.blend,
            k=query.k,
            threshold=query.threshold,
            use_captions=query.use_captions,
            filters=query.filters,
            not_text=query.not_text,
            like=query.like,
            unlike=query.unlike,
            exclude_ids=query.exclude,
        )

    def product_photos(self, catalog: str | None, item_id: str) -> list[Hit]:
        engine = self.engine(catalog)
        rows = engine.reader.rows_of(item_id)
        if len(rows) == 0:
            raise NotFound(f"No product with id '{item_id}' in catalog '{engine.folder.name}'.")
        return [engine.reader.hit(int(row)) for row in rows]

    def photo(self, catalog: str | None, row: int) -> Hit:
        engine = self.engine(catalog)
        if not 0 <= row < engine.count:
            raise NotFound(f"No photo {row} in catalog '{engine.folder.name}' (it has {engine.count}).")
        return engine.reader.hit(row)

    def vectors_file(self, catalog: str) -> Path:
        """The catalog's photo vectors as saved (.npy, no pickle): what the app's catalog map projects."""
        engine = self.engine(catalog)
        return engine.folder / f"{engine.manifest.image_entry.stem}.npy"

    def thumbnail_file(self, catalog: str, name: str) -> Path:
        """The thumbnail file `name` of a catalog: a plain file name inside its thumbnails folder, never a path."""
        engine = self.engine(catalog)
        folder = (engine.folder / THUMBNAILS_DIR).resolve()
        path = (folder / name).resolve()
        if Path(name).name != name or name.startswith(".") or path.parent != folder or not path.is_file():
            raise NotFound(f"No thumbnail '{name}' in catalog '{catalog}'.")
        return path
