"""Vitrine: find products by words in 50+ languages, by photo, or both.

    streamlit run app.py
"""

from ui import nav, search_page

nav.start_page("product search")
search_page.render()
