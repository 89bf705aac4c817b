"""The UI's pure parts: link state, text escaping, result labels, catalog names, config limits."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from core.images import DEFAULT_MAX_BYTES
from core.models import CLIP_KEY, MAX_TEXT_CHARS, MULTILINGUAL_KEY
from core.search import SearchResult
from ui import thumbnails
from ui.first_run import catalog_name
from ui.labels import facet_label
from ui.results import latency_line, metadata_chips
from ui.state import K_MAX, K_MIN, SearchState, from_query_params, to_query_params
from ui.text import code, plain

MODELS = [CLIP_KEY, MULTILINGUAL_KEY]
CATALOGS = ["fashion", "shop"]
ROOT = Path(__file__).resolve().parents[1]


def test_a_link_round_trips_through_the_url():
    shared = SearchState(text="rotes Kleid", model=MULTILINGUAL_KEY, k=20, blend=0.3, product="1163", catalog="shop")
    params = to_query_params(shared, default_catalog="fashion")
    assert params == {"q": "rotes Kleid", "model": MULTILINGUAL_KEY, "k": "20", "blend": "0.3", "product": "1163", "catalog": "shop"}
    assert from_query_params(params, MODELS, CATALOGS) == (shared, [])


def test_defaults_stay_out_of_the_url():
    assert to_query_params(SearchState(catalog="fashion"), default_catalog="fashion") == {}


@pytest.mark.parametrize(
    ("params", "expected", "notes"),
    [
        ({"k": "1000"}, SearchState(k=K_MAX), 0),
        ({"k": "-3"}, SearchState(k=K_MIN), 0),
        ({"k": "many"}, SearchState(), 1),
        ({"blend": "7"}, SearchState(blend=1.0), 0),
        ({"blend": "0.33"}, SearchState(blend=0.35), 0),
        ({"blend": "nan"}, SearchState(), 1),
        ({"model": "gpt-99"}, SearchState(), 1),
        ({"catalog": "../../etc"}, SearchState(), 1),
        ({"q": ["first", "last"]}, SearchState(text="last"), 0),
        ({"q": "  a\x00b\u202e \n"}, SearchState(text="ab"), 0),
        ({"q": "x" * 10_000}, SearchState(text="x" * MAX_TEXT_CHARS), 0),
        ({"product": "p" * 500}, SearchState(product="p" * 200), 0),
    ],
)
def test_odd_links_fall_back_to_what_can_be_used(params, expected, notes):
    state, said = from_query_params(params, MODELS, CATALOGS)
    assert state == SearchState(**{**expected.__dict__, "catalog": "fashion"}) and len(said) == notes


def test_plain_escapes_every_markdown_and_html_character():
    caption = "<img src=x onerror=alert(1)> **bold** [link](http://evil) :red[x] $x$ `code` # h"
    shown = plain(caption)
    for special in "<>*[]():$`#=":
        assert all(shown[i - 1] == "\\" for i, ch in enumerate(shown) if ch == special)
    assert shown.replace("\\", "") == caption


def test_plain_makes_one_short_line():
    assert plain("a\n\tb   c", 80) == "a b c"
    assert plain("x" * 100, 10) == "x" * 9 + "…"


def test_code_spans_show_paths_exactly_and_cannot_be_closed_early():
    assert code("/data/my_shop-2024/*.jpg") == "`/data/my_shop-2024/*.jpg`"
    assert code("a`b\nc") == "`a'b c`"


def test_metadata_chips_prefer_telling_keys_and_skip_blanks():
    metadata = {"year": "2012", "season": "Summer", "gender": "Women", "baseColour": " ", "subCategory": "Dress"}
    assert metadata_chips(metadata) == ["Women", "Dress", "Summer"]
    assert metadata_chips({}) == []


def test_latency_line_adds_up_encoding_and_search():
    result = SearchResult(hits=[], timings_ms={"decode": 1.0, "encode_image": 4.0, "encode_text": 2.0, "search": 0.5, "merge": 0.25, "total": 8.0}, mode="blend")
    assert latency_line(result, 9583, 12) == "12 of 9,583 products by words + photo"
    assert latency_line(result, 9583, 12, details=True) == (
        "12 of 9,583 products by words + photo · model clip-ViT-B-32 · encode 7.0 ms · search 0.8 ms · total 8.0 ms"
    )


def test_chips_leave_out_blank_and_na_values_and_facets_read_as_words():
    assert metadata_chips({"gender": "Men", "baseColour": "NA", "season": " ", "usage": "Casual"}) == ["Men", "Casual"]
    assert [facet_label(c) for c in ("baseColour", "masterCategory", "fabricType", "style_code")] == [
        "Colour", "Category", "Fabric type", "Style code"]


@pytest.mark.parametrize(("typed", "name"), [("My Shop 2024", "My-Shop-2024"), ("../../etc", "etc"), ("", "catalog"), ("ß✓", "catalog")])
def test_catalog_names_are_safe_folder_names(typed, name):
    assert catalog_name(typed) == name


def test_streamlit_upload_limit_matches_core():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 1024 * 1024 == DEFAULT_MAX_BYTES
    assert config["server"]["headless"] is True and config["browser"]["gatherUsageStats"] is False


def test_thumbnails_reach_the_browser_as_jpeg_converted_once(tmp_path):
    webp = tmp_path / "0123.webp"
    Image.new("RGB", (120, 160), "navy").save(webp, format="WEBP")
    jpeg = thumbnails.source(str(webp))
    assert jpeg[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(jpeg)).size == (120, 160)
    webp.unlink()
    assert thumbnails.source(str(webp)) is jpeg  # the same bytes on every rerun: Streamlit passes them through
    (tmp_path / "junk.webp").write_bytes(b"RIFF....WEBPnot really")
    assert thumbnails.source(str(tmp_path / "junk.webp")) is None
    assert thumbnails.source("https://api.example/thumbnails/fashion/0123.webp") == "https://api.example/thumbnails/fashion/0123.webp"
    assert thumbnails.source(None) is None
