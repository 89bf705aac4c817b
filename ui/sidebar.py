"""Sidebar controls: which catalog and model, how many results, how to blend, how strict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.models import ModelSpec, available_models
from core.search import SearchEngine
from ui import state

# Cosines between a query and product photos with CLIP ViT-B/32 (both models share its space).
TYPICAL_SCORES = "Typical scores: words → photo 0.20–0.35, photo → photo 0.50–0.95."


@dataclass(frozen=True)
class SearchOptions:
    """The settings that shape results but are not part of a shared link."""

    threshold: float | None
    use_captions: bool


def catalog_picker(folders: list[Path]) -> Path:
    """The chosen catalog; the selector appears only when there is a choice."""
    names = [folder.name for folder in folders]
    if len(folders) > 1:
        st.sidebar.selectbox("Catalog", names, key=state.CATALOG)
    return folders[names.index(st.session_state[state.CATALOG])]


def searchable_models(engine: SearchEngine) -> list[ModelSpec]:
    """Models that read photos with one of this index's image towers (CLIP's, and FashionCLIP's
    when the catalog was built with it): each searches its own tower's image index."""
    towers = engine.reader.image_towers
    return [spec for spec in available_models() if spec.image_tower in towers]


def model_picker(engine: SearchEngine) -> str:
    """The model selector with a one-line hint under it."""
    specs = searchable_models(engine)
    keys = [spec.key for spec in specs]
    if st.session_state[state.MODEL] not in keys:
        st.session_state[state.MODEL] = keys[0]
    key = st.sidebar.selectbox("Model", keys, key=state.MODEL)
    st.sidebar.caption(next(spec.hint for spec in specs if spec.key == key))
    return key


def k_slider() -> int:
    """How many results: one setting for every page."""
    return st.sidebar.slider("Results (K)", state.K_MIN, state.K_MAX, step=1, key=state.K)


def result_controls() -> SearchOptions:
    """K, blend weight, optional threshold and caption matching."""
    k_slider()
    st.sidebar.slider(
        "Blend: photo ↔ words", 0.0, 1.0, step=state.BLEND_STEP, key=state.BLEND
    )
    st.sidebar.caption("With a photo and words: 0 searches by the photo alone, 1 by the words alone.")
    threshold = None
    if st.sidebar.toggle("Only confident matches", key=state.THRESHOLD_ON):
        threshold = st.sidebar.slider(
            "Minimum similarity", 0.0, 1.0, step=0.01, key=state.THRESHOLD
        )
        st.sidebar.caption(TYPICAL_SCORES)
    use_captions = st.sidebar.checkbox(
        "Match captions too",
        key=state.CAPTIONS,
        help="Words are also compared with the product captions, and both rankings are merged.",
    )
    return SearchOptions(threshold=threshold, use_captions=use_captions)
