"""The search page's state: session keys for the widgets, mirrored in the URL so a search is a link.

`from_query_params` and `to_query_params` are pure (tested without Streamlit); `restore_once`
and `publish` move them between st.query_params and st.session_state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import streamlit as st

from core.models import CLIP_KEY, MAX_TEXT_CHARS

K_MIN, K_MAX, K_DEFAULT = 4, 48, 12
BLEND_DEFAULT = 0.5
BLEND_STEP = 0.05
MAX_PRODUCT_ID_CHARS = 200

# Session keys of the widgets (and of the query product, set by buttons).
TEXT, MODEL, K, BLEND, PRODUCT, CATALOG = "text", "model", "k", "blend", "product", "catalog"
IMAGE_SOURCE, THRESHOLD_ON, THRESHOLD, CAPTIONS = "image_source", "threshold_on", "threshold", "captions"
UPLOAD, CAMERA, CATALOG_PRODUCT = "Upload", "Camera", "Catalog product"
IMAGE_SOURCES = (UPLOAD, CAMERA, CATALOG_PRODUCT)
THRESHOLD_DEFAULT = 0.25
# Session keys of the other widgets and of what one run leaves for the next (underscore: not a widget).
PROMPT_SUFFIX = "-prompt"  # the example-prompt pills under a text box keyed K are keyed K + this
UPLOAD_KEY, CAMERA_KEY = "upload", "camera"
COMPARE_TEXT = "compare_text"
MAP_COLOUR = "map_colour"
BROWSE_WORDS, BROWSE_PAGE, BROWSE_PREFIX = "browse_words", "browse_page", "browse_"
FIRST_RUN_IMAGES, FIRST_RUN_CAPTIONS, FIRST_RUN_NAME, FIRST_RUN_LIMIT = "fr_images", "fr_captions", "fr_name", "fr_limit"
TOAST = "_toast"  # a note for the next run to show as a toast
LAST_QUERY = "_last_query"  # (label, vector) of the latest search, for the catalog map
LAST_BUILD = "_last_build"  # the summary of the build that just finished
GO_SEARCH = "_go_search"  # a catalog card asked for "more like this": switch to the search page
UPDATE_CATALOG = "update_catalog"  # the Catalog page's button that runs the recorded build again
DETAILS = "details"  # show scores, timings and model keys
PHOTO_NONCE = "_photo_nonce"  # part of the upload and camera widget keys: a new value empties them
PHOTO_REFUSED = "_photo_refused"  # why the last photo was refused, shown once after the widget is emptied
FROM_LIKE = "_from_like"  # the query product came from "More like this" (new words replace it)
UNFIT_MODELS = "_unfit_models"  # model key -> why it failed to load against this catalog
# Keys of element groups: a grid's cards key their buttons "<grid>-like-<product id>".
RESULTS_GRID, BROWSE_GRID, COMPARE_GRID_PREFIX = "results", "browse", "compare-"
MAP_CHART, EXAMPLE_PREFIX = "catalog_map", "example-"
# URL parameter of each shared field; text gets the short name search engines use.
URL_NAMES = {TEXT: "q", MODEL: "model", K: "k", BLEND: "blend", PRODUCT: "product", CATALOG: "catalog"}
# Steering (ui/steering.py): one multiselect per facet under FILTERS.<facet>, the "less of" words,
# and the products given 👍 / 👎 (lists of ids).
FILTERS, NOT_WORDS, LIKED, UNLIKED = "filters", "not_words", "liked", "unliked"
_RESTORED = "_url_restored"
URL_NOTES = "_url_notes"


@dataclass(frozen=True)
class SearchState:
    """What a shared link carries: the query and the settings that shape its results."""

    text: str = ""
    model: str = CLIP_KEY
    k: int = K_DEFAULT
    blend: float = BLEND_DEFAULT
    product: str = ""
    catalog: str = ""


def clean_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Printable characters only (any script, emoji, RTL), at most what the models read."""
    return "".join(ch for ch in text if ch.isprintable() or ch == " ")[:max_chars]


def _single(value: str | list[str] | None) -> str | None:
    """A repeated parameter counts once (its last value), as st.query_params reads it."""
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def from_query_params(
    params: Mapping[str, str | list[str]], models: Sequence[str], catalogs: Sequence[str]
) -> tuple[SearchState, list[str]]:
    """The state a link asks for, and a note for each part of it that could not be used."""
    state, notes = SearchState(catalog=catalogs[0] if catalogs else ""), []
    raw = {field: _single(params.get(name)) for field, name in URL_NAMES.items()}
    if raw[TEXT]:
        state = replace(state, text=clean_text(raw[TEXT]).strip())
    if raw[MODEL] is not None:
        if raw[MODEL] in models:
            state = replace(state, model=raw[MODEL])
        else:
            notes.append(f"The link names an unknown model; using {state.model}.")
    if raw[K] is not None:
        try:
            state = replace(state, k=min(K_MAX, max(K_MIN, int(raw[K]))))
        except ValueError:
            notes.append(f"The link's number of results is not a number; showing {state.k}.")
    if raw[BLEND] is not None:
        try:
            blend = float(raw[BLEND])
            if blend != blend:  # NaN
                raise ValueError
            state = replace(state, blend=round(round(min(1.0, max(0.0, blend)) / BLEND_STEP) * BLEND_STEP, 2))
        except ValueError:
            notes.append(f"The link's blend weight is not a number; using {state.blend}.")
    if raw[PRODUCT]:
        state = replace(state, product=clean_text(raw[PRODUCT], MAX_PRODUCT_ID_CHARS).strip())
    if raw[CATALOG] is not None:
        if raw[CATALOG] in catalogs:
            state = replace(state, catalog=raw[CATALOG])
        else:
            notes.append("The link names a catalog this server does not have; showing another one.")
    return state, notes


def to_query_params(state: SearchState, default_catalog: str) -> dict[str, str]:
    """The URL parameters for a state: only what differs from the defaults, so links stay short."""
    defaults = SearchState(catalog=default_catalog)
    params = {}
    for field in fields(SearchState):
        value = getattr(state, field.name)
        if value != getattr(defaults, field.name) and value != "":
            params[URL_NAMES[field.name]] = f"{value:g}" if isinstance(value, float) else str(value)
    return params


def restore_once(models: Sequence[str], catalogs: Sequence[str]) -> None:
    """On a session's first run, take the state from the URL; later runs keep the session's own."""
    if st.session_state.get(_RESTORED):
        return
    state, notes = from_query_params(st.query_params.to_dict(), models, catalogs)
    st.session_state.update({field.name: getattr(state, field.name) for field in fields(SearchState)})
    if state.product:
        st.session_state[IMAGE_SOURCE] = CATALOG_PRODUCT
    st.session_state[URL_NOTES] = notes
    st.session_state[_RESTORED] = True


def ensure_defaults(catalogs: Sequence[str]) -> None:
    """Give every shared key a value before its widget is drawn, on every page.

    Assigning each key to itself marks it as set by the app, which keeps it when the user
    goes to another page (Streamlit drops the state of widgets a page does not draw).
    """
    defaults = {field.name: getattr(SearchState(catalog=catalogs[0] if catalogs else ""), field.name)
                for field in fields(SearchState)}
    defaults |= {IMAGE_SOURCE: UPLOAD, THRESHOLD_ON: False, THRESHOLD: THRESHOLD_DEFAULT, CAPTIONS: True, DETAILS: False}
    for key, default in defaults.items():
        st.session_state[key] = st.session_state.get(key, default)
    if catalogs and st.session_state[CATALOG] not in catalogs:
        st.session_state[CATALOG] = catalogs[0]


def current() -> SearchState:
    """The shared part of the session's state, as the widgets hold it now."""
    product = st.session_state[PRODUCT] if st.session_state.get(IMAGE_SOURCE) == CATALOG_PRODUCT else ""
    return SearchState(
        text=clean_text(st.session_state[TEXT] or "").strip(),
        model=st.session_state[MODEL],
        k=int(st.session_state[K]),
        blend=float(st.session_state[BLEND]),
        product=product,
        catalog=st.session_state[CATALOG],
    )


def publish(state: SearchState, default_catalog: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write the state (and `extra` parameters, the steering's) to the URL, only when it changed
    (each write is a message to the browser); returns the parameters, for the share link."""
    wanted = to_query_params(state, default_catalog) | dict(extra or {})
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    return wanted


def photo_widget_key(base: str) -> str:
    """The upload or camera widget's key now; `clear_photo` moves it on, which empties the widget."""
    return f"{base}-{st.session_state.get(PHOTO_NONCE, 0)}"


def clear_photo() -> None:
    st.session_state[PHOTO_NONCE] = st.session_state.get(PHOTO_NONCE, 0) + 1


def clear_text() -> None:
    st.session_state[TEXT] = ""


def clear_product() -> None:
    st.session_state[PRODUCT] = ""
    st.session_state[FROM_LIKE] = False


def clear_all() -> None:
    clear_text()
    clear_photo()
    clear_product()


def new_words() -> None:
    """Typing after "More like this" starts a new search by words instead of blending with that product."""
    if st.session_state.get(FROM_LIKE) and st.session_state.get(TEXT):
        clear_product()
        st.session_state[IMAGE_SOURCE] = UPLOAD
