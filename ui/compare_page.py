"""Compare models: one description or photo through every model, side by side, with the overlap of their top K.

CLIP and the multilingual model read photos with the same image tower, so words tell them
apart (a German or Spanish query shows why the multilingual model exists); FashionCLIP and a
fine-tuned CLIP have towers of their own, so a photo compares them too. Each column is that
model's own search, over its own tower's image index.
"""

from __future__ import annotations

import streamlit as st

from core.models import ModelLoadError
from core.search import QueryError, SearchResult
from ui import catalog_context, messages, query_inputs, resources, results, sidebar, state

COMPARE_TEXT = "compare_text"


def render() -> None:
    st.title("Compare models", anchor=False)
    opened = catalog_context.open_catalog()
    if opened is None:
        return
    folder, engine = opened
    k = sidebar.k_slider()
    specs = sidebar.searchable_models(engine)
    st.caption(
        "The same words or photo through each model. Models with their own image tower (FashionCLIP) "
        "also see the catalog's photos their own way."
    )
    st.session_state[COMPARE_TEXT] = st.session_state.get(COMPARE_TEXT, st.session_state[state.TEXT])
    words, photo_column = st.columns([3, 2], gap="large")
    with words:
        text = state.clean_text(query_inputs.text_box(key=COMPARE_TEXT)).strip()
    with photo_column:
        photo = query_inputs.image_input(engine)
    if not text and photo is None:
        st.info("Type a description or give a photo, to see what each model finds.", icon=":material/compare:")
        return
    if not specs:
        st.info("No model here reads this catalog's photos.", icon=":material/info:")
        return
    if len(specs) < 2:
        st.info("This catalog can be searched with one model only.", icon=":material/info:")
    found: dict[str, SearchResult] = {}
    for spec in specs:
        try:
            found[spec.key] = resources.ready_engine(folder, spec.key).search(
                text=text or None,
                image=photo.data if photo else None,
                product=photo.product if photo else None,
                model=spec.key,
                k=k,
            )
        except ModelLoadError as err:
            messages.model_unavailable(err)
            return
        except QueryError as err:
            st.warning(str(err))
            return
    shared = set.intersection(*({hit.id for hit in result.hits} for result in found.values()))
    if len(found) > 1:
        st.metric(f"In the top {k} of every model", f"{len(shared)} of {k}", border=False)
    for column, spec in zip(st.columns(len(found), gap="medium"), specs):
        with column:
            result = found[spec.key]
            st.subheader(spec.key, anchor=False)
            st.caption(f"{spec.hint} {results.latency_line(result, engine.count)}")
            results.render_grid(
                result.hits,
                key=f"compare-{spec.key}",
                highlight=shared if len(found) > 1 else (),
                highlight_label="in both" if len(found) == 2 else "in all",
                min_column_width=150,
            )
