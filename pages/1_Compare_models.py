"""Compare models: one description, every model side by side (listed in ui/nav.py)."""

from ui import compare_page

compare_page.render()
