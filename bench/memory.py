"""Resident memory with the models loaded and a 50k-product index being searched.

    python -m bench.memory [--size 50000]
    python -m bench.memory --models clip-ViT-B-32,clip-ViT-B-32-multilingual-v1,fashion-clip

Loads a synthetic index (an image index per image tower and one caption index per model),
the full-size models, runs text, image and blended queries with every model, then prints
the peak resident set of the process.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

from PIL import Image

from bench.setup import DEFAULT_WORK, prepare_models, synthetic_folder, synthetic_index


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--models", default="clip-ViT-B-32,clip-ViT-B-32-multilingual-v1",
                        help="model keys the catalog is built for and searched with")
    parser.add_argument("--queries", type=int, default=20, help="rounds of queries per model")
    args = parser.parse_args()
    prepare_models(args.work)

    from core.build_index import image_towers
    from core.search import SearchEngine

    keys = tuple(key.strip() for key in args.models.split(",") if key.strip())
    towers = image_towers(keys)
    made_here = not (synthetic_folder(args.work, args.size, keys, towers) / "manifest.json").is_file()
    folder = synthetic_index(args.work, args.size, keys, towers)
    if made_here:
        print("note: this run made the index too (kept under --work): run it again for the figure", file=sys.stderr)
    before = peak_rss_gb()
    engine = SearchEngine(folder)
    for i in range(args.queries):
        for key in keys:
            engine.search(text=f"red summer dress {i}", model=key, k=48)
            engine.search(image=Image.new("RGB", (640, 480), (i * 10, 80, 120)), text="shoes", blend=0.4, model=key, k=48)
    peak = peak_rss_gb()
    print(f"peak resident set: {peak:.2f} GB with {', '.join(keys)} and a {args.size}-product index "
          f"(before the engine: {before:.2f} GB; goal <= 2.5 GB)")
    print(f"result: {peak:.2f} GB")


if __name__ == "__main__":
    main()
