"""The one list of pages is the pages/ folder (Streamlit's own multipage layout) after app.py:
every page starts here, with its title, the shared style and links to the others by name."""

import re
from pathlib import Path

import streamlit as st

from ui import style

ROOT = Path(__file__).resolve().parents[1]
SEARCH_LABEL = "Search"


def pages() -> list[tuple[str, str]]:
    """(script, label) of every page: app.py, then pages/*.py in file order, labelled by file name."""
    files = sorted((ROOT / "pages").glob("*.py"))
    return [("app.py", SEARCH_LABEL)] + [
        (f"pages/{path.name}", re.sub(r"^\d+_", "", path.stem).replace("_", " ")) for path in files
    ]


def start_page(title: str) -> None:
    """What every page does first: its browser title, the wide layout, the style, the links."""
    st.set_page_config(page_title=f"Vitrine · {title}", page_icon="🛍️", layout="wide")
    style.apply()
    for script, label in pages():
        st.sidebar.page_link(script, label=label)
    st.sidebar.divider()
