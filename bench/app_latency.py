"""How fast the search page answers, measured through AppTest on full-size models.

    python -m bench.app_latency [--products 500] [--work /tmp/vitrine-bench] [--repeat 5]

Random weights in the real architectures (a ViT-B/32 CLIP and a DistilBERT-multilingual-sized
text encoder cost what the trained ones cost) are made once under --work, with an index of the
first N shared photos. Each figure is the server-side wall time of one rerun of app.py, the
time a visitor waits before the browser starts drawing (median of --repeat runs, fresh input
each time so no cache helps where it should not).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

from PIL import Image

from bench.setup import DATA, DEFAULT_WORK, ROOT, prepare


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def query_total_ms(at) -> float:
    """The 'total' of the page's own latency line: encoding and searching, without drawing the page."""
    line = next(c.value for c in at.caption if " products by " in c.value)
    return float(line.rsplit("total ", 1)[1].removesuffix(" ms"))


def fresh_photo(seed: int) -> bytes:
    """A real photo outside the index, one pixel changed so its bytes are new."""
    image = Image.open(sorted((DATA / "images").glob("*.jpg"))[-1 - seed]).convert("RGB")
    image.putpixel((0, 0), (seed % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    prepare(args.work, args.products)

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    figures = {"first page load (model load + warm-up)": [timed(at.run)]}
    at.toggle(key="details").set_value(True).run()  # the summary line then carries the timings
    rows: dict[str, list[float]] = {}
    for i in range(args.repeat):
        at.segmented_control(key="image_source").set_value("Upload")  # "more like this" left the catalog one
        text = at.text_input(key="text")
        rows.setdefault("new words (text encode + search + grid)", []).append(
            timed(lambda: text.set_value(f"red summer dress number {i}").run())
        )
        rows.setdefault("  of which encoding + search (latency line)", []).append(query_total_ms(at))
        slider = at.slider(key="k")
        rows.setdefault("rerun with nothing new (K changed)", []).append(
            timed(lambda: slider.set_value(12 + (i % 2) * 4).run())
        )
        upload = at.file_uploader(key="upload-0")
        rows.setdefault("new photo + words (decode + image encode + blend)", []).append(
            timed(lambda: upload.upload(f"p{i}.jpg", fresh_photo(i), "image/jpeg").run())
        )
        rows.setdefault("  of which decoding, encoding + search", []).append(query_total_ms(at))
        blend = at.slider(key="blend")
        rows.setdefault("blend changed (nothing re-encoded)", []).append(
            timed(lambda: blend.set_value(0.25 + 0.5 * (i % 2)).run())
        )
        upload.clear().run()
        like = at.grid(key="results").button[0]
        rows.setdefault("more like this (stored vector)", []).append(timed(lambda: like.click().run()))
    model = at.selectbox(key="model")
    figures["first multilingual query (model load + warm-up)"] = [
        timed(lambda: model.set_value("clip-ViT-B-32-multilingual-v1").run())
    ]
    figures |= rows
    assert not at.exception, [e.value for e in at.exception]
    print(f"search page, {args.products} products, full-size random models, {os.cpu_count()} CPUs")
    for name, values in figures.items():
        print(f"{statistics.median(values):9.1f} ms  {name}  (n={len(values)})")


if __name__ == "__main__":
    main()
