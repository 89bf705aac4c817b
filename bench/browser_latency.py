"""How fast a visitor sees new results, in headless Chromium: click -> new grid with every photo loaded.

    python -m bench.browser_latency [--products 1500] [--size tiny] [--repeat 5] [--pages 5]

Starts `streamlit run app.py` on a free localhost port over an index of the first N shared
photos (models with random weights: `tiny` measures the app's own overhead, `full` adds the
encoding a real CLIP costs), drives /usr/bin/chromium through Playwright and times, in the page
itself (performance.now), from the key press or click to the moment the script run is over and
the grid shows the new cards with all their photos decoded:

  new words · the same words again · "More like this" · a K change · five pages searching at once

Medians of --repeat rounds; for five pages, the slowest page of each round. Also, once per run,
the first visit after the server started (page load to grid, the models loading meanwhile).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.local_server import free_port, running
from bench.setup import DATA

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000
WORDS = ["red", "blue", "summer", "dress", "shirt", "leather", "watch", "black", "sports", "shoes",
         "white", "denim", "casual", "women", "men", "bag", "green", "formal", "cotton", "gold"]
# The page's state, read in the page: the query bar (words, product, count), the cards shown, whether
# the run is over and every card photo is decoded.
SIGNATURE = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  const bar = document.querySelector('.st-key-query_bar');
  const cards = [...document.querySelectorAll('[class*="st-key-results-like-"]')].map(
      el => [...el.classList].find(c => c.startsWith('st-key-results-like-')));
  const photos = [...document.querySelectorAll('.st-key-results img')];
  const ready = app && app.getAttribute('data-test-script-state') !== 'running'
      && !document.querySelector('.st-key-results [data-stale=true]')
      && cards.length > 0 && photos.length === cards.length
      && photos.every(p => p.complete && p.naturalWidth > 0);
  return {ready: !!ready, key: (bar ? bar.innerText : '') + '|' + cards.join(',')};
}"""
# Installed before an action: resolves (in the page) when the signature differs from `before` and is ready.
WATCH = """before => {
  window.__vitrineDone = null;
  const sig = %s;
  const poll = () => { const s = sig(); if (s.ready && s.key !== before) { window.__vitrineDone = performance.now(); }
                       else { requestAnimationFrame(poll); } };
  window.__vitrineStart = performance.now();
  requestAnimationFrame(poll);
}""" % SIGNATURE


def prepare(work: Path, products: int, size: str) -> dict[str, str]:
    """Models of the size asked for and an index of the first N shared photos, made once under work/."""
    from core.build_index import build_index
    from core.catalog import from_folder
    from core.random_models import make_models

    models = work / f"models-{size}"
    if not (models / "clip-ViT-B-32" / "modules.json").is_file():
        make_models(models, size)
    os.environ["VITRINE_MODELS_DIR"] = str(models)
    index = work / f"index-{size}-{products}"
    if not (index / "fashion" / "manifest.json").is_file():
        catalog = from_folder(DATA / "images", DATA / "products.csv", name="fashion")
        build_index(catalog, index / "fashion", limit=products, progress=True)
    return {"VITRINE_MODELS_DIR": str(models), "VITRINE_INDEX_DIR": str(index)}


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free localhost port with these variables added; yields its URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true"]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/_stcore/health", log, env, stop_timeout_s=15):
        yield url


def signature(page) -> str:
    return page.evaluate(SIGNATURE)["key"]


def start(page) -> None:
    page.evaluate(WATCH, signature(page))


def finish(page) -> float:
    page.wait_for_function("() => window.__vitrineDone !== null", timeout=TIMEOUT_MS)
    return page.evaluate("() => window.__vitrineDone - window.__vitrineStart")


def search_words(page, text: str) -> None:
    box = page.get_by_label("Describe what you are looking for")
    box.fill(text)
    start(page)
    box.press("Enter")


def timed_words(page, text: str) -> float:
    search_words(page, text)
    return finish(page)


def timed_more_like_this(page) -> float:
    start(page)
    page.locator('[class*="st-key-results-like-"] button').nth(2).click()
    return finish(page)


def timed_k_change(page, key: str) -> float:
    thumb = page.get_by_role("slider", name="Results (K)")
    thumb.focus()
    start(page)
    page.keyboard.press(key)
    return finish(page)


def open_page(browser, url: str, viewport: dict[str, int] | None = None):
    """A new page (its own Streamlit session) at url, once its results are shown."""
    page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_function(f"() => ({SIGNATURE})().ready", timeout=TIMEOUT_MS * 3)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1500)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vitrine-browser-bench"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pages", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    env = prepare(args.work, args.products, args.size)
    figures: dict[str, list[float]] = {}
    with serving(env, args.work / "streamlit.log") as url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            started = time.perf_counter()  # the server has just started: models load on this first visit
            page = open_page(browser, f"{url}/?q=warm+up")
            figures["first page after a restart"] = [(time.perf_counter() - started) * 1000]
            for round_ in range(args.repeat):
                first, second = f"{WORDS[round_ % 20]} {WORDS[(round_ * 7 + 3) % 20]} {round_}", f"{WORDS[(round_ * 3 + 1) % 20]} {round_}"
                figures.setdefault("new words", []).append(timed_words(page, first))
                timed_words(page, second)
                figures.setdefault("the same words again", []).append(timed_words(page, first))
                figures.setdefault("a K change", []).append(timed_k_change(page, "ArrowRight" if round_ % 2 == 0 else "ArrowLeft"))
                figures.setdefault("More like this", []).append(timed_more_like_this(page))
            page.close()
            pages = [open_page(browser, f"{url}/?q=start+{i}") for i in range(args.pages)]
            for round_ in range(args.repeat):
                for i, each in enumerate(pages):
                    search_words(each, f"{WORDS[(round_ + i) % 20]} {WORDS[(i * 5 + round_) % 20]} {round_} {i}")
                figures.setdefault(f"{args.pages} pages at once (slowest)", []).append(max(finish(each) for each in pages))
            browser.close()
    print(f"{args.products} products, {args.size} models, medians of {args.repeat} (ms, click -> grid with all photos):")
    for name, values in figures.items():
        print(f"  {name:<32} {statistics.median(values):7.0f}   (all: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
