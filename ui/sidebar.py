"""Sidebar controls: which catalog and model, how many results, how to blend, how strict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.models import CLIP_KEY, MULTILINGUAL_KEY, ModelSpec, available_models
from core.search import SearchEngine
from core.weights import search_problem
from ui import state
from ui.text import plain

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


# What a shopper is told a model is for; other (local) models go by their key.
MODEL_LABELS = {CLIP_KEY: "English", MULTILINGUAL_KEY: "Any language (50+)"}


def unfit_models(engine: SearchEngine) -> dict[str, str]:
    """Model key -> why it cannot search this catalog: from the manifest (core.weights), and from
    earlier attempts in this session that failed the weights check on load."""
    found = {spec.key: problem for spec in available_models() if (problem := search_problem(spec, engine.manifest))}
    return found | st.session_state.get(state.UNFIT_MODELS, {}).get(str(engine.folder), {})


def mark_unfit(engine: SearchEngine, key: str, reason: str) -> None:
    """Remember that a model failed against this catalog, so the picker stops offering it."""
    st.session_state.setdefault(state.UNFIT_MODELS, {}).setdefault(str(engine.folder), {})[key] = reason


def searchable_models(engine: SearchEngine) -> list[ModelSpec]:
    """Models that can search this catalog: each reads photos with one of its image towers (CLIP's,
    and FashionCLIP's when the catalog was built with it) and searches that tower's own index."""
    unfit = unfit_models(engine)
    return [spec for spec in available_models() if spec.key not in unfit]


def model_label(key: str) -> str:
    return MODEL_LABELS.get(key, key)


def model_picker(engine: SearchEngine) -> str | None:
    """The model selector with a hint under it, and why any other model is missing; None when none fits."""
    specs = searchable_models(engine)
    unfit = unfit_models(engine)
    keys = [spec.key for spec in specs]
    if not keys:
        return None
    if st.session_state[state.MODEL] not in keys:
        st.session_state[state.MODEL] = keys[0]
    key = st.sidebar.selectbox("Search words in", keys, key=state.MODEL, format_func=model_label)
    st.sidebar.caption(next(spec.hint for spec in specs if spec.key == key))
    if unfit:  # said, but folded away: the reasons name model keys and index facts
        with st.sidebar.expander("Why not other models?", icon=":material/info:"):
            st.caption(
                "Not offered for this catalog: "
                + "; ".join(f"{plain(model_label(name))}, because {plain(reason)}" for name, reason in unfit.items()) + "."
            )
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
        "Match product names too",
        key=state.CAPTIONS,
        help="Words are also compared with the product names, and both rankings are merged.",
    )
    details_toggle()
    return SearchOptions(threshold=threshold, use_captions=use_captions)


def details_toggle() -> bool:
    """Scores, timings and model keys, for whoever runs the booth; shoppers do not need them."""
    return st.sidebar.toggle("Show details", key=state.DETAILS, help="Scores, timings and which model answered.")
