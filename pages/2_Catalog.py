"""Catalog: what the index holds, browsing by metadata, and a map of the photos."""

import streamlit as st

from ui import catalog_page, nav

st.set_page_config(page_title="Vitrine · catalog", page_icon="🛍️", layout="wide")
nav.sidebar_links()
catalog_page.render()
