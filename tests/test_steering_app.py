"""Steering in the app: facet filters with counts, "less of" words, 👍/👎 per card, all in the URL."""

from __future__ import annotations

import json

from core.facets import Facet
from ui import steering
from ui.labels import facet_label

from .app_support import app_index, assert_no_exception, open_app, result_ids  # noqa: F401  (app_index: fixture)

FACETS = {"baseColour": Facet("baseColour", {"Black": 5, "Navy Blue": 2}), "gender": Facet("gender", {"Men": 4, "Women": 3})}


def test_options_carry_counts():
    assert steering.with_count(FACETS["baseColour"])("Black") == "Black (5)"
    assert steering.offered({**FACETS, "one": Facet("one", {"x": 9})}) == FACETS


def test_a_tagged_facet_says_it_came_from_the_photos():
    assert steering.filter_label("baseColour", FACETS["baseColour"]) == "Colour"
    assert steering.filter_label("colour", Facet("colour", {"red": 3, "blue": 2}, automatic=True)) == "Colour (from the photos)"


def test_steering_round_trips_through_the_url_and_drops_unknown_filters():
    wanted = steering.Steering({"baseColour": ("Black", "Navy Blue")}, "leather, black", ("1", "2"), ("3",))
    params = steering.to_query_params(wanted)
    assert params == {"f.baseColour": "Black|Navy Blue", "not": "leather, black", "like": "1,2", "unlike": "3"}
    assert steering.from_query_params(params, FACETS) == (wanted, [])
    odd, notes = steering.from_query_params({"f.colour": "Red", "f.gender": "Robots", "like": " ,5,5"}, FACETS)
    assert odd == steering.Steering(liked=("5",)) and len(notes) == 2
    assert wanted.search_arguments() == {
        "filters": {"baseColour": ["Black", "Navy Blue"]}, "not_text": ["leather", "black"], "like": ["1", "2"],
        "unlike": ["3"],
    }


def card_metadata(at, engine_folder) -> list[dict]:
    """The metadata of the shown products, read from the index's items table."""
    import pandas as pd

    items = pd.read_parquet(engine_folder / "items.parquet").set_index("id")
    return [json.loads(items.loc[i, "metadata"]) for i in result_ids(at)]


def test_a_facet_filter_with_counts_narrows_the_grid_and_goes_in_the_link(app_index):
    at = open_app({"q": "shirt"})
    gender = at.multiselect(key="filters.gender")
    assert gender.label == facet_label("gender") and any("(" in option for option in gender.options)
    gender.set_value(["Men"]).run()
    assert_no_exception(at)
    shown = card_metadata(at, app_index)
    assert shown and all(m["gender"] == "Men" for m in shown)
    assert at.query_params["f.gender"] == "Men" and at.query_params["q"] == "shirt"


def test_a_link_restores_filters_less_of_and_likes(app_index):
    at = open_app({"q": "shirt", "f.gender": "Women", "not": "black", "unlike": "10001"})
    assert at.multiselect(key="filters.gender").value == ["Women"]
    assert at.text_input(key="not_words").value == "black"
    shown = card_metadata(at, app_index)
    assert shown and all(m["gender"] == "Women" for m in shown) and "10001" not in result_ids(at)


def test_thumbs_down_removes_the_card_and_thumbs_up_is_kept_in_the_link(app_index):
    at = open_app({"q": "watch"})
    first, second = result_ids(at)[:2]
    at.button(key=f"results-down-{first}").click().run()
    assert_no_exception(at)
    assert first not in result_ids(at) and at.query_params["unlike"] == first
    at.button(key=f"results-up-{second}").click().run()
    assert at.query_params["like"] == second and second in result_ids(at)
    at.button(key="steering-clear").click().run()
    assert "like" not in at.query_params and "unlike" not in at.query_params


def test_filters_that_match_nothing_say_so(app_index):
    import pandas as pd

    table = pd.DataFrame(json.loads(m) for m in pd.read_parquet(app_index / "items.parquet")["metadata"])
    pairs = set(zip(table["gender"], table["masterCategory"]))
    gender, category = next(
        (g, c) for g in table["gender"].value_counts().index for c in table["masterCategory"].value_counts().index
        if (g, c) not in pairs
    )
    at = open_app({"q": "shirt", "f.gender": gender, "f.masterCategory": category})
    assert_no_exception(at)
    assert result_ids(at) == [] and any("No product matches these filters" in i.value for i in at.info)
