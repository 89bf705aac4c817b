"""Bad input never breaks the page: each case shows a clear message, and the next search still works."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
from PIL import Image

from core.build_index import build_index
from core.catalog import from_folder
from core.images import DEFAULT_MAX_BYTES

from .app_support import (
    app_index,  # noqa: F401  (fixture)
    assert_no_exception,
    latency,
    open_app,
    result_images,
    texts,
)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def still_searches(at) -> None:
    """After a bad input, words still find products."""
    at.text_input(key="text").set_value("blue jeans").run()
    assert_no_exception(at)
    assert result_images(at) == 12


@pytest.fixture(scope="module")
def damaged_jpeg(fashion_dir) -> bytes:
    data = (fashion_dir / "images" / "10000.jpg").read_bytes()
    return data[: len(data) // 3]


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("damaged.jpg", "damaged", "damaged or incomplete"),
        ("notes.jpg", lambda: b"these are my shopping notes, not a photo", "not a supported image"),
        ("empty.png", lambda: b"", "empty"),
        ("huge.jpg", lambda: b"\xff\xd8\xff" + bytes(DEFAULT_MAX_BYTES), "too large"),
        ("bomb.png", lambda: png_bytes(Image.new("1", (8_000, 6_000))), "too large: 8000×6000 pixels"),
    ],
)
def test_a_bad_upload_says_what_is_wrong(app_index, damaged_jpeg, name, make, message):
    data = damaged_jpeg if make == "damaged" else make()
    at = open_app()
    at.file_uploader(key="upload-0").upload(name, data, "image/png").run()
    assert_no_exception(at)
    errors = [body.replace("\\", "") for body in texts(at, "error")]  # shown escaped: names are user text
    assert len(errors) == 1 and message in errors[0] and name in errors[0]
    assert result_images(at) == 0
    still_searches(at)


def test_a_bad_camera_frame_says_what_is_wrong(app_index, damaged_jpeg):
    at = open_app()
    at.segmented_control(key="image_source").set_value("Camera").run()
    at.camera_input[0].upload("snapshot.jpg", damaged_jpeg).run()
    assert_no_exception(at)
    assert "damaged or incomplete" in texts(at, "error")[0]
    still_searches(at)


def test_a_strip_photo_is_searched_not_fatal(app_index):
    at = open_app()
    at.file_uploader(key="upload-0").upload("strip.png", png_bytes(Image.new("RGB", (30_000, 1), "red"))).run()
    assert_no_exception(at)
    assert not texts(at, "error") and result_images(at) == 12


@pytest.mark.parametrize(
    "text",
    [
        "👗👠✨",
        "فستان أحمر للصيف",
        "שמלה אדומה",
        "\u202e\u200fred dress\u202c",
        "Kleid " * 2_000,
        "<script>alert(1)</script> **bold** [x](javascript:alert(1))",
    ],
    ids=["emoji", "arabic", "hebrew", "bidi-controls", "10000-chars", "markup"],
)
def test_odd_words_still_search(app_index, text):
    at = open_app()
    at.text_input(key="text").set_value(text).run()
    assert_no_exception(at)
    assert not texts(at, "error") and result_images(at) == 12
    assert len(at.query_params["q"]) <= 1_000
    if len(text) > 1_000:
        assert any("Only the first 1,000 characters are used." == c.value for c in at.caption)


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x07\x1b"])
def test_nothing_to_search_with_shows_the_empty_state(app_index, text):
    at = open_app()
    at.text_input(key="text").set_value(text).run()
    assert_no_exception(at)
    assert result_images(at) == 0 and not texts(at, "warning") and not texts(at, "error")
    assert "Describe a product" in texts(at, "info")[0]
    still_searches(at)


def test_catalog_captions_are_shown_as_text_never_markup(tiny_models, fashion_dir, tmp_path, monkeypatch):
    hostile = [
        "<img src=x onerror=alert(1)> Red Dress",
        "**Bold** [click](http://evil.example) ![pixel](http://e.example/p.png)",
        ":red[Coloured] $x^2$ `code` # Heading",
    ]
    images = tmp_path / "images"
    images.mkdir()
    for i, source in enumerate(sorted((fashion_dir / "images").glob("*.jpg"))[:3]):
        shutil.copy(source, images / f"p{i}.jpg")
    with open(tmp_path / "products.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "caption", "colour"])
        writer.writerows([f"p{i}", caption, "<b>red</b>"] for i, caption in enumerate(hostile))
    build_index(from_folder(images, tmp_path / "products.csv"), tmp_path / "index" / "hostile", progress=False)
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(tmp_path / "index"))
    at = open_app({"q": "dress", "k": "4"})
    assert latency(at).startswith("3 of 3 products")
    shown = [m.value.split("\n") for m in at.grid(key="results").markdown]  # name, relevance, tags
    for caption in hostile:
        name = next(lines[0] for lines in shown if lines[0].rstrip()[2:-2].replace("\\", "") == caption).rstrip()
        for special in "<>[]()*:$`#!":
            assert all(name[i - 1] == "\\" for i, ch in enumerate(name[2:-2], 2) if ch == special), name
    chips = [lines[-1] for lines in shown if "badge[" in lines[-1]]
    assert len(chips) == 3 and all("[\\<b\\>red\\</b\\>]" in chip for chip in chips)
