"""Compare models: one description or photo through every model, side by side, with the overlap of their top K.

CLIP and the multilingual model read photos with the same image tower, so words tell them
apart (a German or Spanish query shows why the multilingual model exists); FashionCLIP and a
fine-tuned CLIP have towers of their own, so a photo compares them too. Each column is that
model's own search, over its own tower's image index.
"""

from __future__ import annotations

import streamlit as st

from core.index import IndexMismatchError
from core.models import ModelLoadError
from core.search import QueryError, SearchResult
from ui.text import plain
from ui import catalog_context, messages, query_inputs, resources, results, sidebar, state, variants


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
    st.session_state[state.COMPARE_TEXT] = st.session_state.get(state.COMPARE_TEXT, st.session_state[state.TEXT])
    words, photo_column = st.columns([3, 2], gap="large")
    with words:
        text = state.clean_text(query_inputs.text_box(key=state.COMPARE_TEXT)).strip()
    with photo_column:
        photo = query_inputs.image_input(engine)
    if not text and photo is None:
        st.info("Type a description or give a photo, to see what each model finds.", icon=":material/compare:")
        return
    if not specs:
        messages.no_model_fits(folder.name, sidebar.unfit_models(engine))
        return
    if len(specs) < 2:
        st.info("This catalog can be searched with one model only.", icon=":material/info:")
    groups = variants.for_engine(engine)
    found: dict[str, list[variants.Card]] = {}
    results_of: dict[str, SearchResult] = {}
    for spec in specs:
        try:
            result = resources.ready_engine(folder, spec.key).search(
                text=text or None,
                image=photo.data if photo else None,
                product=photo.product if photo else None,
                model=spec.key,
                k=variants.fetch_size(k),
            )
        except ModelLoadError as err:
            messages.model_unavailable(err)
            return
        except IndexMismatchError as err:  # the weights differ from the ones the catalog was built with
            sidebar.mark_unfit(engine, spec.key, str(err))
            st.rerun()
        except QueryError as err:
            st.warning(plain(str(err)))
            return
        results_of[spec.key], found[spec.key] = result, variants.cards(result.hits, groups, k)
    shared = set.intersection(*({card.hit.id for card in cards} for cards in found.values()))
    if len(found) > 1:
        st.metric(f"In the top {k} of every model", f"{len(shared)} of {k}", border=False)
    details = bool(st.session_state.get(state.DETAILS))
    for column, spec in zip(st.columns(len(found), gap="medium"), specs):
        with column:
            st.subheader(spec.key, anchor=False)
            line = results.latency_line(results_of[spec.key], engine.manifest.product_count, len(found[spec.key]), details)
            st.caption(f"{spec.hint} {line}")
            results.render_grid(
                found[spec.key],
                details=details,
                key=f"{state.COMPARE_GRID_PREFIX}{spec.key}",
                highlight=shared if len(found) > 1 else (),
                highlight_label="in both" if len(found) == 2 else "in all",
                min_column_width=150,
            )
