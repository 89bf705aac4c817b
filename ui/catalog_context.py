"""The opening of the extra pages: which catalog, with the same choice the search page made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from core.index import IndexMismatchError
from core.models import available_models
from core.search import SearchEngine
from ui import messages, resources, sidebar, state


def open_catalog(when_none: Callable[[], None] | None = None) -> tuple[Path, SearchEngine] | None:
    """The chosen catalog and its engine, or None after saying why there is none."""
    try:
        folders = resources.catalog_folders()
    except OSError as err:  # the API of a thin front end (VITRINE_API_URL) does not answer
        messages.problem("The search service cannot be reached.", err)
        return None
    if not folders:
        (when_none or _point_to_first_run)()
        return None
    default = resources.default_catalog(folders)
    names = [default.name, *(folder.name for folder in folders if folder != default)]  # the default first
    state.restore_once([spec.key for spec in available_models()], names)
    state.ensure_defaults(names)
    folder = sidebar.catalog_picker(folders)
    try:
        return folder, resources.engine_for(folder)
    except (IndexMismatchError, OSError) as err:  # a damaged or half-deleted index folder
        messages.problem(f"The catalog '{folder.name}' cannot be opened.", err)
        return None


def _point_to_first_run() -> None:
    st.info("No catalog is indexed yet.", icon=":material/inventory_2:")
    st.page_link("app.py", label="Set one up on the search page", icon=":material/arrow_back:")
