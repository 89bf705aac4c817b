"""The real thing: `streamlit run app.py` on localhost, driven by headless Chromium through Playwright.

Types a query, waits for the rerun to end, checks the K fresh result photos, uploads a photo,
checks that the results changed, and saves screenshots to artifacts/ (git ignores it). No step
may show an error or exception box. Needs Debian's chromium at /usr/bin/chromium (.ci/run
installs it).

Selectors are Streamlit's test ids, roles and text; the result grid and its cards are found by
their widget keys (`results`, `results-like-<id>`), which Streamlit turns into `st-key-` classes:
the same keys the AppTest tests read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import browser_latency
from bench.browser_latency import serving
from core.settings import INDEX_DIR_ENV, MODELS_DIR_ENV

from .app_support import ROOT
from .conftest import missing, need_module

CHROMIUM = Path(browser_latency.CHROMIUM)
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = {"words": ARTIFACTS / "browser-search-words.png", "photo": ARTIFACTS / "browser-search.png"}
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
K = 8
WAIT_MS = 90_000
# Returns once the rerun has ended with K fresh result cards whose photos have loaded: their product
# ids (from their "more like this" buttons' keys), or at once the text of any error or exception box.
# "Ended": the status widget no longer runs, and no element of the previous run is left (Streamlit
# marks those data-stale="true" until the new run replaces or removes them).
SETTLED = """k => {
    const boxes = [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')];
    if (boxes.length) return {errors: boxes.map(box => box.innerText)};
    if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"], [data-stale="true"]')) return null;
    const fresh = '.st-key-results [data-testid="stElementContainer"]';
    const cards = [...document.querySelectorAll(`${fresh}[class*="st-key-results-like-"]`)];
    const photos = [...document.querySelectorAll(`${fresh} [data-testid="stImage"] img`)];
    if (cards.length !== k || photos.length !== k) return null;
    if (!photos.every(photo => photo.complete && photo.naturalWidth > 0)) return null;
    return {errors: [], ids: cards.map(card =>
        [...card.classList].find(name => name.startsWith('st-key-results-like-')).slice('st-key-results-like-'.length))};
}"""


@pytest.fixture(scope="module", autouse=True)
def chromium_and_playwright():
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)")
    need_module("playwright.sync_api", "playwright is not installed: pip install -r requirements-dev.txt")


@pytest.fixture
def served_app(tiny_models, fashion_index, tmp_path):
    """`streamlit run app.py` as a visitor would reach it, on the tiny models and the 300-product index."""
    with serving({MODELS_DIR_ENV: str(tiny_models), INDEX_DIR_ENV: str(fashion_index.parent)}, tmp_path / "streamlit.log") as url:
        yield url


def after_the_rerun(page) -> list[str]:
    """Wait until the rerun has ended with K fresh, loaded result photos; their product ids, in order."""
    settled = page.wait_for_function(SETTLED, arg=K, timeout=WAIT_MS).json_value()
    assert settled["errors"] == [], settled["errors"]
    assert len(set(settled["ids"])) == K
    return settled["ids"]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32)


def assert_shows_photos(shot: np.ndarray, dark_share: float) -> None:
    """Not a blank or flat picture: enough of it far from the white page, with contrast. (Measured:
    result grids 8-9 % dark, std 40-46; whole pages 5 %, std 31; a blank page has std near 0.)"""
    assert (shot < 200).mean() > dark_share and shot.std() > 20, (float((shot < 200).mean()), float(shot.std()))


def test_search_by_words_then_add_a_photo_in_a_real_browser(served_app, fashion_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = sorted((fashion_dir / "images").glob("*.jpg"))[-5]  # not among the 300 indexed products
    ARTIFACTS.mkdir(exist_ok=True)
    grids = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1400},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)  # the first load warms the models up on a busy machine
            page.goto(f"{served_app}/?k={K}")
            box = page.get_by_label("Describe what you are looking for")
            box.fill("red summer dress")
            box.press("Enter")
            expect(page.get_by_text(f"{K} of 300 products by words")).to_be_visible(timeout=WAIT_MS)
            by_words = after_the_rerun(page)
            assert "q=red+summer+dress" in page.url and f"k={K}" in page.url
            page.screenshot(path=str(SCREENSHOTS["words"]))
            page.locator(".st-key-results").screenshot(path=str(tmp_path / "grid-words.png"))

            page.locator("input[type=file]").set_input_files(photo)
            expect(page.get_by_text(f"{K} of 300 products by words + photo")).to_be_visible(timeout=WAIT_MS)
            with_photo = after_the_rerun(page)
            assert with_photo != by_words, "the photo must change the results"
            page.screenshot(path=str(SCREENSHOTS["photo"]))
            page.locator(".st-key-results").screenshot(path=str(tmp_path / "grid-photo.png"))
        finally:
            browser.close()
    grids = {step: pixels(tmp_path / f"grid-{step}.png") for step in ("words", "photo")}
    for step, path in SCREENSHOTS.items():
        assert_shows_photos(pixels(path), dark_share=0.02)
        assert_shows_photos(grids[step], dark_share=0.04)
    words, with_photo = grids["words"], grids["photo"]
    height, width = min(words.shape[0], with_photo.shape[0]), min(words.shape[1], with_photo.shape[1])
    assert np.abs(words[:height, :width] - with_photo[:height, :width]).mean() > 10, "the grid must show other photos"
