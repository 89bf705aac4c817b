"""The fast path's agreement check: int8 against fp32 on the user's own photos and captions.

How much int8 weights move the vectors depends on the real weights, which random
benchmark models cannot tell. This check measures it on the machine that will serve,
and records the verdict that model loading follows (core/quantize.py):

    python -m core.fastpath check --images ../shared/data/fashion-products/images \\
        --captions ../shared/data/fashion-products/products.csv

Records live beside the offline models (`$VITRINE_MODELS_DIR/.fastpath/`), else in
`$VITRINE_CACHE_DIR/fastpath/` (see core/settings.py).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from core import cli, settings
from core.catalog import Catalog
from core.images import ImageError, decode_image
from core.models import ModelLoadError, available_models, load_encoder
from core.quantize import Agreement, save_record


def _top10_overlap(queries_a: np.ndarray, queries_b: np.ndarray, base_a: np.ndarray, base_b: np.ndarray) -> float:
    k = min(10, len(base_a))
    top_a = np.argsort(-(queries_a @ base_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ base_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b)]))


def measure_agreement(key: str, images: list, captions: list[str]) -> tuple[Agreement, np.ndarray]:
    """Encode the same photos and captions with fp32 and int8 models and compare.

    Also returns the fp32 probe vector: the verdict is recorded under the weights, not the setting.
    """
    exact = load_encoder(key, "cpu", fast=False)
    fast = load_encoder(key, "cpu", fast=True)
    image_exact, image_fast = exact.encode_images(images), fast.encode_images(images)
    text_exact, text_fast = exact.encode_texts(captions), fast.encode_texts(captions)
    return Agreement(
        model=key,
        items=len(images),
        image_cosine_min=float(np.min(np.sum(image_exact * image_fast, axis=1))),
        text_cosine_min=float(np.min(np.sum(text_exact * text_fast, axis=1))),
        text_to_image_top10_overlap=_top10_overlap(text_exact, text_fast, image_exact, image_fast),
        image_to_image_top10_overlap=_top10_overlap(image_exact, image_fast, image_exact, image_fast),
    ), exact.probe()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.fastpath", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="compare int8 with fp32 on your photos and record the verdict")
    cli.add_catalog_flags(check)
    check.add_argument("--limit", type=cli.positive, default=500, help="compare on at most this many photos")
    check.add_argument("--models", default=",".join(spec.key for spec in available_models()))
    args = parser.parse_args(argv)
    return cli.run(lambda: _check(args), ModelLoadError)


def _check(args: argparse.Namespace) -> int:
    """Exit code 0 when every model's int8 weights agree with fp32, 1 when one does not."""
    images, captions = _photos_and_captions(cli.catalog_of(args), args.limit)
    verdict = 0
    for key in (k.strip() for k in args.models.split(",") if k.strip()):
        agreement, probe = measure_agreement(key, images, captions)
        path = save_record(settings.current().fastpath_record_dir, key, probe, agreement)
        status = "PASS" if agreement.passed else "FAIL"
        print(
            f"{status} {key}: {agreement.items} items, min cosine image {agreement.image_cosine_min:.4f} "
            f"text {agreement.text_cosine_min:.4f}, top-10 overlap text->image "
            f"{agreement.text_to_image_top10_overlap:.3f} image->image {agreement.image_to_image_top10_overlap:.3f}"
            f" (recorded in {path})"
        )
        verdict |= 0 if agreement.passed else 1
    return verdict


def _photos_and_captions(catalog: Catalog, limit: int) -> tuple[list, list[str]]:
    """The first `limit` readable photos of the catalog, with their captions (or ids, without one)."""
    images, captions = [], []
    for item in catalog.items:
        if len(images) == limit:
            break
        try:
            images.append(decode_image(item.read_bytes()))
        except (ImageError, OSError):
            continue
        captions.append(item.caption or item.id)
    return images, captions


if __name__ == "__main__":
    sys.exit(main())
