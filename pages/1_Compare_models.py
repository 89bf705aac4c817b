"""Compare models: one description or photo, every model side by side."""

import streamlit as st

from ui import compare_page, nav

st.set_page_config(page_title="Vitrine · compare models", page_icon="🛍️", layout="wide")
nav.sidebar_links()
compare_page.render()
