"""What the page is searching with, said plainly, with a button to clear each part."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.query_inputs import ImageQuery
from ui.text import plain

LABEL_CHARS = 32


def render(summary: str, text: str, image: ImageQuery | None, blend: float) -> None:
    """One row: what was found, and a clear button per part of the query (words, photo, product),
    with the blend when there are both."""
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key="query_bar"):
        st.caption(f"{summary} · searching with", width="content")
        if text:
            st.button(f"“{plain(text, LABEL_CHARS)}”", key="clear_text", icon=":material/close:",
                      on_click=state.clear_text, help="Clear the words")
        if image is not None and image.product is not None:
            st.button(f"product: {plain(image.label, LABEL_CHARS)}", key="clear_product", icon=":material/close:",
                      on_click=state.clear_product, help="Clear the product")
        elif image is not None:
            st.button(f"photo: {plain(image.label, LABEL_CHARS)}", key="clear_photo", icon=":material/close:",
                      on_click=state.clear_photo, help="Clear the photo")
        if text and image is not None:
            st.caption(f"blended {1 - blend:.0%} photo, {blend:.0%} words", width="content")
        if text and image is not None:
            st.button("Clear all", key="clear_all", on_click=state.clear_all, type="tertiary")
