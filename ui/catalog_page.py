"""Catalog: what the index holds, browsing by metadata, and where the latest query lands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.search import SearchEngine
from ui import catalog_context, catalog_map, first_run, query_inputs, results, state, steering
from ui.text import plain
from ui.variants import Card

PAGE_SIZE = 24


def render() -> None:
    if st.session_state.pop(state.GO_SEARCH, False):
        st.switch_page("app.py")
    st.title("Catalog", anchor=False)
    opened = catalog_context.open_catalog()
    if opened is None:
        return
    _, engine = opened
    _facts(engine)
    st.subheader("Browse", anchor=False)
    _browse(engine)
    st.subheader("Map of the photos", anchor=False)
    catalog_map.render_map(engine, st.session_state.get(state.LAST_QUERY))


def _facts(engine: SearchEngine) -> None:
    """Items, models, build date and HNSW settings, as the manifest records them."""
    manifest = engine.manifest
    with st.container(horizontal=True):
        st.metric("Products", f"{manifest.product_count:,}", border=True)
        st.metric("Photos", f"{engine.reader.count:,}", border=True)
        st.metric("Models", len(manifest.models) or len(engine.models), border=True)
        st.metric("Updated" if manifest.changes else "Built", manifest.created_at[:10], border=True,
                  help=manifest.created_at)
        st.metric(
            "HNSW", f"M {manifest.hnsw.m}", border=True,
            help=f"ef_construction {manifest.hnsw.ef_construction}, ef_search {manifest.hnsw.ef_search}",
        )
    indexes = ", ".join(f"{entry.modality} × {entry.encoder} ({entry.count:,}, {entry.dim}-d)" for entry in manifest.entries)
    st.caption(
        f"Source: {plain(manifest.source or '?')} · skipped rows: {manifest.skipped_count:,} · "
        f"HNSW M {manifest.hnsw.m}, ef_construction {manifest.hnsw.ef_construction}, "
        f"ef_search {manifest.hnsw.ef_search} · indexes: {plain(indexes)}"
    )
    if manifest.changes:
        st.caption(update_line(manifest.changes, manifest.created_at))
    first_run.update_action(engine.folder, "recipe" in manifest.catalog)


def update_line(changes: dict[str, int], when: str) -> str:
    """What the last update of the catalog changed, as the builder counted it."""
    return (
        f"Last update ({when[:16].replace('T', ' ')} UTC): {changes.get('added', 0):,} products added, "
        f"{changes.get('changed', 0):,} changed, {changes.get('removed', 0):,} removed, "
        f"{changes.get('unchanged', 0):,} unchanged."
    )


def _browse(engine: SearchEngine) -> None:
    """Filters by metadata and caption words, then a page of matching products."""
    table = _metadata_table(str(engine.folder), engine.manifest.version, engine)
    keep = np.ones(len(table), dtype=bool)
    facets = steering.offered(engine.reader.facets)  # the search page's facets, with product counts
    with st.container(horizontal=True):
        words = st.text_input("Caption contains", key=state.BROWSE_WORDS, width=240)
        for name, facet in facets.items():
            chosen = steering.facet_filter(name, facet, f"{state.BROWSE_PREFIX}{name}")
            if chosen:
                keep &= table[name].isin(chosen).to_numpy()
    if words.strip():
        keep &= table["caption"].str.contains(words.strip(), case=False, regex=False).to_numpy()
    rows = np.flatnonzero(keep)
    st.caption(f"{len(rows):,} of {len(table):,} photos match.")
    if not len(rows):
        return
    pages = -(-len(rows) // PAGE_SIZE)
    page = st.pagination(pages, key=state.BROWSE_PAGE) if pages > 1 else 1
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    cards = [Card(engine.reader.hit(int(row)), 1) for row in shown]
    results.render_grid(
        cards, key=state.BROWSE_GRID, on_more_like_this=_more_like_this, show_relevance=False, min_column_width=150,
        details=bool(st.session_state.get(state.DETAILS)),
    )


@st.cache_resource(max_entries=4, show_spinner=False)
def _metadata_table(folder: str, built_at: str, _engine: SearchEngine) -> pd.DataFrame:
    return _engine.reader.metadata_table()


def _more_like_this(item_id: str) -> None:
    """From the catalog to the search page, with this product as the query photo."""
    query_inputs.use_product(item_id)
    st.session_state[state.GO_SEARCH] = True
