"""The API on Ray Serve (one local Ray): the local server's answers, also to 16 concurrent clients."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install -r requirements-ray.txt")

from ray import serve  # noqa: E402

from core import serve as vitrine_serve  # noqa: E402
from core.models import MULTILINGUAL_KEY  # noqa: E402
from bench.local_server import answers, free_port  # noqa: E402
from tests.api_support import call  # noqa: E402


@pytest.fixture
def serve_url(ray_cluster, fashion_index):
    port = free_port()
    vitrine_serve.start([fashion_index], "127.0.0.1", port, replicas=1, encoder_cpus=0.5)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while not answers(f"{url}/health"):
            assert time.monotonic() < deadline, "Ray Serve's API did not get healthy"
            time.sleep(0.2)
        yield url
    finally:
        serve.shutdown()


def test_ray_serve_answers_as_the_local_engine(serve_url, engine, fashion_catalog):
    photo = fashion_catalog.items[400].image_path.read_bytes()
    queries = [{"text": text, "k": 5} for text in ("red dress", "black leather shoes", "watch", "blue jeans")]
    queries += [
        {"image": base64.b64encode(photo).decode(), "k": 6},
        {"text": "summer dress", "image": base64.b64encode(photo).decode(), "blend": 0.3, "k": 4},
        {"text": "rote Tasche", "model": MULTILINGUAL_KEY, "k": 4},
    ]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda query: call(f"{serve_url}/search", query), queries * 2))
    for (status, answer), query in zip(replies, queries * 2, strict=True):
        assert status == 200, answer
        expected = engine.search(
            text=query.get("text"),
            image=base64.b64decode(query["image"]) if "image" in query else None,
            model=query.get("model", "clip-ViT-B-32"),
            blend=query.get("blend", 0.5),
            k=query["k"],
        )
        assert [hit["id"] for hit in answer["hits"]] == [hit.id for hit in expected.hits]
        assert [hit["score"] for hit in answer["hits"]] == pytest.approx([hit.score for hit in expected.hits], abs=1e-5)
    assert call(f"{serve_url}/search", {"text": ""})[0] == 400
    assert call(f"{serve_url}/search", {"text": "dress", "k": 0})[0] == 422
    status, product = call(f"{serve_url}/products/{replies[0][1]['hits'][0]['id']}")
    assert status == 200 and product["photos"]


def test_the_example_serve_config_is_valid_and_names_the_builder():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from tests.test_cli import ROOT

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "deploy" / "serve.yaml").read_text()))
    (app,) = config.applications
    module, name = app.import_path.split(":")
    assert module == "core.serve" and getattr(vitrine_serve, name) is vitrine_serve.build_app
    assert set(app.args) <= {"index", "replicas", "max_replicas", "encoder_cpus"}
