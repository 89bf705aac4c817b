"""The search page with AppTest and the tiny models: words, photos, blend, "more like this", links, reruns."""

from __future__ import annotations

import pytest

from core.models import CLIP_KEY, MULTILINGUAL_KEY

from .app_support import (
    app_index,  # noqa: F401  (fixture)
    assert_no_exception,
    latency,
    open_app,
    photo_bytes,
    result_ids,
    result_images,
    texts,
)
from .test_search_reuse import EncodeCounter


@pytest.fixture
def outside_photo(fashion_dir):
    """A product photo that is not in the 300-product index."""
    return sorted((fashion_dir / "images").glob("*.jpg"))[-3]


def test_a_fresh_page_explains_what_to_do(app_index):
    at = open_app()
    assert at.title[0].value == "Vitrine"
    assert "Describe a product in your own words" in texts(at, "info")[0]
    assert result_images(at) == 0 and at.query_params == {}
    assert at.selectbox(key="model").options == ["English", "Any language (50+)"]
    assert at.selectbox(key="model").value == CLIP_KEY


def test_words_show_k_cards_with_name_relevance_tags_and_details_on_demand(app_index):
    at = open_app()
    at.slider(key="k").set_value(8)
    at.text_input(key="text").set_value("navy blue shirt").run()
    assert_no_exception(at)
    assert result_images(at) == 8 and len(set(result_ids(at))) == 8
    cards = [m.value for m in at.grid(key="results").markdown]
    assert all(card.startswith("**") and "●" in card for card in cards) and any("badge[" in card for card in cards)
    dots = [card.count("●") for card in cards]
    assert dots == sorted(dots, reverse=True)  # the cue agrees with the order
    assert latency(at) == "8 of 300 products by words" and not any("cosine" in card for card in cards)
    at.toggle(key="details").set_value(True).run()
    assert latency(at).startswith("8 of 300 products by words · model clip-ViT-B-32 · encode ")
    assert at.grid(key="results").markdown[0].value.split("\n")[-1].startswith(":gray[\\#1 · photo cosine ")
    assert at.query_params == {"q": "navy blue shirt", "k": "8"}


def test_a_german_example_switches_to_the_multilingual_model(app_index):
    at = open_app()
    at.pills(key="text-prompt").set_value(1).run()
    assert_no_exception(at)
    assert at.text_input(key="text").value == "schwarze Lederjacke für Herren"
    assert at.selectbox(key="model").value == MULTILINGUAL_KEY
    assert "multilingual" in texts(at, "toast")[0] and result_images(at) == 12
    assert at.query_params["model"] == MULTILINGUAL_KEY


def test_an_uploaded_photo_searches_by_image(app_index, outside_photo):
    at = open_app()
    at.file_uploader(key="upload-0").upload("outfit.jpg", outside_photo.read_bytes(), "image/jpeg").run()
    assert_no_exception(at)
    assert latency(at).startswith("12 of 300 products by photo")
    assert result_images(at) == 12 and len(at.image) > 12  # the preview of the query photo too


def test_a_catalog_photo_upload_leaves_that_product_out(app_index, fashion_dir, engine):
    product = engine.reader.items["id"].iloc[4]
    at = open_app()
    at.file_uploader(key="upload-0").upload("mine.jpg", (fashion_dir / "images" / f"{product}.jpg").read_bytes()).run()
    assert result_images(at) == 12 and product not in result_ids(at)


def test_a_camera_snapshot_searches_by_image(app_index, outside_photo):
    at = open_app()
    at.segmented_control(key="image_source").set_value("Camera").run()
    at.camera_input[0].upload("snapshot.jpg", photo_bytes(outside_photo)).run()
    assert_no_exception(at)
    assert latency(at).startswith("12 of 300 products by photo") and result_images(at) == 12


def test_words_and_photo_blend_and_the_ends_of_the_slider_are_pure(app_index, outside_photo):
    at = open_app()
    at.file_uploader(key="upload-0").upload("outfit.jpg", outside_photo.read_bytes(), "image/jpeg").run()
    photo_only = result_ids(at)
    at.text_input(key="text").set_value("red summer dress").run()
    assert latency(at).endswith(" by words + photo")
    at.slider(key="blend").set_value(0.0).run()
    assert latency(at).endswith(" by photo") and result_ids(at) == photo_only
    at.slider(key="blend").set_value(1.0).run()
    assert latency(at).endswith(" by words")
    assert at.query_params["blend"] == "1"


def test_reruns_never_encode_again_what_was_encoded(app_index, fashion_dir, monkeypatch):
    at = open_app()  # loads and warms the model first
    counter = EncodeCounter(monkeypatch)
    new_photo = photo_bytes(sorted((fashion_dir / "images").glob("*.jpg"))[-4], tweak=7)
    at.file_uploader(key="upload-0").upload("new.jpg", new_photo, "image/jpeg")
    at.text_input(key="text").set_value("a brand new description").run()
    assert (counter.images, counter.texts) == (1, 1)
    at.slider(key="k").set_value(20).run()
    at.slider(key="blend").set_value(0.8).run()
    at.checkbox(key="captions").uncheck().run()
    at.run()
    assert (counter.images, counter.texts) == (1, 1) and result_images(at) == 20


def test_more_like_this_searches_with_that_product_and_leaves_it_out(app_index):
    at = open_app({"q": "watch"})
    chosen = result_ids(at)[2]
    at.button(key=f"results-like-{chosen}").click().run()
    assert_no_exception(at)
    assert at.text_input(key="text").value == "" and at.segmented_control(key="image_source").value == "Catalog product"
    assert latency(at).startswith("12 of 300 products by photo")
    assert chosen not in result_ids(at) and result_images(at) == 12
    assert at.query_params == {"product": chosen}


def test_an_example_product_can_be_picked_and_cleared(app_index):
    at = open_app()
    at.segmented_control(key="image_source").set_value("Catalog product").run()
    example = next(button for button in at.button if button.key.startswith("example-"))
    example.click().run()
    product = example.key.removeprefix("example-")
    assert product not in result_ids(at) and result_images(at) == 12 and at.query_params == {"product": product}
    clear = next(button for button in at.button if button.label == "Clear")
    clear.click().run()
    assert result_images(at) == 0 and at.query_params == {}


def test_a_shared_link_restores_the_whole_search(app_index, engine):
    product = engine.reader.items["id"].iloc[10]
    link = {"q": "summer", "model": MULTILINGUAL_KEY, "k": "8", "blend": "0.3", "product": product}
    at = open_app(link)
    assert at.text_input(key="text").value == "summer" and at.selectbox(key="model").value == MULTILINGUAL_KEY
    assert at.slider(key="k").value == 8 and at.slider(key="blend").value == pytest.approx(0.3)
    assert at.segmented_control(key="image_source").value == "Catalog product"
    assert latency(at).startswith("8 of 300 products by words + photo") and product not in result_ids(at)
    assert at.query_params == link


def test_a_broken_link_still_opens_a_working_page(app_index):
    at = open_app({"k": "lots", "model": "gpt-99", "blend": "-4", "product": "no-such-product", "q": "shirt"})
    assert len(texts(at, "toast")) == 2
    assert any("not in this catalog" in w for w in texts(at, "warning"))
    assert latency(at).startswith("12 of 300 products by words")  # the rest of the link is used
    assert at.query_params == {"q": "shirt", "blend": "0"}  # clamped into range, unknown parts dropped


def test_a_high_threshold_says_no_confident_match(app_index):
    at = open_app({"q": "red dress"})
    at.toggle(key="threshold_on").set_value(True).run()
    at.slider(key="threshold").set_value(0.99).run()
    assert_no_exception(at)
    assert result_images(at) == 0 and "No confident match" in texts(at, "warning")[0]
    at.slider(key="threshold").set_value(0.0).run()
    assert not texts(at, "warning")


def test_the_multilingual_model_loads_only_when_first_chosen_and_each_model_warms_up_once(app_index, monkeypatch):
    import streamlit as st

    from core import models
    from core.search import SearchEngine
    from ui.resources import WARM_UP_TEXT

    st.cache_resource.clear()  # a fresh server process: no engine, no warm-up, no model loaded yet
    models.clear_cache()
    loaded, searches = [], []
    load, search = models.load_encoder, SearchEngine.search
    monkeypatch.setattr(models, "load_encoder", lambda key, *args, **kw: loaded.append(key) or load(key, *args, **kw))
    monkeypatch.setattr(SearchEngine, "search", lambda engine, **query: searches.append(
        (query.get("model", CLIP_KEY), query.get("text"), query.get("image") is not None)) or search(engine, **query))

    at = open_app({"q": "blue shirt"})
    assert loaded == [CLIP_KEY] and latency(at).startswith("12 of 300 products")
    warm_up = [(CLIP_KEY, WARM_UP_TEXT, False), (CLIP_KEY, None, True)]  # both towers run once
    assert searches == [*warm_up, (CLIP_KEY, "blue shirt", False)]
    at.text_input(key="text").set_value("red shoes").run()
    assert loaded == [CLIP_KEY] and searches[-1] == (CLIP_KEY, "red shoes", False) and len(searches) == 4

    at.selectbox(key="model").set_value(MULTILINGUAL_KEY).run()
    assert_no_exception(at)
    assert loaded == [CLIP_KEY, MULTILINGUAL_KEY]
    assert searches[4:] == [(MULTILINGUAL_KEY, WARM_UP_TEXT, False), (MULTILINGUAL_KEY, None, True),
                            (MULTILINGUAL_KEY, "red shoes", False)]
    at.selectbox(key="model").set_value(CLIP_KEY).run()
    assert searches[7:] == [(CLIP_KEY, "red shoes", False)]  # warmed up already: no second warm-up
