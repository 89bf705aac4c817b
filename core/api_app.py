"""The API's FastAPI app: search, products and thumbnails over JSON, the same in uvicorn and Ray Serve.

The HTTP layer only: it parses requests and maps errors to status codes. The searches are
core.service's (a core.search.SearchEngine per catalog). Bad input gets a 4xx JSON
`{"error": "..."}`, never a 500; the docs are at /docs. core/api.py runs it.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Query as QueryParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.images import DEFAULT_MAX_BYTES, ImageError
from core.index import Hit, IndexMismatchError
from core.models import CLIP_KEY, MAX_TEXT_CHARS, ModelLoadError
from core.facets import FilterError
from core.search import QueryError, SearchResult
from core.steering import SteeringError
from core.service import NotFound, Query, SearchService

API_MAX_K = 100
# A photo at the upload limit, base64-encoded (4 characters per 3 bytes), plus room for the other fields.
MAX_BODY_BYTES = -(-DEFAULT_MAX_BYTES // 3) * 4 + 64 * 1024


class SearchRequest(BaseModel):
    """A query: words and/or a photo (or a catalog product), blended by `blend`."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="description, any language with the multilingual model")
    image: str | None = Field(None, description="the photo file's bytes, base64 (JPEG, PNG, WebP, GIF, BMP, TIFF)")
    product: str | None = Field(None, description="a catalog product id whose photo is the query photo ('more like this')")
    model: str = Field(CLIP_KEY, description="model key (GET /catalogs lists each catalog's)")
    k: int = Field(12, ge=1, le=API_MAX_K, description="number of results")
    blend: float = Field(0.5, ge=0.0, le=1.0, description="text weight when words and a photo are given")
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="drop hits whose image cosine is below this")
    use_captions: bool = Field(True, description="also search the catalog's captions (text queries)")
    catalog: str | None = Field(None, description="catalog name; the first one served by default")
    filters: dict[str, list[str]] | None = Field(
        None, description='facet filters, e.g. {"baseColour": ["Black", "Navy Blue"], "gender": ["Men"]}: one key\'s values OR, keys AND'
    )
    not_: list[str] = Field([], alias="not", max_length=16, description="words to push the results away from")
    like: list[str] = Field([], max_length=64, description="product ids to pull the results toward")
    unlike: list[str] = Field([], max_length=64, description="product ids to push the results away from (left out)")
    exclude: list[str] = Field([], max_length=256, description="product ids to leave out (e.g. the variants of `product`)")
    with_vector: bool = Field(False, description="also return the vector that was searched with")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for problem in err.errors()[:3]:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}" if where else str(problem.get("msg", "invalid")))
    return "Invalid request: " + "; ".join(parts)


def _decode_image(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise QueryError("The image must be the file's bytes in base64.") from err
    if len(data) > DEFAULT_MAX_BYTES:
        raise HTTPException(413, f"The image is too large (limit {DEFAULT_MAX_BYTES // (1 << 20)} MB).")
    return data


def hit_json(catalog: str, hit: Hit) -> dict:
    """The fields of `core.search --json`, in its order; the thumbnail is this API's URL for it."""
    record = asdict(hit)
    if hit.thumbnail:
        record["thumbnail"] = f"/thumbnails/{quote(catalog, safe='')}/{quote(Path(hit.thumbnail).name, safe='')}"
    return record


def result_json(catalog: str, result: SearchResult, with_vector: bool = False) -> dict:
    answer = {
        "hits": [hit_json(catalog, hit) for hit in result.hits],
        "mode": result.mode,
        "model": result.model,
        "below_threshold": result.below_threshold,
        "matching": result.matching,
        "timings_ms": result.timings_ms,
    }
    if with_vector and result.query_vector is not None:
        answer["query_vector"] = result.query_vector.tolist()
    return answer


def create_app(service: SearchService, warm_up: bool = True) -> FastAPI:
    """The API over `service`; with `warm_up`, models load in the background while /health says 503."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up and not service.ready.is_set():
            threading.Thread(target=service.warm_up, name="vitrine-warm-up", daemon=True).start()
        yield

    app = FastAPI(
        title="Vitrine",
        summary="Cross-modal product search: words in 50+ languages, a photo, or both.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    _add_error_handlers(app)

    def ready_service() -> SearchService:
        if not service.ready.is_set():
            raise _NotReady()
        return service

    @app.get("/health", summary="200 once every model is loaded and warmed up, 503 before")
    def health() -> JSONResponse:
        if not service.ready.is_set():
            return _error(503, "Loading and warming up the models.")
        return JSONResponse({"status": "ok", "catalogs": list(service.engines)})

    @app.get("/catalogs", summary="The catalogs served, with their facts and models")
    def catalogs() -> list[dict]:
        return [
            {
                "name": name,
                "photos": engine.count,
                "models": service.models(engine),
                "manifest": asdict(engine.manifest),
            }
            for name, engine in ready_service().engines.items()
        ]

    @app.post("/search", summary="Search a catalog by words, a photo, a product, or a blend")
    def search(request: SearchRequest) -> dict:
        query = Query(
            text=request.text,
            image=_decode_image(request.image),
            product=request.product,
            model=request.model,
            k=request.k,
            blend=request.blend,
            threshold=request.threshold,
            use_captions=request.use_captions,
            catalog=request.catalog,
            filters=request.filters,
            not_text=tuple(request.not_),
            like=tuple(request.like),
            unlike=tuple(request.unlike),
            exclude=tuple(request.exclude),
        )
        served = ready_service()
        catalog = served.engine(request.catalog).folder.name
        return result_json(catalog, served.search(query), request.with_vector)

    @app.get("/catalogs/{catalog}/table", summary="Every photo's id, caption and metadata, in row order")
    def table(catalog: str) -> dict:
        frame = service.engine(catalog).reader.metadata_table()
        return {"columns": list(frame.columns), "rows": frame.to_numpy().tolist()}

    @app.get("/catalogs/{catalog}/vectors", summary="Every photo's vector, in row order (.npy, float32)")
    def vectors(catalog: str) -> FileResponse:
        return FileResponse(service.vectors_file(catalog), media_type="application/octet-stream")

    @app.get("/products/{item_id}", summary="A product's photos (as hits, without scores)")
    def product(item_id: str, catalog: Annotated[str | None, QueryParam()] = None) -> dict:
        name = service.engine(catalog).folder.name
        photos = service.product_photos(catalog, item_id)
        return {"id": item_id, "catalog": name, "photos": [hit_json(name, hit) for hit in photos]}

    @app.get("/photos/{row}", summary="One photo of a catalog by its row (as a hit, without a score)")
    def photo(row: int, catalog: Annotated[str | None, QueryParam()] = None) -> dict:
        name = service.engine(catalog).folder.name
        return hit_json(name, service.photo(catalog, row))

    @app.get("/thumbnails/{catalog}/{name}", summary="A product photo's thumbnail (WebP)", response_class=FileResponse)
    def thumbnail(catalog: str, name: str) -> FileResponse:
        return FileResponse(service.thumbnail_file(catalog, name), headers={"Cache-Control": "max-age=3600"})

    return app


class BodyLimit:
    """Refuses a request body over `max_bytes` with a 413 JSON error: at once when its declared
    length says so, else as soon as the bytes read pass the limit (never holding more)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _error(413, self._message)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message)
            return message

        await self.app(scope, limited_receive, send)

    @property
    def _message(self) -> str:
        return f"The request is too large (limit {self.max_bytes // (1 << 20)} MB)."


class _NotReady(Exception):
    """A request that needs the models before the warm-up has finished."""


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure a client can cause becomes a 4xx `{"error": ...}` with a sentence fit to show."""
    statuses: dict[type[Exception], Callable[[Exception], JSONResponse]] = {
        RequestValidationError: lambda err: _error(422, _validation_message(err)),
        HTTPException: lambda err: _error(err.status_code, str(err.detail)),
        QueryError: lambda err: _error(400, str(err)),
        FilterError: lambda err: _error(400, str(err)),
        SteeringError: lambda err: _error(400, str(err)),
        ImageError: lambda err: _error(400, str(err)),
        IndexMismatchError: lambda err: _error(400, str(err)),
        NotFound: lambda err: _error(404, str(err)),
        ModelLoadError: lambda err: _error(503, str(err)),
        _NotReady: lambda err: _error(503, "Loading and warming up the models; try again shortly."),
        Exception: lambda err: _error(500, f"Internal error ({type(err).__name__}); the server's log has the details."),
    }
    for kind, respond in statuses.items():
        app.add_exception_handler(kind, lambda _request, err, respond=respond: respond(err))
