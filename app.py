"""Vitrine: find products by words in 50+ languages, by photo, or both.

    streamlit run app.py
"""

import streamlit as st

from ui import nav

st.set_page_config(page_title="Vitrine · product search", page_icon="🛍️", layout="wide")
nav.run()
