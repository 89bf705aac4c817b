"""Catalog: what the index holds, browsing by metadata, and where the latest query lands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.search import SearchEngine
from ui import catalog_context, catalog_map, query_inputs, results, search_page
from ui.text import plain

PAGE_SIZE = 24
MAX_FILTER_VALUES = 40
GO_SEARCH = "_go_search"


def render() -> None:
    if st.session_state.pop(GO_SEARCH, False):
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
    catalog_map.render_map(engine, st.session_state.get(search_page.LAST_QUERY))


def _facts(engine: SearchEngine) -> None:
    """Items, models, build date and HNSW settings, as the manifest records them."""
    manifest = engine.manifest
    catalog = manifest.catalog
    with st.container(horizontal=True):
        st.metric("Products", f"{catalog.get('products', engine.count):,}", border=True)
        st.metric("Photos", f"{engine.count:,}", border=True)
        st.metric("Models", len(manifest.models) or len(engine.models), border=True)
        st.metric("Built", manifest.created_at[:10], border=True, help=manifest.created_at)
        st.metric(
            "HNSW", f"M {manifest.hnsw.m}", border=True,
            help=f"ef_construction {manifest.hnsw.ef_construction}, ef_search {manifest.hnsw.ef_search}",
        )
    indexes = ", ".join(f"{entry.modality} × {entry.encoder} ({entry.count:,}, {entry.dim}-d)" for entry in manifest.entries)
    st.caption(
        f"Source: {plain(str(catalog.get('source', '?')))} · skipped rows: {catalog.get('skipped', 0)} · "
        f"HNSW M {manifest.hnsw.m}, ef_construction {manifest.hnsw.ef_construction}, "
        f"ef_search {manifest.hnsw.ef_search} · indexes: {plain(indexes)}"
    )


def filter_columns(table: pd.DataFrame) -> list[str]:
    """Metadata columns worth a filter: more than one value, few enough to list."""
    return [
        name for name in table.columns[2:]
        if 2 <= table[name].replace("", np.nan).nunique() <= MAX_FILTER_VALUES
    ]


def _browse(engine: SearchEngine) -> None:
    """Filters by metadata and caption words, then a page of matching products."""
    table = _metadata_table(str(engine.folder), engine.manifest.created_at, engine)
    keep = np.ones(len(table), dtype=bool)
    columns = filter_columns(table)
    with st.container(horizontal=True):
        words = st.text_input("Caption contains", key="browse_words", width=240)
        for name in columns:
            values = sorted(value for value in table[name].unique() if value)
            chosen = st.multiselect(plain(name, 40), values, key=f"browse_{name}", width=200)  # a CSV header
            if chosen:
                keep &= table[name].isin(chosen).to_numpy()
    if words.strip():
        keep &= table["caption"].str.contains(words.strip(), case=False, regex=False).to_numpy()
    rows = np.flatnonzero(keep)
    st.caption(f"{len(rows):,} of {len(table):,} photos match.")
    if not len(rows):
        return
    pages = -(-len(rows) // PAGE_SIZE)
    page = st.pagination(pages, key="browse_page") if pages > 1 else 1
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    hits = [engine.reader.hit(int(row)) for row in shown]
    results.render_grid(hits, key="browse", on_more_like_this=_more_like_this, show_score=False, min_column_width=150)


@st.cache_resource(max_entries=4, show_spinner=False)
def _metadata_table(folder: str, built_at: str, _engine: SearchEngine) -> pd.DataFrame:
    return _engine.reader.metadata_table()


def _more_like_this(item_id: str) -> None:
    """From the catalog to the search page, with this product as the query photo."""
    query_inputs.use_product(item_id)
    st.session_state[GO_SEARCH] = True
