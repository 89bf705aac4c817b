"""CPU fast path: int8 dynamic quantisation of the models' linear layers, behind a check.

Quantised weights change the vectors a little; how much depends on the real weights,
which random benchmark models cannot tell. So the fast path stays off until a user
runs the agreement check against the models on their machine and it passes:

    python -m core.fastpath check --images ../shared/data/fashion-products/images \\
        --captions ../shared/data/fashion-products/products.csv

The check records its verdict next to the models (keyed by the weights' probe vector);
`VITRINE_FAST_PATH=auto` (the default) then uses the fast path where a pass is recorded,
`on` forces it, `off` never uses it. Records live in `$VITRINE_MODELS_DIR/.fastpath/`
(or `$VITRINE_CACHE_DIR`, else `~/.cache/vitrine/fastpath`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

FAST_PATH_ENV = "VITRINE_FAST_PATH"
MIN_COSINE = 0.99
MIN_TOP10_OVERLAP = 0.9
RECORD_DIR_ENV = "VITRINE_CACHE_DIR"


@dataclass
class Agreement:
    """How closely the quantised model reproduces the fp32 one on a set of photos and captions."""

    model: str
    items: int
    image_cosine_min: float
    text_cosine_min: float
    text_to_image_top10_overlap: float
    image_to_image_top10_overlap: float

    @property
    def passed(self) -> bool:
        return (
            min(self.image_cosine_min, self.text_cosine_min) >= MIN_COSINE
            and min(self.text_to_image_top10_overlap, self.image_to_image_top10_overlap) >= MIN_TOP10_OVERLAP
        )


def quantize(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every nn.Linear swapped, in place, for int8 weights and dynamic int8 activations."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks the quantised tensor API as deprecated
        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def mode() -> str:
    value = os.environ.get(FAST_PATH_ENV, "auto").strip().lower()
    return value if value in ("auto", "on", "off") else "auto"


def wanted(key: str, requested: bool | None, probe: Callable[[], np.ndarray]) -> bool:
    """Whether to quantise `key`: as requested, else as VITRINE_FAST_PATH says ('auto': a recorded pass)."""
    if requested is not None:
        return requested
    setting = mode()
    return setting == "on" or (setting == "auto" and check_passed(key, probe()))


def weights_id(probe: np.ndarray) -> str:
    """A short fingerprint of a model's exact weights, from its probe vector."""
    return hashlib.sha1(np.round(probe, 4).astype(np.float32).tobytes()).hexdigest()[:16]


def _record_dir() -> Path:
    """Beside the offline models when there are some (the verdict travels with them), else the user cache."""
    from core.models import models_dir

    configured = os.environ.get(RECORD_DIR_ENV)
    if configured:
        return Path(configured)
    local = models_dir()
    return local / ".fastpath" if local is not None else Path.home() / ".cache" / "vitrine" / "fastpath"


def record_path(key: str, probe: np.ndarray) -> Path:
    return _record_dir() / f"{key}-{weights_id(probe)}.json"


def save_record(key: str, probe: np.ndarray, agreement: Agreement) -> Path:
    path = record_path(key, probe)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**asdict(agreement), "passed": agreement.passed}, indent=2), encoding="utf-8")
    return path


def check_passed(key: str, probe: np.ndarray) -> bool:
    path = record_path(key, probe)
    try:
        return bool(json.loads(path.read_text(encoding="utf-8"))["passed"])
    except (OSError, ValueError, KeyError):
        return False


def _top10_overlap(queries_a: np.ndarray, queries_b: np.ndarray, base_a: np.ndarray, base_b: np.ndarray) -> float:
    k = min(10, len(base_a))
    top_a = np.argsort(-(queries_a @ base_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ base_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b)]))


def measure_agreement(key: str, images: list, captions: list[str]) -> tuple[Agreement, np.ndarray]:
    """Encode the same photos and captions with fp32 and int8 models and compare.

    Also returns the fp32 probe vector: the verdict is recorded under the weights, not the setting.
    """
    from core.models import load_encoder, probe_vector

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
    ), probe_vector(exact)


def main(argv: list[str] | None = None) -> int:
    from core.catalog import CatalogError, load_catalog
    from core.images import ImageError, decode_image
    from core.models import ModelLoadError, available_models

    parser = argparse.ArgumentParser(prog="python -m core.fastpath", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="compare int8 with fp32 on your photos and record the verdict")
    check.add_argument("--images", type=Path, required=True)
    check.add_argument("--captions", type=Path)
    check.add_argument("--limit", type=int, default=500)
    check.add_argument("--models", default=",".join(spec.key for spec in available_models()))
    args = parser.parse_args(argv)
    try:
        catalog = load_catalog(images=args.images, captions=args.captions)
        images, captions = [], []
        for item in catalog.items:
            if len(images) == args.limit:
                break
            try:
                images.append(decode_image(item.read_bytes()))
            except (ImageError, OSError):
                continue
            captions.append(item.caption or item.id)
        verdict = 0
        for key in (k.strip() for k in args.models.split(",") if k.strip()):
            agreement, probe = measure_agreement(key, images, captions)
            path = save_record(key, probe, agreement)
            status = "PASS" if agreement.passed else "FAIL"
            print(
                f"{status} {key}: {agreement.items} items, min cosine image {agreement.image_cosine_min:.4f} "
                f"text {agreement.text_cosine_min:.4f}, top-10 overlap text->image "
                f"{agreement.text_to_image_top10_overlap:.3f} image->image {agreement.image_to_image_top10_overlap:.3f}"
                f" (recorded in {path})"
            )
            verdict |= 0 if agreement.passed else 1
    except (CatalogError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return verdict


if __name__ == "__main__":
    sys.exit(main())
