"""Sidebar links between the pages, with names and icons (the automatic list would say "app")."""

import streamlit as st

PAGES = (
    ("app.py", "Search", ":material/search:"),
    ("pages/1_Compare_models.py", "Compare models", ":material/compare:"),
    ("pages/2_Catalog.py", "Catalog", ":material/inventory_2:"),
)


def sidebar_links() -> None:
    for page, label, icon in PAGES:
        st.sidebar.page_link(page, label=label, icon=icon)
    st.sidebar.divider()
