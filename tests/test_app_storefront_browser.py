"""The storefront in a real browser: `streamlit run app.py` driven by headless Chromium (Playwright),
as a phone (390 px) and as a booth screen (1920 px). Screenshots go to artifacts/ (git ignores it).
Needs Debian's chromium at /usr/bin/chromium; the server start and page checks are shared with
bench/browser_latency.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.browser_latency import CHROMIUM, finish, open_page, search_words, serving, timed_words
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
# How many of the K and blend sliders lie wholly inside the screen.
SLIDERS_ON_SCREEN = """() => ['Results (K)', 'Blend: photo ↔ words'].filter(label => {
  const slider = [...document.querySelectorAll('[data-testid=stSidebar] [data-testid=stSlider]')].find(
      s => s.innerText.includes(label));
  if (!slider) { return false; }
  const box = slider.getBoundingClientRect();
  return box.left >= 0 && box.right <= innerWidth && box.top >= 0 && box.bottom <= innerHeight;
}).length"""
# Installed before a search: after every change to the page while the script runs, how many photos
# the grid shows (the previous ones, until the new ones replace them); it stops when the run is over.
WATCH_GRID = """() => {
  window.__gridWhileRunning = [];
  const app = document.querySelector('[data-testid=stApp]');
  const watcher = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') {
      window.__gridWhileRunning.push(document.querySelectorAll('.st-key-results img').length);
    } else if (window.__gridWhileRunning.length) {
      watcher.disconnect();
    }
  });
  watcher.observe(app, {attributes: true, childList: true, subtree: true});
}"""
# The grid's opacity while a search runs, read with transitions off (they delay the dimming by 150 ms,
# so a fast search never shows it).
DIMMED_OPACITY = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  const still = document.createElement('style');
  still.textContent = '* { transition: none !important; }';
  document.head.appendChild(still);
  const before = app.getAttribute('data-test-script-state');
  app.setAttribute('data-test-script-state', 'running');
  const opacity = Number(getComputedStyle(document.querySelector('.st-key-results')).opacity);
  app.setAttribute('data-test-script-state', before);
  still.remove();
  return opacity;
}"""

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)"
)


@pytest.fixture
def storefront(tiny_models, fashion_index, tmp_path):
    with serving({MODELS_DIR_ENV: str(tiny_models), INDEX_DIR_ENV: str(fashion_index.parent)}, tmp_path / "log") as url:
        yield url


def test_phone_and_booth_layouts_show_results_first_sharp_unstretched_and_never_blank(storefront):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            phone = open_page(browser, f"{storefront}/?q=red+summer+dress", PHONE)
            timed_words(phone, "white sports shoes")  # a search typed on the phone
            phone_layout = phone.evaluate(LAYOUT)
            phone.screenshot(path=str(ARTIFACTS / "storefront-phone.png"))
            settings_hidden = phone.evaluate(SLIDERS_ON_SCREEN) == 0  # the sidebar starts folded away
            phone.get_by_test_id("stExpandSidebarButton").click()  # K and blend live one tap away
            phone.wait_for_function(f"() => ({SLIDERS_ON_SCREEN})() === 2", timeout=10_000)
            phone.screenshot(path=str(ARTIFACTS / "storefront-phone-settings.png"))
            booth = open_page(browser, f"{storefront}/?q=red+summer+dress&k=14", BOOTH)
            booth_layout = booth.evaluate(LAYOUT)
            booth.screenshot(path=str(ARTIFACTS / "storefront-booth.png"))
            booth.evaluate(WATCH_GRID)
            search_words(booth, "blue denim shirt")
            finish(booth)
            grid_while_running = booth.evaluate("() => window.__gridWhileRunning")
            dimmed = booth.evaluate(DIMMED_OPACITY)
        finally:
            browser.close()
    # On a phone the first card starts within the first screen, above the fold, one card per row.
    assert phone_layout["columns"] == 1 and phone_layout["firstCardTop"] < PHONE["height"] * 0.6, phone_layout
    # At a booth the screen's width holds a row of seven cards.
    assert booth_layout["columns"] >= 6, booth_layout
    for layout in (phone_layout, booth_layout):
        assert layout["stretched"] == 0 and layout["crashes"] == 0, layout
    assert settings_hidden  # and then the K and blend sliders came wholly on screen with one tap
    # While a search runs, the previous grid stays on the page (never a blank flash), and dimmed.
    assert grid_while_running and min(grid_while_running) == 14, grid_while_running
    assert dimmed < 0.5
