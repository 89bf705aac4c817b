"""Not" words on the shared catalog: share of the unwanted colour in the top 10 before/after, share on topic.

    python -m bench.steering_quality --index index_data/fashion          # an index built with the real models
    python -m bench.steering_quality --random-models --limit 2000         # no weights here: tiny random models

Each row is a query ("shoes") with a "not" word naming a colour ("black"): the top 10 is
searched without and with `not_text`, and the bench counts how many hits have that
baseColour (should fall) and how many still belong to the query's subCategory (should stay).
With --random-models the index is built on the fly from the shared photos with tiny random
CLIPs (core/random_models.py): the encoders know nothing, so the figures only show the
pipeline running, not what steering does with CLIP.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from core.search import SearchEngine
from core.settings import MODELS_DIR_ENV

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-products"
K = 10
# (query, not word, the baseColour it names, the subCategories that count as on topic)
CASES = [
    ("shoes", "black", "Black", {"Shoes", "Sandal", "Flip Flops"}),
    ("t-shirt for men", "white", "White", {"Topwear"}),
    ("watch", "black", "Black", {"Watches"}),
    ("handbag", "brown", "Brown", {"Bags"}),
    ("jeans", "blue", "Blue", {"Bottomwear"}),
]


def random_index(limit: int, folder: Path) -> Path:
    """An index of the first `limit` shared photos, built with tiny random models (no weights here)."""
    from core.build_index import build_index
    from core.catalog import from_folder
    from core.random_models import make_models

    os.environ[MODELS_DIR_ENV] = str(make_models(folder / "models", "tiny"))
    catalog = from_folder(DATA_DIR / "images", DATA_DIR / "products.csv", name="fashion")
    out = folder / "fashion"
    build_index(catalog, out, limit=limit)
    return out


def share(hits, key: str, values: set[str]) -> float:
    return sum(hit.metadata.get(key) in values for hit in hits) / max(1, len(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="an index of the shared catalog (with its metadata)")
    parser.add_argument("--random-models", action="store_true", help="build one here with tiny random models")
    parser.add_argument("--limit", type=int, default=2000, help="photos in the --random-models index")
    parser.add_argument("--model", default="clip-ViT-B-32")
    args = parser.parse_args()
    if (args.index is None) == (not args.random_models):
        parser.error("give --index or --random-models")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.index or random_index(args.limit, Path(scratch))
        engine = SearchEngine(folder)
        print(f"{engine.count} photos, model {args.model}, top {K}")
        print(f"| query | not | {'colour':>6} before | after | on topic before | after |")
        print("|---|---|---|---|---|---|")
        for text, word, colour, topic in CASES:
            before = engine.search(text=text, k=K, model=args.model).hits
            after = engine.search(text=text, not_text=[word], k=K, model=args.model).hits
            print(
                f"| {text} | {word} | {share(before, 'baseColour', {colour}):.1f} | "
                f"{share(after, 'baseColour', {colour}):.1f} | {share(before, 'subCategory', topic):.1f} | "
                f"{share(after, 'subCategory', topic):.1f} |"
            )


if __name__ == "__main__":
    main()
