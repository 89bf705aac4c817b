"""Catalog: what the index holds, browsing by metadata, and a map of the photos."""

from ui import catalog_page, nav

nav.start_page("catalog")
catalog_page.render()
