"""The storefront in a real browser: `streamlit run app.py` driven by headless Chromium (Playwright),
as a phone (390 px) and as a booth screen (1920 px). Screenshots go to artifacts/ (git ignores it).
Needs Debian's chromium at /usr/bin/chromium; the server start and page checks are shared with
bench/browser_latency.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.browser_latency import CHROMIUM, open_page, serve, timed_words
from core.settings import INDEX_DIR_ENV, MODELS_DIR_ENV

from .app_support import ROOT

ARTIFACTS = ROOT / "artifacts"
PHONE = {"width": 390, "height": 844}
BOOTH = {"width": 1920, "height": 1080}
LAYOUT = """() => {
  const grid = document.querySelector('.st-key-results');
  const photos = [...grid.querySelectorAll('img')];
  return {
    columns: Number(grid.getAttribute('data-test-column-count')),
    firstCardTop: grid.getBoundingClientRect().top,
    stretched: photos.filter(p => p.getBoundingClientRect().width > p.naturalWidth + 1).length,
    crashes: document.querySelectorAll('[data-testid=stException]').length,
  };
}"""

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)"
)


@pytest.fixture
def storefront(tiny_models, fashion_index, tmp_path):
    server, url = serve({MODELS_DIR_ENV: str(tiny_models), INDEX_DIR_ENV: str(fashion_index.parent)}, tmp_path / "log")
    yield url
    server.terminate()
    server.wait(timeout=15)


def test_phone_and_booth_layouts_show_results_first_sharp_and_unstretched(storefront):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            phone = open_page(browser, f"{storefront}/?q=red+summer+dress", PHONE)
            timed_words(phone, "white sports shoes")  # a search typed on the phone
            phone_layout = phone.evaluate(LAYOUT)
            phone.screenshot(path=str(ARTIFACTS / "storefront-phone.png"))
            booth = open_page(browser, f"{storefront}/?q=red+summer+dress&k=14", BOOTH)
            booth_layout = booth.evaluate(LAYOUT)
            booth.screenshot(path=str(ARTIFACTS / "storefront-booth.png"))
        finally:
            browser.close()
    # On a phone the first card starts within the first screen, above the fold, one card per row.
    assert phone_layout["columns"] == 1 and phone_layout["firstCardTop"] < PHONE["height"] * 0.6, phone_layout
    # At a booth the screen's width holds a row of seven cards.
    assert booth_layout["columns"] >= 6, booth_layout
    for layout in (phone_layout, booth_layout):
        assert layout["stretched"] == 0 and layout["crashes"] == 0, layout
