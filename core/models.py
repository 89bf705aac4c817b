"""Model registry and loading through sentence-transformers.

Both models live in one CLIP ViT-B/32 embedding space: the multilingual model only
encodes text, and its images are the `clip-ViT-B-32` image vectors. Weights come from
the hub, or, for offline use, from `$VITRINE_MODELS_DIR/<key>/`.

    python -m core.models download --to ./models
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MODELS_DIR_ENV = "VITRINE_MODELS_DIR"
CLIP_KEY = "clip-ViT-B-32"
MULTILINGUAL_KEY = "clip-ViT-B-32-multilingual-v1"
# Longer text adds nothing (CLIP reads 77 tokens) and only costs tokenizer time.
MAX_TEXT_CHARS = 1000
# CLIP resizes the short side to 224 px, then keeps the centre square: a 40000x1 photo would first
# grow to 8,960,000x224 px (gigabytes). Cropping such strips to 4:1 around the centre keeps the same
# centre square at a bounded cost; photos up to 4:1 are untouched.
MAX_ASPECT_RATIO = 4.0


@dataclass(frozen=True)
class ModelSpec:
    """What a model key is: where it comes from and what it can encode."""

    key: str
    hub_id: str
    encodes_images: bool
    image_tower: str
    hint: str


REGISTRY: dict[str, ModelSpec] = {
    CLIP_KEY: ModelSpec(
        key=CLIP_KEY,
        hub_id=f"sentence-transformers/{CLIP_KEY}",
        encodes_images=True,
        image_tower=CLIP_KEY,
        hint="OpenAI CLIP: images and English text.",
    ),
    MULTILINGUAL_KEY: ModelSpec(
        key=MULTILINGUAL_KEY,
        hub_id=f"sentence-transformers/{MULTILINGUAL_KEY}",
        encodes_images=False,
        image_tower=CLIP_KEY,
        hint="Understands text in 50+ languages (German, French, Spanish, ...).",
    ),
}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the key and the remedy."""


def get_spec(key: str) -> ModelSpec:
    """The registry entry for `key`, or a clear error listing the known keys."""
    try:
        return REGISTRY[key]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ModelLoadError(f"Unknown model '{key}'. Known models: {known}.") from None


def available_models() -> list[ModelSpec]:
    """Every model key a user can pick (the app's selector lists these)."""
    return list(REGISTRY.values())


def models_dir() -> Path | None:
    """The offline model folder, when the user configured one."""
    value = os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def pick_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu, unless the caller asked for one."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _remedy() -> str:
    return (
        "To run offline: on a connected machine run `python -m core.models download --to DIR`, "
        f"copy DIR here and set {MODELS_DIR_ENV}=DIR."
    )


def _load_sentence_transformer(spec: ModelSpec, device: str):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local_root = models_dir()
    if local_root is not None:
        folder = local_root / spec.key
        if not (folder / "modules.json").is_file():
            state = "is not a sentence-transformers folder (no modules.json)" if folder.is_dir() else "does not exist"
            raise ModelLoadError(
                f"Model '{spec.key}': {folder} {state}. {MODELS_DIR_ENV} must hold one sub-folder per model key. "
                + _remedy()
            )
        source, offline = str(folder), True
    else:
        source, offline = spec.hub_id, os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return SentenceTransformer(source, device=device, local_files_only=offline)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"Model '{spec.key}' could not be loaded from {source}: {reason[:300]}. " + _remedy()
        ) from err


def limit_aspect_ratio(image: Image.Image, max_ratio: float = MAX_ASPECT_RATIO) -> Image.Image:
    """The centre of an extreme strip, at most max_ratio:1; other images are returned as they are."""
    width, height = image.size
    if width > max_ratio * height:
        keep = max(1, round(max_ratio * height))
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > max_ratio * width:
        keep = max(1, round(max_ratio * width))
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image


class Encoder:
    """L2-normalised float32 vectors for texts and images of one model key."""

    def __init__(self, spec: ModelSpec, model, image_encoder: Encoder | None) -> None:
        self.spec = spec
        self.model = model
        self._image_encoder = image_encoder or self
        self.dim = int(model.get_embedding_dimension())
        self.device = str(model.device)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        clipped = [text[:MAX_TEXT_CHARS] for text in texts]
        vectors = self.model.encode(
            clipped, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(clipped), self.dim)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Images go through this key's image tower (CLIP's, for the multilingual model)."""
        encoder = self._image_encoder
        vectors = encoder.model.encode(
            [limit_aspect_ratio(image) for image in images],
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(images), encoder.dim)


_cache: dict[tuple[str, str], Encoder] = {}
_cache_lock = threading.RLock()


def get_encoder(key: str, device: str = "auto") -> Encoder:
    """The encoder for `key`, loaded once per process and device."""
    spec = get_spec(key)
    resolved = pick_device(device)
    with _cache_lock:
        cached = _cache.get((key, resolved))
        if cached is None:
            tower = None if spec.image_tower == key else get_encoder(spec.image_tower, resolved)
            cached = Encoder(spec, _load_sentence_transformer(spec, resolved), tower)
            _cache[(key, resolved)] = cached
        return cached


def clear_cache() -> None:
    """Forget loaded models (tests switch model folders)."""
    with _cache_lock:
        _cache.clear()


def download(target: Path, keys: Sequence[str] = tuple(REGISTRY)) -> list[Path]:
    """Fetch models in their hub layout into target/<key>/ for offline use."""
    from huggingface_hub import snapshot_download

    folders = []
    for key in keys:
        spec = get_spec(key)
        folder = target / key
        try:
            snapshot_download(spec.hub_id, local_dir=folder)
        except Exception as err:
            raise ModelLoadError(
                f"Model '{key}' could not be downloaded from the hub ({spec.hub_id}): "
                f"{str(err).splitlines()[0][:300] if str(err) else type(err).__name__}. Check the network connection."
            ) from err
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.models", description="Vitrine model tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download both models for offline use")
    fetch.add_argument("--to", type=Path, default=models_dir() or Path("models"), help="target folder")
    fetch.add_argument("--models", default=",".join(REGISTRY), help="comma-separated model keys")
    args = parser.parse_args(argv)
    try:
        keys = [get_spec(key.strip()).key for key in args.models.split(",") if key.strip()]
        for folder in download(args.to, keys):
            print(f"saved {folder}")
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Now set {MODELS_DIR_ENV}={args.to.resolve()} to run without network.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
