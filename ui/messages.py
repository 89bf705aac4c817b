"""Messages that explain a failure and say what to do about it."""

from __future__ import annotations

import streamlit as st

from core.settings import MODELS_DIR_ENV
from ui.text import plain

OFFLINE_REMEDY = (
    "python -m core.models download --to ./models   # once, on a connected machine\n"
    f"export {MODELS_DIR_ENV}=$PWD/models             # then, offline\n"
    "streamlit run app.py"
)


def model_unavailable(err: Exception) -> None:
    """A model could not be loaded (usually: no network and no local copy)."""
    st.error(f"**A model could not be loaded.** {plain(str(err))}", icon=":material/cloud_off:")
    st.markdown(
        f"Vitrine downloads its models from the Hugging Face hub on first use. Without network, fetch "
        f"them once on a connected machine, copy the folder here and point `{MODELS_DIR_ENV}` at it:"
    )
    st.code(OFFLINE_REMEDY, language="bash")
    st.button("Try again", icon=":material/refresh:")


def problem(title: str, err: Exception) -> None:
    """Any other failure the visitor can act on (the message says how)."""
    st.error(f"**{title}** {plain(str(err))}", icon=":material/error:")


def no_model_fits(catalog: str, reasons: dict[str, str]) -> None:
    """No model can search this catalog: say why for each, and how to rebuild it."""
    why = "; ".join(f"{plain(key)}: {plain(reason)}" for key, reason in reasons.items())
    st.warning(
        f"**No model here can search the catalog “{plain(catalog)}”.** {why}. Rebuild it with the models "
        "this server has: `python -m core.build_index ... --out index_data/NAME`.",
        icon=":material/search_off:",
    )
