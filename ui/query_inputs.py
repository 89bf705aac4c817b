"""The two ways to ask: words (with clickable examples in four languages) and a photo.

A photo comes from an upload, the camera, or a catalog product; only the chosen way is
drawn, so the browser asks for the camera only when the visitor picks it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core.catalog import IMAGE_EXTENSIONS
from core.images import DEFAULT_MAX_BYTES, ImageError, decode_query_image
from core.images import limit_aspect_ratio
from core.models import CLIP_KEY, MAX_TEXT_CHARS, MULTILINGUAL_KEY
from core.search import SearchEngine
from ui import state, thumbnails
from ui.text import plain

UPLOAD_TYPES = [extension.lstrip(".") for extension in IMAGE_EXTENSIONS]
EXAMPLE_PRODUCTS = 6
PREVIEW_PX = 192  # twice the shown size, for sharp high-DPI screens
_SOURCE_LABELS = {
    state.UPLOAD: ":material/upload: Upload",
    state.CAMERA: ":material/photo_camera: Camera",
    state.CATALOG_PRODUCT: ":material/checkroom: Catalog",
}


@dataclass(frozen=True)
class ExamplePrompt:
    language: str  # shown as a code: flag emoji are missing from many desktop fonts
    text: str

    @property
    def english(self) -> bool:
        return self.language == "EN"


EXAMPLE_PROMPTS = (
    ExamplePrompt("EN", "red summer dress"),
    ExamplePrompt("DE", "schwarze Lederjacke für Herren"),
    ExamplePrompt("FR", "montre dorée pour femme"),
    ExamplePrompt("ES", "zapatillas blancas de deporte"),
    ExamplePrompt("EN", "men's blue denim shirt"),
    ExamplePrompt("DE", "Sonnenbrille mit rundem Rahmen"),
)


@dataclass(frozen=True)
class ImageQuery:
    """A query photo: bytes of an upload or a snapshot, or a catalog product's stored photo."""

    data: bytes | None = None
    product: str | None = None
    label: str = ""


def text_box(key: str = state.TEXT, switch_to_multilingual: bool = False) -> str:
    """The description box and its example prompts; returns the text as typed.

    With switch_to_multilingual (only when that model can search this catalog), a German, French
    or Spanish example moves CLIP to the multilingual model.
    """
    text = st.text_input(
        "Describe what you are looking for",
        key=key,
        type="search",
        placeholder="red summer dress · schwarze Lederjacke · robe bleue …",
        on_change=state.new_words if key == state.TEXT else None,
    )
    prompt_key = f"{key}{state.PROMPT_SUFFIX}"
    st.pills(
        "Try",
        range(len(EXAMPLE_PROMPTS)),
        key=prompt_key,
        format_func=lambda i: f"{EXAMPLE_PROMPTS[i].language} · {EXAMPLE_PROMPTS[i].text}",
        on_change=_use_prompt,
        args=(key, prompt_key, switch_to_multilingual),
        label_visibility="collapsed",
        wrap=not text,  # with a query, one scrolling row: the results start higher (on a phone, a screen higher)
    )
    if len(text or "") > MAX_TEXT_CHARS:
        st.caption(f"Only the first {MAX_TEXT_CHARS:,} characters are used.")
    return text or ""


def _use_prompt(text_key: str, prompt_key: str, may_switch_model: bool) -> None:
    """Put the picked prompt in the box (and clear the pick, so the same one can be picked again)."""
    picked = st.session_state[prompt_key]
    st.session_state[prompt_key] = None
    if picked is None:
        return
    prompt = EXAMPLE_PROMPTS[picked]
    st.session_state[text_key] = prompt.text
    if text_key == state.TEXT:
        state.new_words()
    if not prompt.english and may_switch_model and st.session_state[state.MODEL] == CLIP_KEY:
        st.session_state[state.MODEL] = MULTILINGUAL_KEY
        st.session_state[state.TOAST] = "Switched to the multilingual model: CLIP reads English only."


def use_product(item_id: str) -> None:
    """"More like this": that product's photo becomes the query, the words are cleared."""
    st.session_state[state.IMAGE_SOURCE] = state.CATALOG_PRODUCT
    st.session_state[state.PRODUCT] = item_id
    st.session_state[state.FROM_LIKE] = True
    st.session_state[state.TEXT] = ""


def _choose_product(item_id: str) -> None:
    st.session_state[state.PRODUCT] = item_id
    st.session_state[state.FROM_LIKE] = False


def image_input(engine: SearchEngine) -> ImageQuery | None:
    """The photo part of the query in a section that opens when a photo is in use (closed, it keeps
    a phone's results near the top); None without a usable photo."""
    in_use = (
        st.session_state[state.IMAGE_SOURCE] != state.UPLOAD
        or st.session_state.get(state.photo_widget_key(state.UPLOAD_KEY)) is not None
        or state.PHOTO_REFUSED in st.session_state
    )
    with st.expander("Search with a photo", expanded=in_use, icon=":material/photo_camera:"):
        return _image_input(engine)


def _image_input(engine: SearchEngine) -> ImageQuery | None:
    source = st.segmented_control(
        "Photo from",
        state.IMAGE_SOURCES,
        key=state.IMAGE_SOURCE,
        required=True,
        format_func=_SOURCE_LABELS.get,
        label_visibility="collapsed",
    )
    if refused := st.session_state.pop(state.PHOTO_REFUSED, None):
        st.error(refused, icon=":material/broken_image:")
    if source == state.UPLOAD:
        upload = st.file_uploader(
            "Upload a photo",
            type=UPLOAD_TYPES,
            key=state.photo_widget_key(state.UPLOAD_KEY),
            max_upload_size=DEFAULT_MAX_BYTES // (1 << 20),
            label_visibility="collapsed",
        )
        return _photo_query(upload)
    if source == state.CAMERA:
        return _photo_query(
            st.camera_input("Snap an outfit", key=state.photo_widget_key(state.CAMERA_KEY), label_visibility="collapsed")
        )
    return _product_query(engine)


def _photo_query(upload: UploadedFile | None) -> ImageQuery | None:
    """Check an uploaded file before it reaches the search, and show what was understood."""
    if upload is None:
        return None
    data = upload.getvalue()
    try:
        preview = _preview_jpeg(data)
    except ImageError as err:
        # The widget is emptied (a refused file must not stay listed) and the page drawn again without it.
        st.session_state[state.PHOTO_REFUSED] = f"**{plain(upload.name, 80)}**: {plain(str(err))}"
        state.clear_photo()
        st.rerun()
    with st.container(horizontal=True, vertical_alignment="center"):
        st.image(preview, width=96)
        st.caption("Searching with this photo")
    return ImageQuery(data=data, label=upload.name)


@st.cache_data(max_entries=32, show_spinner=False)
def _preview_jpeg(data: bytes) -> bytes:
    """A small JPEG of what the model sees of a query photo (decoded by core: limits, EXIF turn, and
    the centre of an extreme strip); raises ImageError."""
    image = limit_aspect_ratio(decode_query_image(data)).copy()  # the decode the search reuses
    image.thumbnail((PREVIEW_PX, PREVIEW_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _product_query(engine: SearchEngine) -> ImageQuery | None:
    """The chosen catalog product, or a few examples to choose from."""
    product = st.session_state[state.PRODUCT]
    if product:
        rows = engine.reader.rows_of(product)
        if len(rows):
            hit = engine.reader.hit(int(rows[0]))
            with st.container(horizontal=True, vertical_alignment="center"):
                if photo := thumbnails.source(hit.thumbnail):
                    st.image(photo, width=96)
                st.markdown(plain(hit.caption or hit.id, 80))
                st.button("Clear", icon=":material/close:", on_click=state.clear_product, type="tertiary")
            return ImageQuery(product=product, label=hit.caption or hit.id)
        st.warning(f"Product {plain(product, 60)} is not in this catalog; pick another one.")
        st.session_state[state.PRODUCT] = ""
    st.caption("Pick a product to find similar ones:")
    grid = st.grid(columns=3, min_column_width=90, gap="xsmall")
    for row in _example_rows(engine.reader.id_list):
        hit = engine.reader.hit(row)
        with grid.cell():
            if photo := thumbnails.source(hit.thumbnail):
                st.image(photo, width="stretch")
            st.button(
                "Use",
                key=f"{state.EXAMPLE_PREFIX}{hit.id}",
                on_click=_choose_product,
                args=(hit.id,),
                width="stretch",
                help=plain(hit.caption) if hit.caption else None,
            )
    return None


def _example_rows(ids: list[str], n: int = EXAMPLE_PRODUCTS) -> list[int]:
    """Products spread over the catalog (catalogs are often sorted by category), one photo of each:
    several rows may share a product id."""
    first_row: dict[str, int] = {}
    for row in sorted({int(row) for row in np.linspace(0, len(ids) - 1, min(n, len(ids)))}):
        first_row.setdefault(ids[row], row)
    return list(first_row.values())
