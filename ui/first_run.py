"""First run: no catalog indexed yet. Explain, then build one with the same builder as the CLI.

Two ways in: the sample catalog (downloaded from the Hugging Face hub), or a local folder of
photos with an optional captions CSV, for a shop trying Vitrine on its own products.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.build_index import BuildSummary, build_index, update_from_recipe
from core.catalog import Catalog, CatalogError, from_folder
from core import settings
from core.models import ModelLoadError
from core.recipe import Recipe
from core import sample
from core.sample import SAMPLE_DATASET, SAMPLE_NAME
from ui import messages, resources, state
from core.pipeline import BuildError
from ui.text import code, plain

SAMPLE_SIZES = (200, 1_000, 5_000, 10_000)
SAMPLE_DEFAULT = 1_000
MAX_NAME_CHARS = 64


class SampleUnavailable(RuntimeError):
    """The sample catalog cannot be had here (no network, or the hub refused)."""


def render(index_root: Path) -> None:
    """The whole first-run screen."""
    st.title("Welcome to Vitrine")
    st.markdown(
        "Vitrine finds products by **words in 50+ languages**, by **photo**, or by both. "
        f"It searches a catalog indexed ahead of time, and there is none yet in {code(index_root)}. "
        "Build one now: the vectors of every photo are computed once, then every search takes milliseconds."
    )
    _model_source_note()
    sample_tab, folder_tab = st.tabs([":material/download: Sample catalog", ":material/folder_open: Your own photos"])
    with sample_tab:
        request = _sample_form(index_root)
        if request is not None:
            _build(request)
    with folder_tab:
        if folder_builds_allowed():
            request = _folder_form(index_root)
            if request is not None:
                _build(request)
        else:
            _owner_builds_note(index_root)


def folder_builds_allowed() -> bool:
    """Indexing a folder or path of this server is the owner's action: by default only a visitor on
    this machine (the booth laptop at http://localhost:8501) may, never a Space's visitors;
    VITRINE_ALLOW_BUILDS=on or off decides for everyone (core/settings.py)."""
    config = settings.current()
    if config.allow_builds != "auto":
        return config.allow_builds == "on"
    return config.space_id is None and local_visitor(st.context.ip_address)


def local_visitor(ip_address: object) -> bool:
    """Streamlit gives no address (None) for a visitor on localhost, a string for anyone else; without
    a real connection (bare runs, AppTest) it is neither, and the script runs on this machine."""
    if not isinstance(ip_address, str):
        return True
    try:
        return ipaddress.ip_address(ip_address).is_loopback
    except ValueError:
        return False


def _owner_builds_note(index_root: Path) -> None:
    st.info(
        "Indexing a folder of this server is for its owner. Visitors may build the sample catalog "
        "(first tab); the owner builds a shop's catalog on their own machine and uploads it:",
        icon=":material/lock:",
    )
    st.code(
        "python -m core.build_index --images shop/images --captions shop/products.csv --out index_data/shop\n"
        "hf upload USER/SPACE index_data index_data --repo-type space",
        language="bash",
    )
    st.caption(
        f"Or, on a server only the owner can reach, set `{settings.ALLOW_BUILDS_ENV}=on`. "
        f"Catalogs are read from {code(index_root)}."
    )


def _model_source_note() -> None:
    folder = settings.current().models_dir
    if folder is not None:
        st.caption(f"Models are read from {code(folder)} ({settings.MODELS_DIR_ENV}); no network is needed.")
    else:
        st.caption(
            "Models are downloaded from the Hugging Face hub on first use. Offline (at a booth), run "
            f"`python -m core.models download --to ./models` on a connected machine and set `{settings.MODELS_DIR_ENV}`."
        )


@dataclass(frozen=True)
class BuildRequest:
    """What a submitted form asks to build (run outside the form: forms cannot hold buttons)."""

    make_catalog: Callable[[], Catalog]
    out: Path
    limit: int | None = None
    recipe: Recipe | None = None  # recorded in the index, so the catalog can be updated from the app later


def _sample_form(index_root: Path) -> BuildRequest | None:
    with st.form("sample_form", border=False):
        st.markdown(
            f"Product photos and names from the Hugging Face dataset {code(SAMPLE_DATASET)} (needs network)."
        )
        size = st.select_slider("Products", SAMPLE_SIZES, value=SAMPLE_DEFAULT, format_func="{:,}".format)
        if st.form_submit_button("Download and index", icon=":material/download:", type="primary"):
            return BuildRequest(lambda: _sample_catalog(size), index_root / SAMPLE_NAME, recipe=Recipe(sample=size))
    return None


def _sample_catalog(size: int) -> Catalog:
    """The sample's catalog; any failure (network, hub, parquet) becomes one message with the way out."""
    try:
        return sample.sample_catalog(size)
    except Exception as err:  # network, hub and parquet errors all mean the same here
        raise SampleUnavailable(
            f"The sample catalog could not be downloaded ({err}). Without network, index a folder of photos instead."
        ) from err


def _folder_form(index_root: Path) -> BuildRequest | None:
    with st.form("folder_form", border=False):
        images = st.text_input("Folder of product photos", placeholder="/data/shop/images", key=state.FIRST_RUN_IMAGES)
        captions = st.text_input(
            "Captions CSV (optional)",
            placeholder="/data/shop/products.csv",
            key=state.FIRST_RUN_CAPTIONS,
            help="One row per product: an id column naming its photo (id 1163: 1163.jpg), a caption column "
            "(caption, productDisplayName, title, name or description); other columns become filters.",
        )
        name = st.text_input("Catalog name", placeholder="shop", key=state.FIRST_RUN_NAME)
        limit = st.number_input("Index only the first N photos (0: all)", min_value=0, step=100, key=state.FIRST_RUN_LIMIT)
        if st.form_submit_button("Index this folder", icon=":material/play_arrow:", type="primary"):
            if not images.strip():
                st.warning("Give the folder that holds your product photos.")
                return None
            images_dir = Path(images.strip()).expanduser()
            captions_csv = Path(captions.strip()).expanduser() if captions.strip() else None
            out = index_root / catalog_name(name or images_dir.name)
            recipe = Recipe(images=str(images_dir), captions=str(captions_csv) if captions_csv else None, limit=int(limit) or None)
            return BuildRequest(lambda: from_folder(images_dir, captions_csv, name=out.name), out, int(limit) or None, recipe)
    return None


def catalog_name(text: str) -> str:
    """A safe folder name for index_data/: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:MAX_NAME_CHARS] or "catalog"


def _build(request: BuildRequest) -> None:
    _run_locked(lambda: _run_builder(request))


def update_action(folder: Path, has_recipe: bool) -> None:
    """The Catalog page's "Update this catalog": the recorded build run again (only what changed is
    encoded); an owner's action, offered where folder builds are allowed."""
    if not has_recipe or not folder.is_dir() or not folder_builds_allowed():
        return
    if st.button("Update this catalog", icon=":material/sync:", key=state.UPDATE_CATALOG,
                 help="Index again from where it was built: new, changed and removed products are taken in."):
        _run_locked(lambda: update_from_recipe(folder, on_progress=_progress_bar()))


def _run_locked(run: Callable[[], BuildSummary]) -> None:
    """Run a build with a progress bar, one at a time per server; on success, rerun the page.

    A failure is said below the progress box, in the open: the box itself is closed."""
    lock = resources.build_lock()
    if not lock.acquire(blocking=False):
        st.warning("Another visitor is building a catalog right now. Reload the page in a minute.")
        return
    failure: Exception | None = None
    try:
        with st.status("Building the index…", expanded=True) as status:
            try:
                summary = run()
                status.update(label="Index ready", state="complete")
            except (ModelLoadError, CatalogError, SampleUnavailable, BuildError, OSError) as err:
                failure = err
                status.update(label="The index could not be built", state="error", expanded=False)
    finally:
        lock.release()
    if isinstance(failure, ModelLoadError):
        messages.model_unavailable(failure)
    elif failure is not None:
        messages.problem("The index could not be built.", failure)
    else:
        st.session_state[state.LAST_BUILD] = summary.describe()
        st.rerun()


def _run_builder(request: BuildRequest) -> BuildSummary:
    st.write("Reading the catalog…")
    catalog = request.make_catalog()
    found = len(catalog.items)
    if request.limit and request.limit < found:
        st.write(f"{found:,} photos found; indexing the first {request.limit:,} (the models load first).")
    else:
        st.write(f"{found:,} photos found; computing their vectors (the models load first).")
    return build_index(
        catalog, request.out, progress=False, limit=request.limit, on_progress=_progress_bar(), recipe=request.recipe
    )


def _progress_bar() -> Callable[[str, int, int], None]:
    """A progress bar on the page, as the builder's on_progress callback."""
    bar = st.progress(0.0, text="Loading the models…")

    def on_progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{stage.capitalize()}: {done:,} of {total:,}")

    return on_progress


def show_last_build() -> None:
    """After a build the page reruns into the search page: say once what was indexed."""
    described = st.session_state.pop(state.LAST_BUILD, None)
    if described:
        first, *rest = described.splitlines()
        st.success(plain(first), icon=":material/check_circle:")
        if rest:
            st.caption(plain(" ".join(rest), 300))
