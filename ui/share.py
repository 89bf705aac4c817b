"""A QR code of the current search: a visitor at the booth scans it and carries the search to a phone.

The link is the public address ($VITRINE_PUBLIC_URL, core/settings.py) plus the search's URL
parameters (ui/state.py). Without that setting the browser's own address is used, unless it is a
loopback one that no phone could reach.
"""

from __future__ import annotations

import io
from urllib.parse import urlencode, urlsplit

import segno
import streamlit as st

from core import settings
from ui.text import code

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
QR_PX = 180


def public_base(configured: str | None, browser_url: str | None) -> str | None:
    """The address a phone can open, or None when there is none to give."""
    if configured:
        return configured
    if not browser_url:
        return None
    parts = urlsplit(browser_url)
    if not parts.hostname or parts.hostname in LOOPBACK_HOSTS:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def search_link(base: str, params: dict[str, str]) -> str:
    return f"{base}/?{urlencode(params)}" if params else f"{base}/"


@st.cache_data(max_entries=256, show_spinner=False)
def qr_png(link: str) -> bytes:
    """The link as a QR code (medium error correction: readable off a screen at an angle)."""
    buffer = io.BytesIO()
    segno.make_qr(link, error="m").save(buffer, kind="png", scale=6, border=2)
    return buffer.getvalue()


def render(params: dict[str, str]) -> None:
    """In the sidebar: the QR code of this search and its link; nothing when no phone could open it."""
    base = public_base(settings.current().public_url, st.context.url)
    if base is None:
        return
    link = search_link(base, params)
    with st.sidebar.expander("Take this search with you", icon=":material/qr_code_2:", expanded=bool(params)):
        st.image(qr_png(link), width=QR_PX, caption="Scan with your phone's camera")
        st.caption(code(link))
