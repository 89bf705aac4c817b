"""Resident memory with both models loaded and a 50k-product index being searched.

    python -m bench.memory [--size 50000]

Loads a synthetic index (an image index and one caption index per model), both
full-size models, runs text, image and multilingual queries, then prints the peak
resident set of the process.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

from PIL import Image

from bench.setup import DEFAULT_WORK, prepare, synthetic_index


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    prepare(args.work, 500)

    from core.models import CLIP_KEY, MULTILINGUAL_KEY
    from core.search import SearchEngine

    folder = synthetic_index(args.work, args.size, (CLIP_KEY, MULTILINGUAL_KEY))
    before = peak_rss_gb()
    engine = SearchEngine(folder)
    for i in range(20):
        engine.search(text=f"red summer dress {i}", k=48)
        engine.search(text=f"rotes Sommerkleid {i}", model=MULTILINGUAL_KEY, k=48)
        engine.search(image=Image.new("RGB", (640, 480), (i * 10, 80, 120)), text="shoes", blend=0.4, k=48)
    peak = peak_rss_gb()
    print(f"peak resident set: {peak:.2f} GB with both models and a {args.size}-product index "
          f"(before the engine: {before:.2f} GB; goal <= 2.5 GB)")
    print(f"result: {peak:.2f} GB")


if __name__ == "__main__":
    main()
