"""The app with broken catalogs: the damaged one says so, the others stay usable, nothing crashes."""

from __future__ import annotations

import shutil

import pytest

from tests.app_support import app_index, assert_no_exception, latency, open_app, result_images, texts  # noqa: F401

BROKEN = "a-damaged"  # sorts before "fashion"


@pytest.fixture
def damaged_first(fashion_index, tmp_path, monkeypatch):
    root = tmp_path / "index_data"
    shutil.copytree(fashion_index, root / "fashion")
    shutil.copytree(fashion_index, root / BROKEN)
    (root / BROKEN / "image__clip-ViT-B-32.hnsw").write_bytes(b"")
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(root))
    return root


def test_the_app_opens_on_a_working_catalog_when_a_damaged_one_sorts_first(damaged_first):
    at = open_app({"q": "shirt"})
    assert not texts(at, "error") and latency(at).startswith("12 of 300 products")
    assert at.query_params == {"q": "shirt"}  # the working catalog is the default: the link stays short
    at.selectbox(key="catalog").set_value(BROKEN).run()
    assert_no_exception(at)
    error = texts(at, "error")[0].replace("\\", "")
    assert "image__clip-ViT-B-32.hnsw is damaged" in error and "Rebuild" in error and result_images(at) == 0
    at.selectbox(key="catalog").set_value("fashion").run()
    assert result_images(at) == 12


@pytest.mark.parametrize("harm", ["deleted", "damaged"])
def test_lost_thumbnails_give_placeholders(fashion_index, tmp_path, monkeypatch, harm):
    root = tmp_path / "index_data"
    shutil.copytree(fashion_index, root / "fashion")
    if harm == "deleted":
        shutil.rmtree(root / "fashion" / "thumbnails")
    else:
        for thumbnail in (root / "fashion" / "thumbnails").iterdir():
            thumbnail.write_bytes(b"RIFF\x00\x00not a webp")
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(root))
    at = open_app({"q": "shirt"})
    assert latency(at).startswith("12 of 300 products") and result_images(at) == 0
    assert sum("No photo" in caption.value for caption in at.caption) == 12
    at.segmented_control(key="image_source").set_value("Catalog product").run()  # the picker's examples
    assert_no_exception(at)
