"""Catalog: what the index holds, browsing by metadata, and a map of the photos (listed in ui/nav.py)."""

from ui import catalog_page

catalog_page.render()
