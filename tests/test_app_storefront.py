"""The storefront's promises with AppTest and the tiny models: only models that can search, never a
crash box, variants as one card, an honest query bar whose parts can be cleared."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core import settings
from core.build_index import build_index
from core.catalog import CatalogError, from_folder
from core.index import VectorIndex, read_manifest
from core.models import CLIP_KEY, MULTILINGUAL_KEY, get_spec
from core.weights import search_problem
from ui.share import public_base, qr_png, search_link

from .app_support import (
    app_index,  # noqa: F401  (fixture)
    assert_no_exception,
    latency,
    open_app,
    result_ids,
    result_images,
    texts,
)

COMPARE = "pages/1_Compare_models.py"


def damaged_copy(fashion_index, tmp_path, monkeypatch, change) -> Path:
    """The session's index copied, with its manifest's record of the multilingual model changed."""
    copy = tmp_path / "index_data" / "fashion"
    shutil.copytree(fashion_index, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(copy.parent))
    return copy


def wider_multilingual(manifest: dict) -> None:
    manifest["models"][MULTILINGUAL_KEY]["dim"] = 512
    for entry in manifest["entries"]:
        if entry["encoder"] == MULTILINGUAL_KEY:
            entry["dim"] = 512


def other_multilingual_weights(manifest: dict) -> None:
    probe = manifest["models"][MULTILINGUAL_KEY]["probe"]
    manifest["models"][MULTILINGUAL_KEY]["probe"] = [-value for value in probe]


def test_the_manifest_says_which_models_cannot_search(fashion_index, tmp_path, monkeypatch):
    manifest = read_manifest(damaged_copy(fashion_index, tmp_path, monkeypatch, wider_multilingual))
    assert search_problem(get_spec(CLIP_KEY), manifest) is None
    assert "512 dimensions" in search_problem(get_spec(MULTILINGUAL_KEY), manifest)


def test_a_model_of_another_vector_size_is_not_offered_and_examples_do_not_switch_to_it(
    fashion_index, tmp_path, monkeypatch
):
    copy = damaged_copy(fashion_index, tmp_path, monkeypatch, wider_multilingual)
    entry = read_manifest(copy).find(MULTILINGUAL_KEY, "caption")
    wide = np.random.default_rng(0).standard_normal((entry.count, entry.dim)).astype(np.float32)
    VectorIndex.build(wide / np.linalg.norm(wide, axis=1, keepdims=True)).save(copy, entry.stem)  # files that fit
    at = open_app()
    assert at.selectbox(key="model").options == ["English"]
    assert any("Not offered for this catalog: Any language (50+), because" in c.value.replace("\\", "") for c in at.sidebar.caption)
    at.pills(key="text-prompt").set_value(1).run()  # a German example
    assert_no_exception(at)
    assert at.selectbox(key="model").value == CLIP_KEY and not texts(at, "toast") and result_images(at) == 12
    at = open_app({"q": "Sonnenbrille", "model": MULTILINGUAL_KEY})  # a link naming it
    assert_no_exception(at)
    assert at.selectbox(key="model").value == CLIP_KEY and result_images(at) == 12


def test_a_model_with_other_weights_drops_out_of_compare_and_search_without_a_crash(
    fashion_index, tmp_path, monkeypatch
):
    damaged_copy(fashion_index, tmp_path, monkeypatch, other_multilingual_weights)
    at = open_app({"q": "Sonnenbrille", "k": "8"}, page=COMPARE)
    assert_no_exception(at)
    assert [h.value for h in at.subheader] == [CLIP_KEY] and not texts(at, "error")
    at.switch_page("app.py").run()
    assert at.selectbox(key="model").options == ["English"] and result_images(at) == 8
    assert any("other weights" in c.value.replace("\\", "") for c in at.sidebar.caption)


@pytest.fixture
def variants_index(tiny_models, fashion_dir, tmp_path, monkeypatch):
    """Eight real photos: three share a name (one shirt in three colours), the rest are distinct."""
    images = tmp_path / "images"
    images.mkdir()
    photos = sorted((fashion_dir / "images").glob("*.jpg"))[:8]
    for photo in photos:
        shutil.copy(photo, images)
    with open(tmp_path / "products.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "caption", "style", "baseColour"])
        for i, photo in enumerate(photos):
            name = "Classic Oxford Shirt" if i < 3 else f"Product number {i}"
            writer.writerow([photo.stem, name, "pair" if i in (3, 4) else f"style {i}", "NA" if i == 5 else "Blue"])
    catalog = from_folder(images, tmp_path / "products.csv")
    build_index(catalog, tmp_path / "index" / "shop", progress=False)
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(tmp_path / "index"))
    return tmp_path, [photo.stem for photo in photos], catalog


def test_variants_are_one_card_and_more_like_this_skips_them(variants_index):
    _, ids, _ = variants_index
    at = open_app({"q": "shirt", "k": "8"})
    shown = result_ids(at)
    assert len(shown) == 6 and len(set(shown) & set(ids[:3])) == 1  # 8 products, 6 cards
    cards = [m.value for m in at.grid(key="results").markdown]
    assert sum("3 variants" in card for card in cards) == 1
    assert not any("NA]" in card for card in cards)  # "NA" is no tag
    (shirt,) = set(shown) & set(ids[:3])
    at.button(key=f"results-like-{shirt}").click().run()
    assert latency(at).endswith("by photo")
    assert not set(result_ids(at)) & set(ids[:3]) and len(result_ids(at)) == 5  # no variant of the shirt


def test_a_named_column_groups_variants_and_an_unknown_one_is_refused(variants_index):
    tmp_path, ids, catalog = variants_index
    build_index(catalog, tmp_path / "index" / "shop", progress=False, variants="style")
    at = open_app({"q": "shirt", "k": "8"})
    assert len(result_ids(at)) == 7  # ids[3] and ids[4] share a style; the shirts differ in style
    with pytest.raises(CatalogError, match="no_such_column"):
        build_index(catalog, tmp_path / "index" / "other", progress=False, variants="no_such_column")


def test_the_query_bar_shows_each_part_and_clears_it(app_index, fashion_dir):
    photo = sorted((fashion_dir / "images").glob("*.jpg"))[-3]
    at = open_app({"q": "red dress"})
    at.file_uploader(key="upload-0").upload("outfit.jpg", photo.read_bytes(), "image/jpeg").run()
    assert latency(at).endswith("by words + photo")
    assert {b.key for b in at.button if b.key and b.key.startswith("clear_")} == {"clear_text", "clear_photo", "clear_all"}
    at.button(key="clear_photo").click().run()
    assert latency(at).endswith("by words") and at.file_uploader(key="upload-1").value is None
    at.button(key="clear_text").click().run()
    assert result_images(at) == 0 and at.query_params == {}


def test_a_refused_upload_is_not_left_listed_and_the_old_hint_goes(app_index, fashion_dir):
    photo = sorted((fashion_dir / "images").glob("*.jpg"))[-3]
    at = open_app()
    at.file_uploader(key="upload-0").upload("good.jpg", photo.read_bytes(), "image/jpeg").run()
    assert any(c.value == "Searching with this photo" for c in at.caption)
    at.file_uploader(key="upload-0").upload("notes.jpg", b"not a photo at all", "image/jpeg").run()
    assert_no_exception(at)
    assert "not a supported image" in texts(at, "error")[0] and at.file_uploader(key="upload-1").value is None
    assert not any(c.value == "Searching with this photo" for c in at.caption) and result_images(at) == 0


def test_typing_after_more_like_this_starts_a_new_search_by_words(app_index):
    at = open_app({"q": "watch"})
    at.button(key=f"results-like-{result_ids(at)[0]}").click().run()
    assert latency(at).endswith("by photo")
    at.text_input(key="text").set_value("red dress").run()
    assert latency(at).endswith("by words") and at.query_params == {"q": "red dress"}


def test_the_qr_link_uses_the_public_address_and_never_a_loopback_one():
    assert public_base("https://booth.example/vitrine", "http://localhost:8501/") == "https://booth.example/vitrine"
    assert public_base(None, "http://localhost:8501/?q=x") is None
    assert public_base(None, "https://user-vitrine.hf.space/?q=x") == "https://user-vitrine.hf.space"
    assert search_link("https://b.example", {"q": "red dress", "k": "8"}) == "https://b.example/?q=red+dress&k=8"
    assert qr_png("https://b.example/?q=red+dress").startswith(b"\x89PNG")


def test_a_booth_shows_the_qr_code_of_the_current_search(app_index, monkeypatch):
    monkeypatch.setenv(settings.PUBLIC_URL_ENV, "https://booth.example")
    at = open_app({"q": "red dress"})
    assert any(c.value == "`https://booth.example/?q=red+dress`" for c in at.sidebar.caption)
    at.slider(key="k").set_value(8).run()
    assert any(c.value == "`https://booth.example/?q=red+dress&k=8`" for c in at.sidebar.caption)
