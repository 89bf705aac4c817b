"""The extra pages (compare models, catalog) and the catalog picker, with AppTest and the tiny models."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from core.build_index import build_index
from core.catalog import from_folder
from core.models import CLIP_KEY, MULTILINGUAL_KEY, get_encoder
from core.projection import Projection

from ui import variants

from .app_support import (
    app_index,  # noqa: F401  (fixture)
    assert_no_exception,
    latency,
    open_app,
    result_ids,
    result_images,
    texts,
)

COMPARE, CATALOG = "pages/1_Compare_models.py", "pages/2_Catalog.py"


def chart_spec(at) -> dict:
    (chart,) = at.get("vega_lite_chart")
    return json.loads(chart.proto.spec)


def browse_count(at) -> str:
    return next(c.value for c in at.caption if c.value.endswith("photos match."))


def words(text: str) -> str:
    """Only the letters and digits of a text: markdown escapes and emphasis fall away."""
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()


def shows_in_order(grid, captions: list[str]) -> bool:
    """Whether the grid's cards are named after these products, in this order (a long name may be cut short)."""
    names = [words(m.value.split("  \n")[0]) for m in grid.markdown]
    return len(names) == len(captions) and all(
        name and words(caption).startswith(name) for name, caption in zip(names, captions)
    )


def test_compare_shows_both_models_side_by_side_with_their_overlap(app_index, engine):
    at = open_app({"q": "Sonnenbrille", "k": "8"}, page=COMPARE)
    assert [h.value for h in at.subheader] == [CLIP_KEY, MULTILINGUAL_KEY]
    images = [len(at.grid(key=f"compare-{model}").image) for model in (CLIP_KEY, MULTILINGUAL_KEY)]
    assert images == [8, 8]
    # each column is that model's own search (one card per product and its variants), and the
    # overlap is counted from those searches
    groups = variants.for_engine(engine)
    own = {
        model: [card.hit for card in variants.cards(
            engine.search(text="Sonnenbrille", model=model, k=variants.fetch_size(8)).hits, groups, 8)]
        for model in (CLIP_KEY, MULTILINGUAL_KEY)
    }
    for model, hits in own.items():
        assert shows_in_order(at.grid(key=f"compare-{model}"), [hit.caption for hit in hits])
    shared = len({hit.id for hit in own[CLIP_KEY]} & {hit.id for hit in own[MULTILINGUAL_KEY]})
    assert [hit.id for hit in own[CLIP_KEY]] != [hit.id for hit in own[MULTILINGUAL_KEY]]
    (overlap,) = at.metric
    assert overlap.label == "In the top 8 of every model" and overlap.value == f"{shared} of 8"


def test_compare_without_words_explains(app_index):
    at = open_app(page=COMPARE)
    assert "Type a description" in texts(at, "info")[0] and not at.metric
    at.pills(key="compare_text-prompt").set_value(3).run()
    assert at.text_input(key="compare_text").value == "zapatillas blancas de deporte" and len(at.metric) == 1


def test_catalog_page_shows_the_index_facts(app_index, engine):
    at = open_app(page=CATALOG)
    facts = {metric.label: metric.value for metric in at.metric}
    assert facts == {
        "Products": "300", "Photos": "300", "Models": "2",
        "Built": engine.manifest.created_at[:10], "HNSW": f"M {engine.manifest.hnsw.m}",
    }
    assert f"ef\\_search {engine.manifest.hnsw.ef_search}" in at.caption[0].value.replace("ef_search", "ef\\_search")


def test_catalog_browses_and_filters_by_metadata(app_index, engine):
    women = int((engine.reader.metadata_table()["gender"] == "Women").sum())
    at = open_app(page=CATALOG)
    assert browse_count(at) == "300 of 300 photos match." and len(at.grid(key="browse").image) == 24
    at.multiselect(key="browse_gender").set_value(["Women"]).run()
    assert browse_count(at) == f"{women} of 300 photos match."
    at.text_input(key="browse_words").set_value("no product is called this").run()
    assert browse_count(at) == "0 of 300 photos match."


def test_more_like_this_from_the_catalog_opens_the_search(app_index):
    at = open_app(page=CATALOG)
    button = at.grid(key="browse").button[5]
    button.click().run()
    assert_no_exception(at)
    product = button.key.removeprefix("browse-like-")
    assert latency(at).startswith("12 of 300 products by photo") and product not in result_ids(at)


def chart_data(at, name: str) -> pd.DataFrame:
    """A named dataset of the page's one chart (Streamlit sends the rows beside the spec, as Arrow)."""
    (chart,) = at.get("vega_lite_chart")
    (dataset,) = [d for d in chart.proto.datasets if d.name == name]
    return pa.ipc.open_stream(dataset.data.data).read_pandas()


@pytest.mark.parametrize(("query", "model"), [("red dress", CLIP_KEY), ("rotes Kleid", MULTILINGUAL_KEY)])
def test_the_map_places_the_latest_query_at_its_projection(app_index, engine, query, model):
    at = open_app(page=CATALOG)
    assert [layer["mark"]["type"] for layer in chart_spec(at)["layer"]] == ["circle"]
    at = open_app({"q": query, "model": model}, page=CATALOG)
    layers = chart_spec(at)["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["circle", "point", "text"]
    assert at.selectbox(key="map_colour").value == "masterCategory"
    (marker,) = chart_data(at, layers[1]["data"]["name"]).to_dict("records")
    projection = Projection.fit(np.asarray(engine.reader.image_vectors))
    expected = projection.transform(get_encoder(model).encode_texts([query]))[0]
    assert query in marker["label"]
    np.testing.assert_allclose([marker["x"], marker["y"]], expected, atol=1e-4)
    photos = chart_data(at, layers[0]["data"]["name"])
    np.testing.assert_allclose(photos[["x", "y"]].to_numpy(), projection.transform(engine.reader.image_vectors), atol=1e-4)


@pytest.fixture
def two_catalogs(fashion_index, fashion_dir, tmp_path, monkeypatch, tiny_models):
    root = tmp_path / "index_data"
    shutil.copytree(fashion_index, root / "fashion")
    catalog = from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="mini")
    build_index(catalog, root / "mini", limit=6, progress=False)
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(root))
    return root


def test_several_catalogs_get_a_picker_and_the_link_names_the_catalog(two_catalogs):
    at = open_app({"q": "shirt"})
    assert at.selectbox(key="catalog").options == ["fashion", "mini"]
    assert latency(at).startswith("12 of 300 products")
    at.selectbox(key="catalog").set_value("mini").run()
    assert latency(at).startswith("6 of 6 products") and at.query_params == {"q": "shirt", "catalog": "mini"}
    assert result_images(open_app({"q": "shirt", "catalog": "mini"})) == 6



def test_settings_follow_the_visitor_across_pages(two_catalogs):
    at = open_app({"q": "shirt", "k": "8"})
    at.selectbox(key="catalog").set_value("mini").run()
    at.switch_page(CATALOG).run()
    assert at.selectbox(key="catalog").value == "mini" and at.metric[0].value == "6"
    at.switch_page(COMPARE).run()
    assert at.slider(key="k").value == 8 and at.text_input(key="compare_text").value == "shirt"
    at.slider(key="k").set_value(5).run()
    at.switch_page("app.py").run()
    assert at.text_input(key="text").value == "shirt" and latency(at).startswith("5 of 6 products")


@pytest.mark.parametrize(
    ("damage", "message"),
    [("manifest.json", "is damaged"), ("items.parquet", "items.parquet")],
)
def test_a_damaged_catalog_says_so_and_the_others_still_work(two_catalogs, damage, message):
    target = two_catalogs / "mini" / damage
    if damage == "manifest.json":
        target.write_text("{ not json")
    else:
        target.unlink()
    at = open_app({"q": "shirt", "catalog": "mini"})
    assert message in texts(at, "error")[0].replace("\\", "") and result_images(at) == 0
    at.selectbox(key="catalog").set_value("fashion").run()
    assert_no_exception(at)
    assert result_images(at) == 12
