"""Compare models: one description or photo, every model that can search the catalog, side by side."""

from ui import compare_page, nav

nav.start_page("compare models")
compare_page.render()
