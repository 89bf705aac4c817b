"""Results as a responsive grid of product cards, and the honest states around it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import streamlit as st

from core.search import Hit, SearchResult
from ui import thumbnails
from ui.labels import is_blank
from ui.text import plain
from ui.variants import Card

# Metadata most telling on a product card, in this order; other keys follow.
CHIP_KEYS = ("gender", "articleType", "subCategory", "baseColour", "season", "usage", "masterCategory")
MAX_CHIPS = 3
CAPTION_CHARS = 70
MODES = {"text": "words", "image": "photo", "blend": "words + photo"}
RELEVANCE_DOTS = 5


def metadata_chips(metadata: dict[str, str], limit: int = MAX_CHIPS) -> list[str]:
    """The few metadata values worth a chip: preferred keys first, no repeats, no blanks."""
    preferred = [metadata.get(key, "") for key in CHIP_KEYS]
    others = [value for key, value in metadata.items() if key not in CHIP_KEYS]
    chips = list(dict.fromkeys(str(value).strip() for value in preferred + others if not is_blank(value)))
    return chips[:limit]


def latency_line(result: SearchResult, catalog_size: int, shown: int, details: bool = False) -> str:
    """How many products, found how; with details, where the time went (encoding, searching, in all)."""
    line = f"{shown} of {catalog_size:,} products by {MODES.get(result.mode, result.mode)}"
    if not details:
        return line
    t = result.timings_ms
    encode = t.get("decode", 0.0) + t.get("encode_image", 0.0) + t.get("encode_text", 0.0)
    search = t.get("search", 0.0) + t.get("merge", 0.0)
    return (
        f"{line} · model {result.model} · encode {encode:.1f} ms · search {search:.1f} ms · "
        f"total {t.get('total', encode + search):.1f} ms"
    )


def relevance(hit: Hit, best: float) -> int:
    """1 to 5 dots from the hit's fused value against the best one's (the value the list is ordered
    by, so the cue never disagrees with the order): half of the best or less is one dot."""
    if best <= 0:
        return 1
    share = hit.rank_score / best
    return max(1, min(RELEVANCE_DOTS, 1 + round((RELEVANCE_DOTS - 1) * (share - 0.5) / 0.5)))


def render_grid(
    cards: Sequence[Card],
    *,
    key: str,
    on_more_like_this: Callable[[str], None] | None = None,
    details: bool = False,
    show_relevance: bool = True,
    highlight: Collection[str] = (),
    highlight_label: str = "",
    min_column_width: int = 180,
    card_footer: Callable[[Hit, str], None] | None = None,
) -> None:
    """One card per product: photo, name, relevance, tags, variants, "more like this", then
    `card_footer(hit, key)` if given (the search page's 👍/👎)."""
    grid = st.grid(columns="auto", min_column_width=min_column_width, gap="small", border=True, key=key)
    best = max((card.hit.rank_score for card in cards), default=0.0)
    for rank, (card, card_key) in enumerate(zip(cards, card_keys(key, [card.hit for card in cards])), 1):
        with grid.cell():
            if photo := thumbnails.source(card.hit.thumbnail):
                st.image(photo, width="content")
            else:  # the thumbnail file is gone or damaged: say so in its place
                st.caption(":material/hide_image: No photo")
            cue = relevance(card.hit, best) if show_relevance else 0
            label = highlight_label if card.hit.id in highlight else ""
            st.markdown(card_text(card, rank, cue, details, label))
            if on_more_like_this is not None:
                st.button(
                    "More like this",
                    key=card_key,
                    icon=":material/image_search:",
                    on_click=on_more_like_this,
                    args=(card.hit.id,),
                    type="tertiary",
                )
            if card_footer is not None:
                card_footer(card.hit, key)


def card_keys(prefix: str, hits: Sequence[Hit]) -> list[str]:
    """A widget key per card, unique per row: `{prefix}-like-{id}`, and for a further photo of the
    same product (several rows share its id) its row number after a '#'."""
    seen: set[str] = set()
    keys = []
    for hit in hits:
        keys.append(f"{prefix}-like-{hit.id}" + (f"#{hit.row}" if hit.id in seen else ""))
        seen.add(hit.id)
    return keys


def card_text(card: Card, rank: int, cue: int, details: bool, highlight_label: str = "") -> str:
    """The card's words in one Markdown block (one element per card keeps reruns light)."""
    hit = card.hit
    lines = [f"**{plain(hit.caption or hit.id, CAPTION_CHARS)}**"]
    if cue:
        lines.append(f":orange[{'●' * cue}]:gray[{'○' * (RELEVANCE_DOTS - cue)}]")
    tags = [f":blue-badge[:material/check: {plain(highlight_label)}]"] if highlight_label else []
    tags += [f":gray-badge[{plain(chip, 24)}]" for chip in metadata_chips(hit.metadata)]
    if card.variants > 1:
        tags.append(f":violet-badge[{card.variants} variants]")
    if tags:
        lines.append(" ".join(tags))
    if details:
        lines.append(
            f":gray[\\#{rank} · photo cosine {hit.score:.2f} · fused {hit.rank_score:.4f} · "
            f"ranked by {' + '.join(hit.matched) or 'browse'} · id {plain(hit.id, 24)}]"
        )
    return "  \n".join(lines)


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
