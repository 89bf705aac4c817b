"""The real thing: `streamlit run app.py` on localhost, driven by headless Chromium through Playwright.

Types a query, checks that K result photos load, uploads a photo, and saves a screenshot to
artifacts/ (git ignores it). Needs Debian's chromium at /usr/bin/chromium (.ci/run installs it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.settings import MODELS_DIR_ENV

from .app_support import ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
SCREENSHOT = ARTIFACTS / "browser-search.png"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
K = 8
START_TIMEOUT_S = 180
WAIT_MS = 90_000
ALL_RESULT_PHOTOS_LOADED = """k => {
    const photos = [...document.querySelectorAll('.st-key-results img')];
    return photos.length === k && photos.every(photo => photo.complete && photo.naturalWidth > 0);
}"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served_app(tiny_models, fashion_index, tmp_path):
    """`streamlit run app.py` as a visitor would reach it, on the tiny models and the 300-product index."""
    port = free_port()
    env = {**os.environ, MODELS_DIR_ENV: str(tiny_models), "VITRINE_INDEX_DIR": str(fashion_index.parent)}
    log_path = tmp_path / "streamlit.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, server, log_path)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_healthy(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')}")


def test_search_by_words_then_add_a_photo_in_a_real_browser(served_app, fashion_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = sorted((fashion_dir / "images").glob("*.jpg"))[-5]  # not among the 300 indexed products
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
            page.goto(f"{served_app}/?k={K}")
            box = page.get_by_label("Describe what you are looking for")
            box.fill("red summer dress")
            box.press("Enter")
            expect(page.get_by_text(f"{K} of 300 products by words")).to_be_visible(timeout=WAIT_MS)
            page.wait_for_function(ALL_RESULT_PHOTOS_LOADED, arg=K, timeout=WAIT_MS)
            assert "q=red+summer+dress" in page.url and f"k={K}" in page.url

            page.locator("input[type=file]").set_input_files(photo)
            expect(page.get_by_text(f"{K} of 300 products by words + photo")).to_be_visible(timeout=WAIT_MS)
            page.wait_for_function(ALL_RESULT_PHOTOS_LOADED, arg=K, timeout=WAIT_MS)
            expect(page.get_by_test_id("stException")).to_have_count(0)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
