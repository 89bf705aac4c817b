"""Results as a responsive grid of product cards, and the honest states around it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import streamlit as st

from core.search import Hit, SearchResult
from ui.text import plain

# Metadata most telling on a product card, in this order; other keys follow.
CHIP_KEYS = ("gender", "articleType", "subCategory", "baseColour", "season", "usage", "masterCategory")
MAX_CHIPS = 3
CAPTION_CHARS = 70
MODES = {"text": "words", "image": "photo", "blend": "words + photo"}


def metadata_chips(metadata: dict[str, str], limit: int = MAX_CHIPS) -> list[str]:
    """The few metadata values worth a chip: preferred keys first, no repeats, no blanks."""
    preferred = [metadata.get(key, "") for key in CHIP_KEYS]
    others = [value for key, value in metadata.items() if key not in CHIP_KEYS]
    chips = list(dict.fromkeys(str(value).strip() for value in preferred + others if str(value).strip()))
    return chips[:limit]


def latency_line(result: SearchResult, catalog_size: int) -> str:
    """Where the time went: encoding the query, searching the index, and the whole query."""
    t = result.timings_ms
    encode = t.get("decode", 0.0) + t.get("encode_image", 0.0) + t.get("encode_text", 0.0)
    search = t.get("search", 0.0) + t.get("merge", 0.0)
    return (
        f"{len(result.hits)} of {catalog_size:,} products by {MODES.get(result.mode, result.mode)} · "
        f"encode {encode:.1f} ms · search {search:.1f} ms · total {t.get('total', encode + search):.1f} ms"
    )


def render_grid(
    hits: Sequence[Hit],
    *,
    key: str,
    on_more_like_this: Callable[[str], None] | None = None,
    show_score: bool = True,
    highlight: Collection[str] = (),
    highlight_label: str = "",
    min_column_width: int = 180,
) -> None:
    """One card per hit: photo, caption (as text), score, metadata chips, "more like this"."""
    grid = st.grid(columns="auto", min_column_width=min_column_width, gap="small", border=True, key=key)
    for rank, (hit, card_key) in enumerate(zip(hits, card_keys(key, hits)), 1):
        with grid.cell():
            _card(hit, rank, card_key, on_more_like_this, show_score, hit.id in highlight, highlight_label)


def card_keys(prefix: str, hits: Sequence[Hit]) -> list[str]:
    """A widget key per card, unique per row: `{prefix}-like-{id}`, and for a further photo of the
    same product (several rows share its id) its row number after a '#'."""
    seen: set[str] = set()
    keys = []
    for hit in hits:
        keys.append(f"{prefix}-like-{hit.id}" + (f"#{hit.row}" if hit.id in seen else ""))
        seen.add(hit.id)
    return keys


def _card(
    hit: Hit,
    rank: int,
    key: str,
    on_more_like_this: Callable[[str], None] | None,
    show_score: bool,
    highlighted: bool,
    label: str,
) -> None:
    if hit.thumbnail:
        st.image(hit.thumbnail, width="stretch")
    else:  # the thumbnail file is gone: say so in its place
        st.caption(":material/hide_image: No photo")
    st.markdown(f"**{plain(hit.caption or hit.id, CAPTION_CHARS)}**")
    if show_score:
        matched = " · caption ✓" if "caption" in hit.matched else ""
        st.caption(f"\\#{rank} · score {hit.score:.2f}{matched}")
    with st.container(horizontal=True, gap="xxsmall"):
        if highlighted:
            st.badge(label, color="blue", icon=":material/check:")
        for chip in metadata_chips(hit.metadata):
            st.badge(plain(chip, 24), color="gray")
    if on_more_like_this is not None:
        st.button(
            "More like this",
            key=key,
            icon=":material/image_search:",
            on_click=on_more_like_this,
            args=(hit.id,),
            type="tertiary",
        )


def render_no_hits(result: SearchResult, threshold: float | None) -> None:
    """Say why the grid is empty: the threshold dropped everything, or nothing was found."""
    if result.below_threshold and threshold is not None:
        st.warning(
            f"**No confident match.** The closest {result.below_threshold} products score below "
            f"{threshold:.2f}. Lower the minimum similarity in the sidebar, or try other words.",
            icon=":material/search_off:",
        )
    else:
        st.info("No products to show for this query.", icon=":material/search_off:")


def render_empty_state() -> None:
    """Before any query: say what to do."""
    st.info(
        "Describe a product in your own words (English, Deutsch, français, español, …), add a photo, "
        "or both: the closest products of the catalog appear here.",
        icon=":material/travel_explore:",
    )
