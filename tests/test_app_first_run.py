"""The first-run screen: no catalog yet, build one from a folder or the sample, or say what is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.elements.progress import ProgressMixin

from core import settings
from core import models
from core.index import read_manifest

from .app_support import assert_no_exception, latency, open_app, result_images, texts
from .hub_support import FILES, serve_hub, write_hub_repo
from .models_env import closed_loopback_url, files_under

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


def test_indexing_a_folder_of_shared_photos_opens_the_search(empty_index_dir, fashion_dir, monkeypatch):
    bar = []  # what the progress bar showed, update by update (the page reruns into the search once done)
    draw = ProgressMixin.progress
    monkeypatch.setattr(ProgressMixin, "progress", lambda dg, value, text=None, **kw: bar.append((value, text))
                        or draw(dg, value, text, **kw))
    at = open_app()
    fill_folder_form(at, fashion_dir / "images", fashion_dir / "products.csv", name="My shop!", limit=PHOTOS)
    assert_no_exception(at)
    images = [value for value, text in bar if text.startswith("Images:")]
    index = [value for value, text in bar if text.startswith("Index:")]
    assert (1.0, f"Images: {PHOTOS} of {PHOTOS}") in bar and images == sorted(images)
    assert bar[-1][0] == 1.0 and bar[-1][1].startswith("Index:") and len(index) > 1 and index == sorted(index)
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


def test_the_sample_without_network_says_so(empty_index_dir, sample_cache, monkeypatch):
    """The real downloader against a hub address where nothing listens (offline mode: no retries)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", closed_loopback_url())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    at = open_app()
    at.form_submit_button[0].click().run()
    assert_no_exception(at)
    said = texts(at, "error")[0].replace("\\", "")
    assert "could not be downloaded" in said and "index a folder" in said
    assert at.title[0].value == "Welcome to Vitrine" and files_under(sample_cache) == []
    assert not any(empty_index_dir.glob("*/manifest.json"))


@pytest.fixture(scope="module")
def sample_hub_files(fashion_dir, tmp_path_factory) -> Path:
    """A dataset of 2 x 110 rows: more than the smallest sample size (200), so the size cuts it."""
    return write_hub_repo(fashion_dir, tmp_path_factory.mktemp("hub"), 110)


@pytest.fixture
def sample_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(settings.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_sample_size_choice_builds_that_many_products(empty_index_dir, sample_hub_files, sample_cache, monkeypatch):
    hub = serve_hub(monkeypatch, sample_hub_files)  # the two hub calls; the parquet path after them is real
    at = open_app()
    at.select_slider[0].set_value(200)
    at.form_submit_button[0].click().run()
    assert_no_exception(at)
    assert hub.downloads == FILES
    out = empty_index_dir / "fashion-sample"
    assert at.title[0].value == "Vitrine" and "Indexed 199 images" in texts(at, "success")[0]
    manifest = read_manifest(out)
    assert manifest.photo_count == 199 and manifest.skipped_count == 1  # row 3 of the dataset is not an image
    assert "first 200 products" in manifest.source and "ashraq/fashion-product-images-small" in manifest.source
    at.text_input(key="text").set_value("white skirt").run()
    assert latency(at).startswith("12 of 199 products by words") and result_images(at) == 12
