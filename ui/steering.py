"""Steering on the search page: facet filters with counts, "less of" words, 👍/👎 on each card.

All of it travels in the URL next to the query (`f.baseColour=Black|Navy Blue`,
`not=leather,black`, `like=15970`, `unlike=39386`), so a steered search is a link too.
`from_query_params` and `to_query_params` are pure (tested without Streamlit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import streamlit as st

from core.facets import Facet
from ui.labels import facet_label
from core.search import Hit
from ui import state
from ui.text import plain

FILTER_PARAM = "f."  # one URL parameter per filtered facet: f.<key>=value|value
NOT_PARAM, LIKE_PARAM, UNLIKE_PARAM = "not", "like", "unlike"
VALUE_SEPARATOR, ID_SEPARATOR = "|", ","
MAX_FACET_OPTIONS = 60  # a facet with more values than this is not offered as a filter
MAX_IDS = 50
AUTOMATIC_HELP = ("Tagged at build time from each photo by the model (the catalog has no such column); "
                  "a photo the model was unsure of has no tag.")
_RESTORED = "_steering_restored"


@dataclass(frozen=True)
class Steering:
    """Filters (facet -> values), "less of" words, liked and disliked product ids."""

    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_words: str = ""
    liked: tuple[str, ...] = ()
    unliked: tuple[str, ...] = ()

    def search_arguments(self) -> dict:
        """What SearchEngine.search takes for this steering."""
        return {
            "filters": {key: list(values) for key, values in self.filters.items()},
            "not_text": [word.strip() for word in self.not_words.split(",") if word.strip()],
            "like": list(self.liked),
            "unlike": list(self.unliked),
        }


def with_count(facet: Facet) -> Callable[[str], str]:
    """How a filter option reads: the value and its product count, `Black (1,234)`."""
    return lambda value: f"{value} ({facet.values.get(value, 0):,})"


def filter_label(name: str, facet: Facet) -> str:
    """A facet filter's label: its friendly name, and for a tagged one, that the photos gave it."""
    return plain(facet_label(name), 40) + (" (from the photos)" if facet.automatic else "")


def facet_filter(name: str, facet: Facet, key: str) -> list[str]:
    """One facet's filter, the same on every page: friendly label, values with product counts."""
    return st.multiselect(
        filter_label(name, facet), list(facet.values), key=key, width=200, format_func=with_count(facet),
        help=AUTOMATIC_HELP if facet.automatic else None,
    )


def offered(facets: Mapping[str, Facet]) -> dict[str, Facet]:
    """The facets worth a filter on the page: at least two values, few enough to pick from."""
    return {name: facet for name, facet in facets.items() if 2 <= len(facet.values) <= MAX_FACET_OPTIONS}


def _ids(raw: str | None) -> tuple[str, ...]:
    ids = [part.strip() for part in (raw or "").split(ID_SEPARATOR) if part.strip()]
    return tuple(dict.fromkeys(state.clean_text(i, state.MAX_PRODUCT_ID_CHARS) for i in ids))[:MAX_IDS]


def from_query_params(params: Mapping[str, str | list[str]], facets: Mapping[str, Facet]) -> tuple[Steering, list[str]]:
    """The steering a link asks for, and a note for each filter it names that this catalog lacks."""
    single = {name: value[-1] if isinstance(value, list) else value for name, value in params.items() if value}
    filters, notes = {}, []
    for name, raw in single.items():
        if not name.startswith(FILTER_PARAM):
            continue
        key = name.removeprefix(FILTER_PARAM)
        known = facets.get(key)
        values = tuple(v for v in raw.split(VALUE_SEPARATOR) if known is not None and v in known.values)
        if values:
            filters[key] = values
        else:
            notes.append(f"The link filters on {facet_label(key)} values this catalog does not have; ignored.")
    steering = Steering(
        filters=filters,
        not_words=state.clean_text(single.get(NOT_PARAM, "")).strip(),
        liked=_ids(single.get(LIKE_PARAM)),
        unliked=_ids(single.get(UNLIKE_PARAM)),
    )
    return steering, notes


def to_query_params(steering: Steering) -> dict[str, str]:
    """The URL parameters of a steering; nothing for what is unset."""
    params = {f"{FILTER_PARAM}{key}": VALUE_SEPARATOR.join(values) for key, values in steering.filters.items() if values}
    for name, value in ((NOT_PARAM, steering.not_words), (LIKE_PARAM, ID_SEPARATOR.join(steering.liked)),
                        (UNLIKE_PARAM, ID_SEPARATOR.join(steering.unliked))):
        if value:
            params[name] = value
    return params


def _filter_key(facet: str) -> str:
    return f"{state.FILTERS}.{facet}"


def restore_once(facets: Mapping[str, Facet]) -> None:
    """On a session's first run, take the steering from the URL (as state.restore_once does the query)."""
    if st.session_state.get(_RESTORED):
        return
    steering, notes = from_query_params(st.query_params.to_dict(), facets)
    for key, values in steering.filters.items():
        st.session_state[_filter_key(key)] = list(values)
    st.session_state[state.NOT_WORDS] = steering.not_words
    st.session_state[state.LIKED], st.session_state[state.UNLIKED] = list(steering.liked), list(steering.unliked)
    st.session_state[state.URL_NOTES] = [*st.session_state.get(state.URL_NOTES, []), *notes]
    st.session_state[_RESTORED] = True


def controls(facets: Mapping[str, Facet]) -> Steering:
    """Facet filters (with product counts), the "less of" field and a reset; returns the steering they hold."""
    restore_once(facets)
    shown = offered(facets)
    filters = {}
    with st.expander("Refine: filters and “less of”", expanded=bool(_active(shown)), icon=":material/tune:"):
        with st.container(horizontal=True):
            for name, facet in shown.items():
                chosen = facet_filter(name, facet, _filter_key(name))
                if chosen:
                    filters[name] = tuple(chosen)
        st.text_input("Less of", key=state.NOT_WORDS, placeholder="e.g. leather, black", max_chars=200,
                      help="Words to steer away from, separated by commas.")
    liked, unliked = st.session_state.get(state.LIKED, []), st.session_state.get(state.UNLIKED, [])
    if liked or unliked:
        with st.container(horizontal=True):
            st.caption(f"Steering by {len(liked)} liked and {len(unliked)} not-this products")
            st.button("Clear likes", icon=":material/thumbs_up_down:", key="steering-clear", on_click=_clear_feedback, type="tertiary")
    return Steering(filters, state.clean_text(st.session_state.get(state.NOT_WORDS) or "").strip(),
                    tuple(liked), tuple(unliked))


def _active(facets: Mapping[str, Facet]) -> bool:
    return any(st.session_state.get(_filter_key(name)) for name in facets) or bool(st.session_state.get(state.NOT_WORDS))


def feedback_buttons(hit: Hit, key: str) -> None:
    """👍 / 👎 under a card: the grid refines at once (the rerun searches with the new lists).

    No tooltips: the browser redraws each one's popover on every rerun, and two per card made a
    new grid take 1.6x as long (bench/browser_latency.py)."""
    liked, unliked = st.session_state.get(state.LIKED, []), st.session_state.get(state.UNLIKED, [])
    with st.container(horizontal=True, gap="xxsmall"):
        st.button("Like", icon=":material/thumb_up:", key=f"{key}-up-{hit.id}", on_click=_toggle, args=(hit.id, state.LIKED, state.UNLIKED),
                  type="primary" if hit.id in liked else "tertiary")
        st.button("Not this", icon=":material/thumb_down:", key=f"{key}-down-{hit.id}", on_click=_toggle, args=(hit.id, state.UNLIKED, state.LIKED),
                  type="primary" if hit.id in unliked else "tertiary")


def _toggle(item_id: str, into: str, out_of: str) -> None:
    chosen = [i for i in st.session_state.get(into, []) if i != item_id]
    if len(chosen) == len(st.session_state.get(into, [])):
        chosen.append(item_id)
    st.session_state[into] = chosen[-MAX_IDS:]
    st.session_state[out_of] = [i for i in st.session_state.get(out_of, []) if i != item_id]


def _clear_feedback() -> None:
    st.session_state[state.LIKED], st.session_state[state.UNLIKED] = [], []


def render_no_match(steering: Steering) -> None:
    """The filters leave no product: say which, and how to widen them."""
    named = "; ".join(f"{facet_label(key)}: {', '.join(values)}" for key, values in steering.filters.items())
    st.info(f"No product matches these filters ({plain(named, 300)}). Remove one to see more.",
            icon=":material/filter_alt_off:")
