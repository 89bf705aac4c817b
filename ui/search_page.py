"""The search page: sidebar settings, words and/or a photo, and the result grid."""

from __future__ import annotations

import streamlit as st

from core.images import ImageError
from core.index import IndexMismatchError
from core.models import MULTILINGUAL_KEY, ModelLoadError
from core.search import QueryError, SearchEngine, SearchResult
from ui import catalog_context, first_run, messages, query_inputs, resources, results, sidebar, state
from ui.query_inputs import ImageQuery
from ui.sidebar import SearchOptions
from ui.text import plain


LAST_QUERY = "_last_query"  # (label, vector) of the latest search, for the catalog map


def render() -> None:
    """Draw the page for this run; every failure ends in a message, never a traceback."""
    opened = catalog_context.open_catalog(when_none=lambda: first_run.render(resources.index_root()))
    if opened is None:
        return
    folder, engine = opened
    first_run.show_last_build()
    for note in st.session_state.pop(state.URL_NOTES, []):
        st.toast(note, icon=":material/link_off:")
    if toast := st.session_state.pop(query_inputs.TOAST, None):
        st.toast(toast, icon=":material/translate:")
    model = sidebar.model_picker(engine)
    options = sidebar.result_controls()
    try:
        engine = resources.ready_engine(folder, model)
    except ModelLoadError as err:
        messages.model_unavailable(err)
        return
    except IndexMismatchError as err:
        messages.problem(f"The catalog '{folder.name}' does not fit this model.", err)
        return

    _header(engine)
    words, photo = st.columns([3, 2], gap="large")
    with words:
        query_inputs.text_box(
            switch_to_multilingual=any(spec.key == MULTILINGUAL_KEY for spec in sidebar.searchable_models(engine))
        )
    with photo:
        image = query_inputs.image_input(engine)
    current = state.current()
    state.publish(current, resources.default_catalog(resources.catalog_folders()).name)
    if not current.text and image is None:
        results.render_empty_state()
        return
    result = _search(engine, current, image, options)
    if result is None:
        return
    st.session_state[LAST_QUERY] = (_query_label(current.text, image), result.query_vector)
    st.caption(results.latency_line(result, engine.count))
    if result.hits:
        results.render_grid(result.hits, key="results", on_more_like_this=query_inputs.use_product)
    else:
        results.render_no_hits(result, options.threshold)


def _header(engine: SearchEngine) -> None:
    catalog = engine.manifest.catalog
    st.title("Vitrine", anchor=False)
    st.caption(
        f"{catalog.get('products', engine.count):,} products in “{plain(str(catalog.get('name', '')))}” · "
        "search by words, by photo, or both"
    )


def _search(
    engine: SearchEngine, current: state.SearchState, image: ImageQuery | None, options: SearchOptions
) -> SearchResult | None:
    """Run the query; bad input becomes a message and the page keeps working."""
    try:
        return engine.search(
            text=current.text or None,
            image=image.data if image else None,
            like=image.product if image else None,
            model=current.model,
            blend=current.blend,
            k=current.k,
            threshold=options.threshold,
            use_captions=options.use_captions,
        )
    except (QueryError, ImageError) as err:
        st.warning(plain(str(err)), icon=":material/info:")
    except ModelLoadError as err:
        messages.model_unavailable(err)
    except IndexMismatchError as err:
        messages.problem("This catalog does not fit the model.", err)
    return None


def _query_label(text: str, image: ImageQuery | None) -> str:
    parts = [f"“{text[:40]}”" if text else "", image.label[:40] if image else ""]
    return " + ".join(part for part in parts if part)
