"""What loads once per process: index folders, search engines, warmed-up models.

Streamlit reruns the whole script on every click; everything slow lives here behind
st.cache_resource, shared by all sessions (a Space serves many visitors from one process).
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import streamlit as st
from PIL import Image

from core import settings
from core.api_client import ApiClient, RemoteEngine
from core.index import MANIFEST_FILE, IndexMismatchError, list_indexes, read_manifest
from core.search import SearchEngine

WARM_UP_TEXT = "a photo of a product"


def index_root() -> Path:
    """Where catalogs live: $VITRINE_INDEX_DIR, else index_data/ beside app.py (core/settings.py)."""
    return settings.current().index_dir


def catalog_folders() -> list[Path]:
    """Index folders ready to search; read on every run, so a catalog built meanwhile shows up.
    With VITRINE_API_URL, the API's catalogs (by name: their folders live with the API)."""
    api_url = settings.current().api_url
    if api_url:
        return [Path(info["name"]) for info in ApiClient(api_url).catalogs()]
    return list_indexes(index_root())


def default_catalog(folders: list[Path]) -> Path:
    """The first catalog that opens: a damaged one that sorts first must not greet every visitor."""
    return next((folder for folder in folders if open_problem(folder) is None), folders[0])


def open_problem(folder: Path) -> str | None:
    """Why a catalog cannot be opened, or None when it opens (its engine is then loaded and cached)."""
    try:
        stamp = (folder / MANIFEST_FILE).stat().st_mtime_ns
    except OSError as err:
        return str(err)
    return _open_problem(str(folder), stamp)


@st.cache_data(ttl=60, show_spinner=False)
def _open_problem(folder: str, manifest_stamp: int) -> str | None:
    """Cached for a minute, so a broken catalog is not re-read on every rerun; a rebuild changes the stamp."""
    try:
        engine_for(Path(folder))
    except (IndexMismatchError, OSError) as err:
        return str(err)
    return None


def engine_for(folder: Path) -> SearchEngine | RemoteEngine:
    """The engine of a folder; a rebuilt index (new manifest) gets a fresh engine.
    With VITRINE_API_URL, the API's catalog of that name: searches go there, no model loads here."""
    api_url = settings.current().api_url
    if api_url:
        return _remote_engine(api_url, folder.name)
    return _engine(str(folder), read_manifest(folder).version)


@st.cache_resource(max_entries=8, ttl=60, show_spinner=False)
def _remote_engine(api_url: str, catalog: str) -> RemoteEngine:
    return ApiClient(api_url).engine(catalog)


@st.cache_resource(max_entries=8, show_spinner=False)
def _engine(folder: str, built_at: str) -> SearchEngine:
    return SearchEngine(folder)


def ready_engine(folder: Path, model: str) -> SearchEngine | RemoteEngine:
    """The engine with `model` loaded and warmed up, so the visitor's first query is as fast as the rest
    (the API warms its own models)."""
    if settings.current().api_url:
        return engine_for(folder)
    built_at = read_manifest(folder).version
    engine = _engine(str(folder), built_at)
    _warm_up(str(folder), built_at, model)
    return engine


@st.cache_resource(max_entries=16, show_spinner="Loading the model (once per server)…")
def _warm_up(folder: str, built_at: str, model: str) -> bool:
    """One text and one image query through `model`: loads the weights and runs each tower once.

    Failures (ModelLoadError) are not cached: the next run tries again.
    """
    engine = _engine(folder, built_at)
    engine.search(text=WARM_UP_TEXT, model=model, k=1)
    engine.search(image=Image.new("RGB", (224, 224), "white"), model=model, k=1)
    # The model's objects live as long as the process: frozen, they leave the full garbage
    # collection Streamlit runs after every rerun, which otherwise walked them all (~0.4 s a run).
    gc.freeze()
    return True


@st.cache_resource
def build_lock() -> threading.Lock:
    """One index build at a time per server: two visitors must not write the same folder."""
    return threading.Lock()
