"""Compare models: one description through every model, side by side, with the overlap of their top K.

Both models read photos with the same CLIP image tower, so only words can tell them apart:
this page is where a German or Spanish query shows why the multilingual model exists.
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
        "The same words through each model. Photos are read by the same image tower in every model, "
        "so the difference is all in how the words are understood."
    )
    st.session_state[state.COMPARE_TEXT] = st.session_state.get(state.COMPARE_TEXT, st.session_state[state.TEXT])
    text = state.clean_text(query_inputs.text_box(key=state.COMPARE_TEXT)).strip()
    if not text:
        st.info("Type a description, or pick an example, to see what each model finds.", icon=":material/compare:")
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
                text=text, model=spec.key, k=variants.fetch_size(k)
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
