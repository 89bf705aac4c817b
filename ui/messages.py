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
