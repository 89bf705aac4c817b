"""Automatic facets against the shared catalog's own labels: accuracy and coverage per confidence.

    python -m bench.autotag_quality --index index_data/fashion          # an index built with the real models
    python -m bench.autotag_quality --random-models --limit 1000         # no weights here: tiny random models

The zero-shot tagger (core/autotag.py, default vocabulary) tags the index's photos from
their stored vectors; its colour is compared with baseColour and its category with
subCategory (through CATEGORY_OF below). Coverage: share of photos tagged at that
confidence; accuracy: share of tagged photos whose tag agrees, among those whose true
label the vocabulary can name. With --random-models the encoders know nothing, so
accuracy sits at chance: the figures show the pipeline running, not CLIP.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.steering_quality import random_index
from core.autotag import DEFAULT_VOCABULARY, tag_photos
from core.index import IndexReader
from core.models import get_encoder

THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.9)
# The default category labels as the shared catalog's subCategory names them.
CATEGORY_OF = {
    "t-shirt": "Topwear", "shirt": "Topwear", "top": "Topwear", "sweater": "Topwear", "jacket": "Topwear",
    "dress": "Dress", "skirt": "Bottomwear", "jeans": "Bottomwear", "trousers": "Bottomwear", "shorts": "Bottomwear",
    "shoes": "Shoes", "sandals": "Sandal", "flip flops": "Flip Flops", "watch": "Watches", "handbag": "Bags",
    "backpack": "Bags", "wallet": "Wallets", "belt": "Belts", "sunglasses": "Eyewear", "jewellery": "Jewellery",
    "socks": "Socks", "cap": "Headwear", "perfume": "Fragrance", "lipstick": "Lips", "nail polish": "Nails",
}


def score(tags, truth: list[str], agree) -> list[tuple[float, float, float, int]]:
    """(threshold, coverage, accuracy, tagged) rows for one facet."""
    nameable = np.array([bool(t) for t in truth])
    labels = np.array([label or "" for label in tags.labels], dtype=object)
    rows = []
    for threshold in THRESHOLDS:
        tagged = (tags.confidence >= threshold) & (labels != "")
        judged = tagged & nameable
        right = sum(agree(labels[i], truth[i]) for i in np.flatnonzero(judged))
        rows.append((threshold, float(tagged.mean()), right / max(1, int(judged.sum())), int(judged.sum())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="an index of the shared catalog (with its metadata)")
    parser.add_argument("--random-models", action="store_true", help="build one here with tiny random models")
    parser.add_argument("--limit", type=int, default=1000, help="photos in the --random-models index")
    args = parser.parse_args()
    if (args.index is None) == (not args.random_models):
        parser.error("give --index or --random-models")
    with tempfile.TemporaryDirectory() as scratch:
        reader = IndexReader(args.index or random_index(args.limit, Path(scratch)))
        encoder = get_encoder(reader.image_model, "cpu")
        tags = {t.facet: t for t in tag_photos(np.asarray(reader.image_vectors), encoder.encode_texts, min_confidence=0.0)}
        metadata = [json.loads(m) if m else {} for m in reader.items["metadata"]]
        colours = {label.casefold() for label in DEFAULT_VOCABULARY["colour"]}
        colour_truth = [m.get("baseColour", "") if m.get("baseColour", "").casefold() in colours else "" for m in metadata]
        categories = set(CATEGORY_OF.values())
        category_truth = [m.get("subCategory", "") if m.get("subCategory", "") in categories else "" for m in metadata]
        facets = {
            "colour vs baseColour": score(tags["colour"], colour_truth, lambda tag, true: tag.casefold() == true.casefold()),
            "category vs subCategory": score(tags["category"], category_truth, lambda tag, true: CATEGORY_OF.get(tag) == true),
        }
        chance = {"colour vs baseColour": 1 / len(DEFAULT_VOCABULARY["colour"]),
                  "category vs subCategory": 1 / len(categories)}
        print(f"{reader.count} photos, image tower {reader.image_model}")
        print("| facet | min confidence | coverage | accuracy | judged photos | chance |")
        print("|---|---|---|---|---|---|")
        for name, rows in facets.items():
            for threshold, coverage, accuracy, judged in rows:
                print(f"| {name} | {threshold:.1f} | {coverage:.2f} | {accuracy:.2f} | {judged} | {chance[name]:.2f} |")


if __name__ == "__main__":
    main()
