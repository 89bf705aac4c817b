"""A real `python -m core.api` process on loopback: concurrent clients, the thin-front-end client, the app over it."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="fastapi is not installed: pip install -r requirements.txt")

from core.api_client import ApiClient, ApiUnavailable  # noqa: E402
from core.models import CLIP_KEY, MULTILINGUAL_KEY  # noqa: E402
from core.search import QueryError  # noqa: E402
from bench.local_server import free_port  # noqa: E402
from tests.api_support import call, running_api  # noqa: E402
from tests.app_support import open_app, result_ids  # noqa: E402


@pytest.fixture(scope="module")
def api_url(fashion_index, tmp_path_factory):
    with running_api(["--index", str(fashion_index.parent)], tmp_path_factory.mktemp("api") / "api.log") as url:
        yield url


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_16_concurrent_clients_get_the_serial_answers(api_url, engine, fashion_catalog):
    """Concurrent requests are encoded in shared batches; each still gets the in-process engine's answer."""
    photos = [fashion_catalog.items[i].image_path for i in (400, 401, 402, 403)]
    texts = ["red dress", "black leather shoes", "watch", "blue jeans", "white sneakers", "sports bag"]
    queries = [{"text": text, "k": 5} for text in texts] + [{"image": b64(photo), "k": 5} for photo in photos]
    queries += [{"text": "rote Tasche", "model": MULTILINGUAL_KEY, "k": 4}, {"text": "", "k": 3}]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda query: call(f"{api_url}/search", query), queries + queries[::-1]))
    assert call(f"{api_url}/health") == (200, {"status": "ok", "catalogs": ["fashion"]})
    for (status, answer), query in zip(replies, queries + queries[::-1], strict=True):
        if query.get("text") == "":
            assert status == 400 and set(answer) == {"error"}
            continue
        assert status == 200, answer
        image = base64.b64decode(query["image"]) if "image" in query else None
        expected = engine.search(text=query.get("text"), image=image, model=query.get("model", CLIP_KEY), k=query["k"])
        assert [hit["id"] for hit in answer["hits"]] == [hit.id for hit in expected.hits]
        assert [hit["score"] for hit in answer["hits"]] == pytest.approx([hit.score for hit in expected.hits], abs=1e-5)


def test_the_remote_engine_answers_as_the_local_one(api_url, engine, fashion_catalog):
    remote = ApiClient(api_url).engine("fashion")
    assert remote.count == engine.count and remote.manifest == engine.manifest
    assert remote.reader.image_model == engine.reader.image_model
    photo = fashion_catalog.items[401].image_path.read_bytes()
    product = engine.reader.id_list[7]
    for query in (
        {"text": "navy blue shirt", "k": 6},
        {"text": "rote Schuhe", "model": MULTILINGUAL_KEY, "k": 4},
        {"image": photo, "text": "summer", "blend": 0.3, "k": 5, "threshold": 0.0},
        {"like": product, "k": 5, "use_captions": False},
    ):
        ours, theirs = remote.search(**query), engine.search(**query)
        assert (ours.mode, ours.model, ours.below_threshold) == (theirs.mode, theirs.model, theirs.below_threshold)
        assert [h.id for h in ours.hits] == [h.id for h in theirs.hits]
        assert [h.score for h in ours.hits] == pytest.approx([h.score for h in theirs.hits], abs=1e-5)
        assert [h.thumbnail.rsplit("/", 1)[-1] for h in ours.hits] == [h.thumbnail.rsplit("/", 1)[-1] for h in theirs.hits]
        assert np.abs(ours.query_vector - theirs.query_vector).max() <= 1e-5
    rows = remote.reader.rows_of(product)
    assert rows.tolist() == engine.reader.rows_of(product).tolist()
    hit = remote.reader.hit(int(rows[0]))
    assert (hit.id, hit.caption, hit.metadata) == (product, engine.reader.hit(int(rows[0])).caption, engine.reader.hit(int(rows[0])).metadata)
    assert hit.thumbnail.startswith(f"{api_url}/thumbnails/fashion/")
    assert ApiClient(api_url).fetch(hit.thumbnail.removeprefix(api_url))[8:12] == b"WEBP"
    assert remote.reader.rows_of("no-such-product").size == 0
    assert remote.reader.metadata_table().equals(engine.reader.metadata_table())
    assert np.array_equal(remote.reader.image_vectors, np.asarray(engine.reader.image_vectors))
    with pytest.raises(QueryError, match="Type a description"):
        remote.search(text="  ")
    with pytest.raises(ApiUnavailable, match="does not answer"):
        ApiClient(f"http://127.0.0.1:{free_port()}", timeout=5).catalogs()


def test_the_app_as_a_thin_front_end_shows_the_local_apps_results(api_url, fashion_index, tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(fashion_index.parent))
    local = open_app({"q": "navy blue shirt", "k": "6"})
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(tmp_path))  # nothing here: results can only come from the API
    monkeypatch.setenv("VITRINE_API_URL", api_url)
    remote = open_app({"q": "navy blue shirt", "k": "6"})
    assert len(result_ids(remote)) == 6 and result_ids(remote) == result_ids(local)
