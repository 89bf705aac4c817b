"""The few style rules Streamlit has no setting for: a dimmed grid while a search runs, a compact
phone layout, and product photos never drawn larger than they are."""

import streamlit as st

CSS = """
<style>
/* While a search runs, the previous results stay, dimmed (after a moment, so a fast answer does not flicker). */
.st-key-results { transition: opacity 120ms; }
[data-test-script-state="running"] .st-key-results { opacity: 0.45; transition: opacity 200ms 150ms; }
/* A thumbnail is shown at most at its own size, centred, never stretched. */
[class*="st-key-results"] [data-testid="stImage"] img, [class*="st-key-browse"] [data-testid="stImage"] img,
[class*="st-key-compare-"] [data-testid="stImage"] img {
    max-width: 100%; height: auto; aspect-ratio: auto; object-fit: contain; margin: 0 auto; }
@media (max-width: 640px) {
    /* On a phone the results start within the first screen: less title, less padding. */
    .stMainBlockContainer { padding-top: 3.25rem; }
    .st-key-page_header h1 { font-size: 1.6rem; padding: 0; }
    .st-key-page_header [data-testid="stCaptionContainer"] { display: none; }
}
</style>
"""


def apply() -> None:
    st.html(CSS)
