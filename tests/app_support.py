"""Helpers for the app tests: open a page with AppTest, read what it shows, make query photos."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
# Generous: the first run of a session loads and warms the models; later runs take milliseconds.
RUN_TIMEOUT_S = 120


@pytest.fixture
def app_index(fashion_index, monkeypatch) -> Path:
    """The app sees one catalog: the session's index of real products, built with the tiny models."""
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(fashion_index.parent))
    return fashion_index


def open_app(query: dict[str, str] | None = None, page: str | None = None) -> AppTest:
    """Run app.py like a browser opening a link, then optionally go to another page."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=RUN_TIMEOUT_S)
    at.query_params.update(query or {})
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert_no_exception(at)
    return at


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def result_ids(at: AppTest) -> list[str]:
    """Product ids of the result cards, in rank order (from their "more like this" buttons)."""
    if not _has_grid(at, "results"):
        return []
    buttons = at.grid(key="results").button
    return [b.key.removeprefix("results-like-") for b in buttons if b.key.startswith("results-like-")]


def result_images(at: AppTest) -> int:
    return len(at.grid(key="results").image) if _has_grid(at, "results") else 0


def _has_grid(at: AppTest, key: str) -> bool:
    try:
        at.grid(key=key)
    except KeyError:
        return False
    return True


def latency(at: AppTest) -> str:
    """The summary line over the results ('12 of 300 products by words', with details '… · encode …')."""
    found = next((c.value for c in at.caption if " products by " in c.value), "")
    return found.removesuffix(" · searching with")


def texts(at: AppTest, kind: str) -> list[str]:
    """The bodies of every message element of one kind (error, warning, info, success, toast)."""
    return [element.value for element in getattr(at, kind)]


def photo_bytes(path: Path, fmt: str = "JPEG", tweak: int = 0) -> bytes:
    """A real product photo re-saved, optionally with one pixel changed so its bytes are new."""
    image = Image.open(path).convert("RGB")
    if tweak:
        image.putpixel((0, 0), (tweak % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
