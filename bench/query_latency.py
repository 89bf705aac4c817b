"""Warm query latency through SearchEngine against the bare model, and the int8 fast path.

    python -m bench.query_latency [--products 500] [--repeat 30]

Text: `SearchEngine.search(text=...)` end to end (encode, both indexes, fusion, metadata)
against the bare text-tower forward pass on the same, already tokenised input.
Image: a 1000x1000 JPEG through `SearchEngine.search(image=bytes)` (decode, preprocess,
encode, search) against a full decode plus the bare image-tower forward on a prepared
tensor. Every query is new (no cache helps), the two sides alternate so the machine's
load falls on both alike, and the figures are medians of one run. Then the same encoders
with int8 weights (core/fastpath.py): speed-up and agreement with fp32 on these inputs.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.setup import DATA, DEFAULT_WORK, prepare


def big_jpeg(seed: int) -> bytes:
    """A real product photo blown up to 1000x1000, one pixel changed so every query is new."""
    photo = Image.open(sorted((DATA / "images").glob("*.jpg"))[-1 - seed]).convert("RGB").resize((1000, 1000))
    photo.putpixel((0, 0), (seed % 256, 0, 0))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def report(name: str, ours: list[float], bare: list[float], goal: float) -> float:
    ratio = statistics.median(ours) / statistics.median(bare)
    verdict = "ok" if ratio <= goal else "over goal"
    print(f"{name}: engine {statistics.median(ours):.1f} ms vs bare {statistics.median(bare):.1f} ms "
          f"-> ratio {ratio:.3f} (goal <= {goal}, {verdict})")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    folder = prepare(args.work, args.products)

    from core.images import decode_image
    from core.models import CLIP_KEY, load_encoder
    from core.search import SearchEngine

    engine = SearchEngine(folder)
    encoder = engine.encoder(CLIP_KEY)
    clip = encoder.model[0]
    tokenizer, processor = clip.processor.tokenizer, clip.processor.image_processor
    captions = [line.rsplit(",", 1)[-1] for line in (DATA / "products.csv").read_text().splitlines()[1:]]
    queries = [f"{captions[-1 - i]} {i}" for i in range(args.repeat)]
    photos = [big_jpeg(i) for i in range(args.repeat)]
    pixels = processor(images=[decode_image(photos[0])], return_tensors="pt")["pixel_values"]
    engine.search(text="warm up", k=12)
    engine.search(image=big_jpeg(999), k=12)

    text_engine, text_bare, image_engine, image_bare = [], [], [], []
    with torch.inference_mode():
        for text, photo in zip(queries, photos):
            tokens = tokenizer([text], return_tensors="pt")
            text_bare.append(ms(lambda: clip.model.get_text_features(**tokens)))
            text_engine.append(ms(lambda: engine.search(text=text, k=12)))
            decode = ms(lambda: Image.open(io.BytesIO(photo)).convert("RGB"))
            image_bare.append(decode + ms(lambda: clip.model.get_image_features(pixel_values=pixels)))
            image_engine.append(ms(lambda: engine.search(image=photo, k=12)))
    print(f"{engine.count} products, full-size random models, torch threads {torch.get_num_threads()}")
    text_ratio = report("text query", text_engine, text_bare, 1.15)
    image_ratio = report("image query", image_engine, image_bare, 1.2)

    exact, fast = load_encoder(CLIP_KEY, "cpu", fast=False), load_encoder(CLIP_KEY, "cpu", fast=True)
    images = [decode_image(photo, min_side=224) for photo in photos]
    speed: dict[str, dict[str, list[float]]] = {"text": {"fp32": [], "int8": []}, "image": {"fp32": [], "int8": []}}
    for text, image in zip(queries, images):
        for name, model in (("fp32", exact), ("int8", fast)):
            speed["text"][name].append(ms(lambda: model.encode_texts([text])))
            speed["image"][name].append(ms(lambda: model.encode_images([image])))
    text_cos = np.sum(exact.encode_texts(queries) * fast.encode_texts(queries), axis=1)
    image_cos = np.sum(exact.encode_images(images) * fast.encode_images(images), axis=1)
    for kind, goal, cosines in (("text", 1.5, text_cos), ("image", 1.8, image_cos)):
        fp32, int8 = statistics.median(speed[kind]["fp32"]), statistics.median(speed[kind]["int8"])
        print(f"fast path {kind}: fp32 {fp32:.1f} ms, int8 {int8:.1f} ms -> {fp32 / int8:.2f}x (goal >= {goal}); "
              f"cosine to fp32 min {cosines.min():.4f} (random weights: run `python -m core.fastpath check` on real ones)")
    print(f"result: text ratio {text_ratio:.3f}, image ratio {image_ratio:.3f}, "
          f"fast path {statistics.median(speed['text']['fp32']) / statistics.median(speed['text']['int8']):.2f}x text, "
          f"{statistics.median(speed['image']['fp32']) / statistics.median(speed['image']['int8']):.2f}x image")


if __name__ == "__main__":
    main()
