"""The search page: sidebar settings, words and/or a photo, what is searched, and the result grid."""

from __future__ import annotations

import streamlit as st

from core.api_client import ApiUnavailable
from core.images import ImageError
from core.index import IndexMismatchError
from core.models import MULTILINGUAL_KEY, ModelLoadError
from core.search import QueryError, SearchEngine, SearchResult
from ui import catalog_context, first_run, messages, query_bar, query_inputs, resources, results, share, sidebar, state
from ui import steering, variants
from ui.query_inputs import ImageQuery
from ui.sidebar import SearchOptions
from ui.text import plain


def render() -> None:
    """Draw the page for this run; every failure ends in a message, never a traceback."""
    opened = catalog_context.open_catalog(when_none=lambda: first_run.render(resources.index_root()))
    if opened is None:
        return
    folder, engine = opened
    first_run.show_last_build()
    for note in st.session_state.pop(state.URL_NOTES, []):
        st.toast(note, icon=":material/link_off:")
    if toast := st.session_state.pop(state.TOAST, None):
        st.toast(toast, icon=":material/translate:")
    model = sidebar.model_picker(engine)
    options = sidebar.result_controls()
    if model is None:
        messages.no_model_fits(folder.name, sidebar.unfit_models(engine))
        return
    try:
        engine = resources.ready_engine(folder, model)
    except ModelLoadError as err:
        messages.model_unavailable(err)
        return
    except IndexMismatchError as err:
        _drop_model(engine, model, err)

    _header(engine)
    words, photo = st.columns([3, 2], gap="medium")
    with words:
        query_inputs.text_box(
            switch_to_multilingual=any(spec.key == MULTILINGUAL_KEY for spec in sidebar.searchable_models(engine))
        )
    with photo:
        image = query_inputs.image_input(engine)
    steer = steering.controls(engine.reader.facets)
    current = state.current()
    share.render(state.publish(current, resources.default_catalog(resources.catalog_folders()).name, steering.to_query_params(steer)))
    if not current.text and image is None and not steer.liked:
        results.render_empty_state()
        return
    groups = variants.for_engine(engine)
    result = _search(engine, current, image, options, steer, groups)
    if result is None:
        return
    st.session_state[state.LAST_QUERY] = (_query_label(current.text, image), result.query_vector)
    cards = variants.cards(result.hits, groups, current.k)
    details = bool(st.session_state.get(state.DETAILS))
    summary = results.latency_line(result, engine.manifest.product_count, len(cards), details)
    query_bar.render(summary, current.text, image, current.blend)
    if cards:
        results.render_grid(cards, key=state.RESULTS_GRID, on_more_like_this=query_inputs.use_product, details=details,
                            card_footer=steering.feedback_buttons)
    elif result.matching == 0:
        steering.render_no_match(steer)
    else:
        results.render_no_hits(result, options.threshold)


def _drop_model(engine: SearchEngine, model: str, err: Exception) -> None:
    """A model that fails the weights check is not offered again; the page reruns with another one."""
    sidebar.mark_unfit(engine, model, str(err))
    st.session_state[state.TOAST] = f"{sidebar.model_label(model)} cannot search this catalog; using another model."
    st.rerun()


def _header(engine: SearchEngine) -> None:
    manifest = engine.manifest
    with st.container(horizontal=True, vertical_alignment="bottom", key="page_header"):
        st.title("Vitrine", anchor=False, width="content")
        st.caption(f"{manifest.product_count:,} products in “{plain(manifest.name)}” · search by words, by photo, or both")


def _search(
    engine: SearchEngine,
    current: state.SearchState,
    image: ImageQuery | None,
    options: SearchOptions,
    steer: steering.Steering,
    groups: variants.Variants,
) -> SearchResult | None:
    """Run the query; bad input becomes a message and the page keeps working."""
    like = image.product if image else None
    # "More like this" leaves out the product and every variant of it.
    exclude = groups.siblings([like], engine.reader.rows_of(like).tolist()) if like else []
    try:
        return engine.search(
            text=current.text or None,
            image=image.data if image else None,
            product=like,
            exclude_ids=exclude,
            model=current.model,
            blend=current.blend,
            k=variants.fetch_size(current.k),
            threshold=options.threshold,
            use_captions=options.use_captions,
            **steer.search_arguments(),
        )
    except (QueryError, ImageError) as err:
        st.warning(plain(str(err)), icon=":material/info:")
    except ModelLoadError as err:
        messages.model_unavailable(err)
    except IndexMismatchError as err:
        _drop_model(engine, current.model, err)
    except ApiUnavailable as err:  # a thin front end's API (VITRINE_API_URL) stopped answering
        messages.problem("The search service cannot be reached.", err)
    return None


def _query_label(text: str, image: ImageQuery | None) -> str:
    parts = [f"“{text[:40]}”" if text else "", image.label[:40] if image else ""]
    return " + ".join(part for part in parts if part)
