"""A 2-D map of the catalog's photo vectors (PCA), with the latest query placed among them."""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.projection import Projection
from core.search import SearchEngine
from ui import state
from ui.labels import facet_label

MAP_POINTS = 3000  # enough to see the shape; more only slows the browser
MAX_COLOURS = 20
PREFERRED_COLOUR_KEYS = ("masterCategory", "subCategory", "gender", "articleType", "usage", "season")
QUERY_COLOUR = "#C2410C"


@dataclass(frozen=True)
class CatalogMap:
    projection: Projection
    points: pd.DataFrame  # x, y, caption and metadata of a spread of photos


def colour_columns(table: pd.DataFrame) -> list[str]:
    """Metadata columns that colour a map well: a few distinct values, preferred keys first."""
    usable = [
        name for name in table.columns
        if name not in ("x", "y", "id", "caption") and 2 <= table[name].replace("", np.nan).nunique() <= MAX_COLOURS
    ]
    preferred = [name for name in PREFERRED_COLOUR_KEYS if name in usable]
    return preferred + [name for name in usable if name not in preferred]


@st.cache_resource(max_entries=4, show_spinner="Drawing the catalog map…")
def catalog_map(folder: str, built_at: str, _engine: SearchEngine) -> CatalogMap:
    """Fitted on every photo vector, drawn for an even spread of them; once per index."""
    vectors = np.asarray(_engine.reader.image_vectors, dtype=np.float32)
    projection = Projection.fit(vectors)
    rows = np.unique(np.linspace(0, len(vectors) - 1, min(MAP_POINTS, len(vectors))).astype(int))
    points = _engine.reader.metadata_table().iloc[rows].reset_index(drop=True)
    xy = projection.transform(vectors[rows])
    points.insert(0, "y", xy[:, 1])
    points.insert(0, "x", xy[:, 0])
    return CatalogMap(projection, points)


def render_map(engine: SearchEngine, query: tuple[str, np.ndarray] | None) -> None:
    """The photo cloud coloured by a metadata column, and the query as a marked point."""
    built_at = engine.manifest.version
    cmap = catalog_map(str(engine.folder), built_at, engine)
    columns = colour_columns(cmap.points)
    colour = st.selectbox("Colour by", columns, key=state.MAP_COLOUR, width=280, format_func=facet_label) if columns else None
    # chart fields get fixed names: Vega-Lite reads '.', ':' and brackets in a name as syntax
    data = cmap.points[["x", "y", "caption"]].assign(group=cmap.points[colour] if colour else "")
    x_share, y_share = cmap.projection.explained
    base = alt.Chart(data).encode(
        x=alt.X("x:Q", title=f"first principal axis ({x_share:.0%} of the variance)", axis=alt.Axis(labels=False)),
        y=alt.Y("y:Q", title=f"second principal axis ({y_share:.0%})", axis=alt.Axis(labels=False)),
    )
    points = base.mark_circle(size=30, opacity=0.6).encode(
        color=alt.Color("group:N", title=facet_label(colour) if colour else None, legend=alt.Legend(orient="bottom", columns=6))
        if colour else alt.value("#8C8C8C"),
        tooltip=[alt.Tooltip("caption:N", title="product")]
        + ([alt.Tooltip("group:N", title=facet_label(colour))] if colour else []),
    )
    layers = [points]
    if query is not None and query[1] is not None and len(query[1]) == cmap.projection.mean.shape[0]:
        x, y = cmap.projection.transform(query[1])[0]
        marker = pd.DataFrame({"x": [float(x)], "y": [float(y)], "label": [f"your query: {query[0]}"]})
        spot = alt.Chart(marker).encode(x="x:Q", y="y:Q")
        layers += [
            spot.mark_point(shape="diamond", size=420, filled=True, color=QUERY_COLOUR, stroke="white", strokeWidth=2)
            .encode(tooltip=["label:N"]),
            spot.mark_text(dy=-22, fontWeight="bold", fontSize=13, color=QUERY_COLOUR).encode(text="label:N"),
        ]
    st.altair_chart(alt.layer(*layers), height=520, key=state.MAP_CHART)
    if query is None:
        st.caption("Search on the search page, and your query appears on this map.")
    else:
        st.caption(
            "A photo query lands among similar photos. Words and photos occupy different regions of CLIP's "
            "space (the 'modality gap'), so a worded query can land away from the photos it matches."
        )
