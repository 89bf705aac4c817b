"""The first-run screen: no catalog yet, build one from a folder or the sample, or say what is missing."""

from __future__ import annotations

import shutil

import pytest

from core import settings
from core import models, sample
from core.catalog import from_folder

from .app_support import assert_no_exception, latency, open_app, result_images, texts

PHOTOS = 24


@pytest.fixture
def empty_index_dir(tiny_models, tmp_path, monkeypatch):
    folder = tmp_path / "index_data"
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(folder))
    return folder


@pytest.fixture
def no_models(tiny_models, tmp_path, monkeypatch):
    """A machine without network and without a local model folder."""
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path / "no-models-here"))
    models.clear_cache()
    yield
    models.clear_cache()


def fill_folder_form(at, images, captions="", name="", limit=0):
    at.text_input(key="fr_images").set_value(str(images))
    at.text_input(key="fr_captions").set_value(str(captions))
    at.text_input(key="fr_name").set_value(name)
    at.number_input(key="fr_limit").set_value(limit)
    at.form_submit_button[1].click().run()


def test_first_run_explains_and_offers_both_ways(empty_index_dir):
    at = open_app()
    assert at.title[0].value == "Welcome to Vitrine"
    assert f"`{empty_index_dir}`" in at.markdown[0].value  # a code span: shown exactly as it is
    assert [tab.label for tab in at.tabs] == [":material/download: Sample catalog", ":material/folder_open: Your own photos"]
    assert at.select_slider[0].value == 1_000 and len(at.form_submit_button) == 2
    assert settings.MODELS_DIR_ENV in at.caption[0].value


def test_indexing_a_folder_of_shared_photos_opens_the_search(empty_index_dir, fashion_dir):
    at = open_app()
    fill_folder_form(at, fashion_dir / "images", fashion_dir / "products.csv", name="My shop!", limit=PHOTOS)
    assert_no_exception(at)
    assert (empty_index_dir / "My-shop" / "manifest.json").is_file()
    assert at.title[0].value == "Vitrine" and f"Indexed {PHOTOS} images" in texts(at, "success")[0]
    at.text_input(key="text").set_value("white skirt").run()
    assert latency(at).startswith(f"12 of {PHOTOS} products by words") and result_images(at) == 12


def test_a_folder_without_captions_indexes_by_photo(empty_index_dir, fashion_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for source in sorted((fashion_dir / "images").glob("*.jpg"))[:6]:
        shutil.copy(source, photos)
    (photos / "broken.jpg").write_bytes(b"not a photo")
    at = open_app()
    fill_folder_form(at, photos)
    assert_no_exception(at)
    assert "Indexed 6 images" in texts(at, "success")[0] and "Skipped 1 rows" in at.caption[0].value
    at.segmented_control(key="image_source").set_value("Catalog product").run()
    next(button for button in at.button if button.key.startswith("example-")).click().run()
    assert result_images(at) == 5


@pytest.mark.parametrize(
    ("images", "captions", "message"),
    [
        ("", "", "Give the folder"),
        ("/no/such/folder", "", "images folder not found"),
        ("IMAGES", "/no/such.csv", "such.csv"),
    ],
)
def test_a_bad_folder_says_what_is_wrong_and_the_form_stays(empty_index_dir, fashion_dir, images, captions, message):
    at = open_app()
    fill_folder_form(at, fashion_dir / "images" if images == "IMAGES" else images, captions)
    assert_no_exception(at)
    said = [body.replace("\\", "") for body in texts(at, "error") + texts(at, "warning")]
    assert any(message in body for body in said), said
    assert at.title[0].value == "Welcome to Vitrine" and not any(empty_index_dir.glob("*/manifest.json"))


def test_without_models_the_build_shows_the_offline_remedy(empty_index_dir, fashion_dir, no_models):
    at = open_app()
    fill_folder_form(at, fashion_dir / "images", fashion_dir / "products.csv", limit=PHOTOS)
    assert_no_exception(at)
    assert "could not be loaded" in texts(at, "error")[0]
    assert "python -m core.models download" in at.code[0].value and settings.MODELS_DIR_ENV in at.code[0].value


def test_without_models_the_search_page_shows_the_offline_remedy(fashion_index, tmp_path, monkeypatch, no_models):
    copy = tmp_path / "index" / "fashion"
    shutil.copytree(fashion_index, copy)  # a folder no earlier test warmed up
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(copy.parent))
    at = open_app({"q": "shirt"})
    assert "could not be loaded" in texts(at, "error")[0] and "python -m core.models download" in at.code[0].value
    assert at.button[-1].label == "Try again" and result_images(at) == 0


def test_the_sample_without_network_says_so(empty_index_dir, monkeypatch):
    def unreachable(n, cache_dir=None):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(sample, "sample_catalog", unreachable)
    at = open_app()
    at.form_submit_button[0].click().run()
    said = texts(at, "error")[0].replace("\\", "")
    assert "could not be downloaded (Network is unreachable)" in said and "index a folder" in said


def test_the_sample_size_choice_reaches_the_downloader(empty_index_dir, fashion_dir, monkeypatch):
    asked = []

    def from_the_hub(n, cache_dir=None):  # the hub download is the one thing replaced here
        asked.append(n)
        catalog = from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="fashion-sample")
        catalog.items = catalog.items[:PHOTOS]
        return catalog

    monkeypatch.setattr(sample, "sample_catalog", from_the_hub)
    at = open_app()
    at.select_slider[0].set_value(200)
    at.form_submit_button[0].click().run()
    assert_no_exception(at)
    assert asked == [200] and (empty_index_dir / "fashion-sample" / "manifest.json").is_file()
    assert at.title[0].value == "Vitrine" and f"Indexed {PHOTOS} images" in texts(at, "success")[0]
