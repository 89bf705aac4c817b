"""The HTTP API: the CLI's answers, bad input as 4xx JSON, and a real server under 16 concurrent clients."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fastapi is not installed: pip install -r requirements.txt")

from fastapi.testclient import TestClient  # noqa: E402

from core import search as search_cli  # noqa: E402
from core.api_app import API_MAX_K, MAX_BODY_BYTES, create_app  # noqa: E402
from core.build_index import build_index  # noqa: E402
from core.images import DEFAULT_MAX_BYTES  # noqa: E402
from core.models import MULTILINGUAL_KEY  # noqa: E402
from core.service import NotFound, SearchService  # noqa: E402
from tests.conftest import INDEX_SIZE  # noqa: E402
from tests.test_cli import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def service(fashion_index) -> SearchService:
    return SearchService([fashion_index])


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    service.warm_up()
    with TestClient(create_app(service, warm_up=False)) as test_client:
        yield test_client


def photo_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def cli_hits(capsys, args: list[str]) -> list[dict]:
    assert search_cli.main(args) == 0
    return json.loads(capsys.readouterr().out)


def same_as_cli(api_hits: list[dict], cli: list[dict]) -> None:
    """Same fields, order and values; the thumbnail is the API's URL of the CLI's file."""
    assert [list(hit) for hit in api_hits] == [list(hit) for hit in cli]
    for ours, theirs in zip(api_hits, cli, strict=True):
        assert ours["thumbnail"].rsplit("/", 1)[-1] == Path(theirs["thumbnail"]).name
        assert {**ours, "thumbnail": None} == {**theirs, "thumbnail": None}


def test_health_is_503_until_the_models_are_warm(fashion_index):
    cold = SearchService([fashion_index])
    with TestClient(create_app(cold, warm_up=False)) as cold_client:
        reply = cold_client.get("/health")
        assert reply.status_code == 503 and "error" in reply.json()
        assert cold_client.post("/search", json={"text": "red dress"}).status_code == 503
        cold.warm_up()
        assert cold_client.get("/health").json() == {"status": "ok", "catalogs": ["fashion"]}


def test_answers_equal_the_cli(client, fashion_index, fashion_catalog, capsys):
    photo = fashion_catalog.items[400].image_path  # not among the indexed products
    index = ["--index", str(fashion_index), "--json"]
    cases = [
        ({"text": "navy blue shirt for men", "k": 8}, ["--text", "navy blue shirt for men", "-k", "8"]),
        ({"text": "rote Schuhe", "model": MULTILINGUAL_KEY, "k": 5}, ["--text", "rote Schuhe", "--model", MULTILINGUAL_KEY, "-k", "5"]),
        ({"image": photo_b64(photo), "k": 6}, ["--image", str(photo), "-k", "6"]),
        (
            {"text": "summer dress", "image": photo_b64(photo), "blend": 0.3, "k": 7, "use_captions": False},
            ["--text", "summer dress", "--image", str(photo), "--blend", "0.3", "-k", "7", "--no-captions"],
        ),
    ]
    for body, args in cases:
        reply = client.post("/search", json=body)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["mode"] in ("text", "image", "blend") and answer["timings_ms"]["total"] > 0
        same_as_cli(answer["hits"], cli_hits(capsys, [*index, *args]))


def test_products_photos_and_thumbnails(client, service, fashion_index):
    first = client.post("/search", json={"text": "watch", "k": 1}).json()["hits"][0]
    product = client.get(f"/products/{first['id']}").json()
    assert product["id"] == first["id"] and product["photos"][0]["caption"] == first["caption"]
    assert client.get(f"/photos/{first['row']}").json()["id"] == first["id"]
    thumbnail = client.get(first["thumbnail"])
    assert thumbnail.status_code == 200 and thumbnail.content[8:12] == b"WEBP"
    like = client.post("/search", json={"product": first["id"], "k": 3}).json()["hits"]
    assert len(like) == 3 and first["id"] not in [hit["id"] for hit in like]
    catalogs = client.get("/catalogs").json()
    assert catalogs[0]["name"] == "fashion" and MULTILINGUAL_KEY in catalogs[0]["models"]
    assert client.get("/docs").status_code == 200 and "/search" in client.get("/openapi.json").json()["paths"]
    for name in ("../manifest.json", "..", ".", "/etc/passwd", "thumbnails", "missing.webp"):
        with pytest.raises(NotFound):
            service.thumbnail_file("fashion", name)


NOT_AN_IMAGE = base64.b64encode(b"GIF89a but not really an image at all").decode()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"text": ""}, 400),
        ({"text": "   \n"}, 400),
        ({}, 400),
        ({"text": "dress", "k": 0}, 422),
        ({"text": "dress", "k": API_MAX_K + 1}, 422),
        ({"text": "dress", "k": "many"}, 422),
        ({"text": "dress", "blend": 1.5}, 422),
        ({"text": "x" * 1001}, 422),
        ({"text": "dress", "colour": "red"}, 422),
        ({"text": 5}, 422),
        ({"image": NOT_AN_IMAGE}, 400),
        ({"image": "this is not base64!"}, 400),
        ({"image": ""}, 400),
        ({"text": "dress", "model": "no-such-model"}, 400),
        ({"text": "dress", "catalog": "no-such-catalog"}, 404),
        ({"product": "no-such-product"}, 400),
        ({"product": "x", "image": NOT_AN_IMAGE}, 400),
    ],
)
def test_bad_searches_get_a_4xx_json_error(client, body, status):
    reply = client.post("/search", json=body)
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"error"} and reply.json()["error"]


def test_bad_requests_get_a_4xx_json_error(client):
    replies = [
        client.post("/search", content=b"{not json", headers={"Content-Type": "application/json"}),
        client.post("/search", content=b'"just a string"', headers={"Content-Type": "application/json"}),
        client.post("/search", content=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"}),
        client.post("/search", content=iter([b"x" * MAX_BODY_BYTES, b"x"]), headers={"Content-Type": "application/json"}),
        client.post("/search", json={"image": base64.b64encode(b"\xff\xd8\xff" + bytes(DEFAULT_MAX_BYTES)).decode()}),
        client.get("/products/no-such-product"),
        client.get("/products/x", params={"catalog": "nope"}),
        client.get("/photos/100000"),
        client.get("/photos/-1"),
        client.get("/photos/abc"),
        client.get("/thumbnails/fashion/missing.webp"),
        client.get("/thumbnails/fashion/..%2Fmanifest.json"),
        client.get("/thumbnails/nope/x.webp"),
        client.get("/no-such-endpoint"),
        client.get("/search"),
    ]
    statuses = [reply.status_code for reply in replies]
    assert statuses == [422, 422, 413, 413, 413, 404, 404, 404, 404, 422, 404, 404, 404, 404, 405]
    for reply in replies:
        assert set(reply.json()) == {"error"} and reply.json()["error"]


WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from core.api import main; sys.exit(main(sys.argv[1:]))"


def test_engine_ray_without_ray_serve_exits_2_with_the_install_command(fashion_index):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, "--index", str(fashion_index), "--engine", "ray"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --engine ray needs Ray Serve") and "pip install -r requirements-ray.txt" in done.stderr


def test_cli_mistakes_exit_2_with_one_line(fashion_index, tmp_path, capsys):
    from core.api import main

    assert main(["--index", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path} is neither an index folder nor a folder of index folders.\n"
    for args, message in ((["--replicas", "2"], "need --engine ray"), (["--engine", "ray", "--replicas", "0"], "at least 1")):
        with pytest.raises(SystemExit) as stopped:
            main(["--index", str(fashion_index), *args])
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_steering_fields_are_forwarded_and_answer_as_the_engine_does(client, engine):
    body = {"text": "shoes", "k": 8, "filters": {"gender": ["Men"]}, "not": ["black"],
            "like": [engine.reader.id_list[3]], "unlike": [engine.reader.id_list[4]]}
    answer = client.post("/search", json=body)
    assert answer.status_code == 200, answer.text
    expected = engine.search(text="shoes", k=8, filters={"gender": ["Men"]}, not_text=["black"],
                             like=[engine.reader.id_list[3]], unlike=[engine.reader.id_list[4]])
    assert [hit["id"] for hit in answer.json()["hits"]] == [hit.id for hit in expected.hits]
    assert answer.json()["matching"] == expected.matching
    unknown = client.post("/search", json={"text": "shoes", "filters": {"nosuchkey": ["x"]}})
    assert unknown.status_code == 400 and "nosuchkey" in unknown.json()["error"]


def test_a_new_index_version_is_served_on_the_next_request(fashion_index, fashion_catalog, tmp_path):
    folder = tmp_path / "shop"
    shutil.copytree(fashion_index, folder)
    served = SearchService([folder])
    before = served.engine(None)
    assert before.count == INDEX_SIZE and before.search(text="red dress", k=3).hits  # warm, as the server is
    build_index(fashion_catalog, folder, limit=INDEX_SIZE - 10, workers=0, progress=False)
    after = served.engine(None)
    assert after is not before and after.count == INDEX_SIZE - 10
    assert before.search(text="red dress", k=3).hits, "a search already holding the old engine still answers"
