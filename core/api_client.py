"""A Vitrine API seen through SearchEngine's interface: the app as a thin front end (VITRINE_API_URL).

`RemoteEngine` answers what the UI asks a SearchEngine (search, the manifest, products and
photos by row, the metadata table, the photo vectors) over HTTP, so the pages run unchanged
and load no model; thumbnails are the API's URLs. The API's 4xx answers come back as the
QueryError the UI already shows as a message, a 503 as ModelLoadError, silence as ApiUnavailable.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.images import ImageSource, read_image_bytes
from core.index import Hit, Manifest
from core.models import CLIP_KEY, ModelLoadError
from core.search import QueryError, SearchResult

DEFAULT_TIMEOUT_S = 60.0


class ApiUnavailable(OSError):
    """The API did not answer (or not as an API); the message names its address."""


class ApiClient:
    """JSON over HTTP to one Vitrine API (core/api.py); stdlib only, so the front end stays small."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def catalogs(self) -> list[dict]:
        return self.get("/catalogs")

    def engine(self, name: str) -> RemoteEngine:
        for info in self.catalogs():
            if info["name"] == name:
                return RemoteEngine(self, info)
        raise ApiUnavailable(f"The Vitrine API at {self.base_url} has no catalog '{name}'.")

    def get(self, path: str, **params: str) -> dict | list:
        return json.loads(self.fetch(path, **params))

    def post(self, path: str, body: dict) -> dict:
        return json.loads(self._send(urllib.request.Request(
            self.url(path), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )))

    def fetch(self, path: str, **params: str) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._send(urllib.request.Request(self.url(path) + query))

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _send(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return reply.read()
        except urllib.error.HTTPError as err:
            raise _api_error(err.code, _error_text(err), self.base_url) from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiUnavailable(f"The Vitrine API at {self.base_url} does not answer ({reason}).") from err


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return err.reason or f"HTTP {err.code}"


def _api_error(status: int, message: str, base_url: str) -> Exception:
    if 400 <= status < 500:
        return QueryError(message)
    if status == 503:
        return ModelLoadError(message)
    return ApiUnavailable(f"The Vitrine API at {base_url} failed ({status}): {message}")


def _hit(client: ApiClient, record: dict) -> Hit:
    thumbnail = record.get("thumbnail")
    return Hit(**{**record, "matched": tuple(record["matched"]), "thumbnail": client.url(thumbnail) if thumbnail else None})


class RemoteReader:
    """The parts of core.index.IndexReader the pages use, over HTTP; photos are kept once fetched."""

    def __init__(self, client: ApiClient, catalog: str, manifest: Manifest, count: int) -> None:
        self.client = client
        self.catalog = catalog
        self.manifest = manifest
        self.image_model = manifest.image_entry.encoder
        self.image_towers = manifest.image_towers
        self.facets = manifest.facets  # the filters the pages offer, with product counts
        self.count = count
        self._hits: dict[int, Hit] = {}
        self._vectors: np.ndarray | None = None

    def rows_of(self, item_id: str) -> np.ndarray:
        try:
            product = self.client.get(f"/products/{urllib.parse.quote(str(item_id), safe='')}", catalog=self.catalog)
        except QueryError:  # 404: no such product
            return np.zeros(0, dtype=np.int64)
        for record in product["photos"]:
            self._hits[int(record["row"])] = _hit(self.client, record)
        return np.array([int(record["row"]) for record in product["photos"]], dtype=np.int64)

    def hit(self, row: int) -> Hit:
        if row not in self._hits:
            self._hits[row] = _hit(self.client, self.client.get(f"/photos/{int(row)}", catalog=self.catalog))
        return self._hits[row]

    def metadata_table(self) -> pd.DataFrame:
        table = self.client.get(f"/catalogs/{urllib.parse.quote(self.catalog, safe='')}/table")
        return pd.DataFrame(table["rows"], columns=table["columns"])

    @property
    def image_vectors(self) -> np.ndarray:
        if self._vectors is None:
            data = self.client.fetch(f"/catalogs/{urllib.parse.quote(self.catalog, safe='')}/vectors")
            self._vectors = np.load(io.BytesIO(data), allow_pickle=False)
        return self._vectors


class RemoteEngine:
    """What the UI uses of a SearchEngine, answered by the API for one of its catalogs."""

    def __init__(self, client: ApiClient, info: dict) -> None:
        self.client = client
        self.manifest = Manifest.from_dict(info["manifest"])
        self.folder = Path(info["name"])  # a name, not a local folder: the index lives with the API
        self.count = int(info["photos"])
        self.models = list(info["models"])
        self.reader = RemoteReader(client, info["name"], self.manifest, self.count)

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
        product: str | None = None,
        exclude_ids: Sequence[str] = (),
        filters: dict[str, list[str]] | None = None,
        not_text: Sequence[str] = (),
        like: Sequence[str] = (),
        unlike: Sequence[str] = (),
    ) -> SearchResult:
        """SearchEngine.search's query, sent to the API; the same hits, with the API's timings."""
        started = time.perf_counter()
        body = {
            "text": text, "image": _image_b64(image), "product": product, "model": model, "k": k, "blend": blend,
            "threshold": threshold, "use_captions": use_captions, "catalog": self.folder.name, "with_vector": True,
            "filters": filters or None, "not": _listed(not_text), "like": _listed(like), "unlike": _listed(unlike),
            "exclude": _listed(exclude_ids),
        }
        answer = self.client.post("/search", {key: value for key, value in body.items() if value is not None})
        timings = {**answer["timings_ms"], "round_trip": (time.perf_counter() - started) * 1000}
        vector = answer.get("query_vector")
        return SearchResult(
            hits=[_hit(self.client, record) for record in answer["hits"]],
            timings_ms=timings,
            mode=answer["mode"],
            below_threshold=int(answer["below_threshold"]),
            model=answer["model"],
            query_vector=None if vector is None else np.asarray(vector, dtype=np.float32),
            matching=answer.get("matching"),
        )


def _listed(values: str | Sequence[str]) -> list[str] | None:
    """A repeatable field as the API takes it (a lone string is one value), or None when empty."""
    listed = [values] if isinstance(values, str) else list(values)
    return listed or None


def _image_b64(image: Image.Image | ImageSource | None) -> str | None:
    """The photo file's bytes in base64 (a decoded image is sent as PNG)."""
    if image is None:
        return None
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        data = read_image_bytes(image)
    return base64.b64encode(data).decode()

