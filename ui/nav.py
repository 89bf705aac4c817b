"""The one list of pages: their files, names and icons, drawn as a bar at the top of every page."""

import streamlit as st

from ui import search_page, style

SEARCH_TITLE = "Search"


def pages() -> list[st.Page]:
    """The search page (the entry point, app.py) and the page files in pages/."""
    return [
        st.Page(search_page.render, title=SEARCH_TITLE, icon=":material/search:", default=True),
        st.Page("pages/1_Compare_models.py", title="Compare models", icon=":material/compare:"),
        st.Page("pages/2_Catalog.py", title="Catalog", icon=":material/inventory_2:"),
    ]


def run() -> None:
    """Draw the navigation and the page the visitor is on."""
    style.apply()
    st.navigation(pages(), position="top").run()
