"""Product photos as the browser gets them.

Streamlit re-encodes every image that is not JPEG or PNG on every rerun (the builder's
thumbnails are WebP): here each is converted once per process and the same bytes are handed
over on every rerun, which Streamlit then passes through untouched.
"""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image, UnidentifiedImageError

JPEG_QUALITY = 90
MAX_CACHED = 2048  # thumbnails kept converted: 10-40 KB each (224-480 px), so at most about 80 MB


def source(thumbnail: str | None) -> str | bytes | None:
    """What st.image shows for a hit's thumbnail: a URL as it is (a remote API's), a file as JPEG
    bytes; None when there is nothing to show (the file is gone or damaged)."""
    if thumbnail is None or thumbnail.startswith(("http://", "https://")):
        return thumbnail
    return _jpeg(thumbnail)


@st.cache_resource(max_entries=MAX_CACHED, show_spinner=False)
def _jpeg(path: str) -> bytes | None:
    """Thumbnails are named by their content, so a path's bytes never change while the process runs."""
    try:
        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return buffer.getvalue()
