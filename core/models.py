"""Model registry and loading through sentence-transformers.

The two sentence-transformers models live in one CLIP ViT-B/32 embedding space: the
multilingual model only encodes text, and its images are the `clip-ViT-B-32` image
vectors. FashionCLIP is a plain transformers CLIP checkpoint (no modules.json), loaded
through sentence-transformers' CLIP module all the same; it is its own image tower, with
its own image index. Weights come from the hub, or, for offline use, from
`$VITRINE_MODELS_DIR/<key>/`. Every other folder there with a `vitrine.json` descriptor
(a fine-tuned model, see core/training/finetune.py) is a model key too.

    python -m core.models download --to ./models
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core import cli, quantize, settings
from core.batching import MicroBatcher
from core.descriptor import DESCRIPTOR_FILE, SELF_TOWER, DescriptorError, read_descriptor
from core.devices import pick_device
from core.images import limit_aspect_ratio

CLIP_KEY = "clip-ViT-B-32"
MULTILINGUAL_KEY = "clip-ViT-B-32-multilingual-v1"
FASHION_KEY = "fashion-clip"
# Folder layouts, and the file that marks a folder as one.
SENTENCE_TRANSFORMERS_LAYOUT = "sentence-transformers"  # modules.json names the modules
TRANSFORMERS_CLIP_LAYOUT = "transformers-clip"  # config.json of a transformers CLIPModel, processor, tokenizer
LAYOUT_MARKERS = {SENTENCE_TRANSFORMERS_LAYOUT: "modules.json", TRANSFORMERS_CLIP_LAYOUT: "config.json"}
# What the builder indexes and the app offers first when no --models is given.
DEFAULT_MODELS = (CLIP_KEY, MULTILINGUAL_KEY)
# Hub files a transformers CLIP folder loads from: weights in safetensors only (the repo also holds
# pytorch_model.bin, the same weights again).
_CLIP_FILES = ["*.json", "*.txt", "*.safetensors"]
# Longer text adds nothing (CLIP reads 77 tokens) and only costs tokenizer time.
MAX_TEXT_CHARS = 1000
PROBE_TEXT = "a photo of a red summer dress"


@dataclass(frozen=True)
class ModelSpec:
    """What a model key is: where it comes from and what it can encode."""

    key: str
    hub_id: str
    encodes_images: bool
    image_tower: str
    hint: str
    layout: str = SENTENCE_TRANSFORMERS_LAYOUT


def _hub_model(key: str, encodes_images: bool, hint: str) -> ModelSpec:
    """A sentence-transformers hub model in CLIP ViT-B/32's space (its images go through CLIP's tower)."""
    return ModelSpec(key, f"sentence-transformers/{key}", encodes_images, CLIP_KEY, hint)


REGISTRY: dict[str, ModelSpec] = {
    CLIP_KEY: _hub_model(CLIP_KEY, True, "OpenAI CLIP: images and English text."),
    MULTILINGUAL_KEY: _hub_model(
        MULTILINGUAL_KEY, False, "Understands text in 50+ languages (German, French, Spanish, ...)."
    ),
    FASHION_KEY: ModelSpec(
        key=FASHION_KEY,
        hub_id="patrickjohncyh/fashion-clip",
        encodes_images=True,
        image_tower=FASHION_KEY,
        hint="FashionCLIP: CLIP fine-tuned on 700k fashion products; images and English text.",
        layout=TRANSFORMERS_CLIP_LAYOUT,
    ),
}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the key and the remedy."""


def get_spec(key: str) -> ModelSpec:
    """The registry entry for `key` (hub or local), or a clear error listing the known keys."""
    spec = REGISTRY.get(key) or local_models().get(key)
    if spec is None:
        known = ", ".join(known_spec.key for known_spec in available_models())
        raise ModelLoadError(f"Unknown model '{key}'. Known models: {known}.")
    return spec


def available_models() -> list[ModelSpec]:
    """Every model key a user can pick (the app's selector lists these): hub keys, then local ones."""
    return [*REGISTRY.values(), *local_models().values()]


def local_models() -> dict[str, ModelSpec]:
    """Models under $VITRINE_MODELS_DIR that carry a descriptor, read afresh on each call so a
    newly fine-tuned model shows up without a restart. A broken one is skipped with a warning."""
    root = settings.current().models_dir
    if root is None or not root.is_dir():
        return {}
    found: dict[str, ModelSpec] = {}
    for folder in sorted(root.iterdir()):
        if folder.name in REGISTRY or folder.name.startswith(".") or not (folder / DESCRIPTOR_FILE).is_file():
            continue
        try:
            layout = folder_layout(folder)
            if layout is None:
                raise DescriptorError("the folder has a descriptor but no modules.json (nor a transformers CLIP config.json)")
            descriptor = read_descriptor(folder)
        except DescriptorError as err:
            warnings.warn(f"Skipping model folder {folder}: {err}", stacklevel=2)
            continue
        tower = folder.name if descriptor.image_tower == SELF_TOWER else descriptor.image_tower
        found[folder.name] = ModelSpec(
            key=folder.name,
            hub_id=str(folder),
            encodes_images=descriptor.encodes_images,
            image_tower=tower,
            hint=descriptor.hint or f"Local model based on {descriptor.base}.",
            layout=layout,
        )
    towers = {**REGISTRY, **found}
    usable = {}
    for key, spec in found.items():
        tower = towers.get(spec.image_tower)
        if tower is None or tower.image_tower != tower.key:
            warnings.warn(
                f"Skipping model folder {root / key}: its image tower '{spec.image_tower}' is not a model "
                "that encodes its own images.",
                stacklevel=2,
            )
            continue
        usable[key] = spec
    return usable


def folder_layout(folder: Path) -> str | None:
    """Which layout a model folder has (modules.json wins: a sentence-transformers folder may also
    hold a config.json), or None when it is neither."""
    for layout, marker in LAYOUT_MARKERS.items():
        if (folder / marker).is_file():
            return layout
    return None


def _remedy() -> str:
    return (
        "To run offline: on a connected machine run `python -m core.models download --to DIR`, "
        f"copy DIR here and set {settings.MODELS_DIR_ENV}=DIR."
    )


def _model_source(spec: ModelSpec) -> tuple[str, bool]:
    """Where the weights of `spec` come from (a local folder or a hub id), and whether offline."""
    configured = settings.current()
    local_root = configured.models_dir
    if local_root is None:
        return spec.hub_id, configured.hub_offline
    folder = local_root / spec.key
    marker = LAYOUT_MARKERS[spec.layout]
    if not (folder / marker).is_file():
        kind = "sentence-transformers" if spec.layout == SENTENCE_TRANSFORMERS_LAYOUT else "transformers CLIP"
        state = f"is not a {kind} folder (no {marker})" if folder.is_dir() else "does not exist"
        raise ModelLoadError(
            f"Model '{spec.key}': {folder} {state}. {settings.MODELS_DIR_ENV} must hold one sub-folder per model key. "
            + _remedy()
        )
    return str(folder), True


def _load_sentence_transformer(spec: ModelSpec, device: str):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    source, offline = _model_source(spec)
    try:
        if spec.layout == TRANSFORMERS_CLIP_LAYOUT:
            return _clip_sentence_transformer(source, device, offline)
        return SentenceTransformer(source, device=device, local_files_only=offline)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"Model '{spec.key}' could not be loaded from {source}: {reason[:300]}. " + _remedy()
        ) from err


def _clip_sentence_transformer(source: str, device: str, offline: bool):
    """A plain transformers CLIP checkpoint (a hub id or a folder) as a one-module SentenceTransformer:
    the CLIP module that `clip-ViT-B-32`'s modules.json names, over the whole folder, so texts and
    images encode exactly as they do for that model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import CLIPModel

    return SentenceTransformer(modules=[CLIPModel.load(source, local_files_only=offline)], device=device)


def load_private_copy(key: str, device: str = "auto"):
    """A fresh, uncached SentenceTransformer for `key`: fine-tuning changes its weights, so it
    must never be the instance get_encoder hands to searches."""
    return _load_sentence_transformer(get_spec(key), pick_device(device))


def save_in_layout_of(base_key: str, model, out: Path) -> None:
    """Save `model` with the folder layout and module type names of `base_key`'s modules.json,
    so the copy loads through exactly the code path of the model it was fine-tuned from."""
    spec = get_spec(base_key)
    if spec.layout == TRANSFORMERS_CLIP_LAYOUT:
        out.mkdir(parents=True, exist_ok=True)
        model[0].save(str(out))  # the CLIP module writes the transformers folder: config, weights, processor
        return
    source, offline = _model_source(spec)
    layout = _source_file(source, offline, "modules.json")
    if layout is None:
        raise ModelLoadError(f"Model '{base_key}' has no modules.json at {source}; it cannot be copied.")
    entries = json.loads(layout.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        folder = out / entry["path"]
        folder.mkdir(parents=True, exist_ok=True)
        model[int(entry["idx"])].save(str(folder))
    (out / "modules.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    settings = _source_file(source, offline, "config_sentence_transformers.json")
    if settings is not None:
        (out / settings.name).write_bytes(settings.read_bytes())


def _source_file(source: str, offline: bool, name: str) -> Path | None:
    """One file of a model folder or hub repo, or None when it has no such file."""
    if Path(source).is_dir():
        path = Path(source) / name
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(source, name, local_files_only=offline))
    except EntryNotFoundError:
        return None


class Encoder:
    """L2-normalised float32 vectors for texts and images of one model key."""

    def __init__(self, spec: ModelSpec, model, image_encoder: Encoder | None, fast: bool = False) -> None:
        self.spec = spec
        self.model = model
        self.image_encoder = image_encoder or self  # the encoder whose tower reads this key's images
        self.dim = int(model.get_embedding_dimension())
        self.device = str(model.device)
        self.fast = fast
        self._probe: np.ndarray | None = None
        # One forward pass at a time per model, shared by concurrent callers (many visitors of one
        # process): their inputs are batched together (core/batching.py) rather than queued one by one.
        self._texts = MicroBatcher(self._encode_texts_now)
        self._images = MicroBatcher(self._encode_images_now)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        clipped = [text[:MAX_TEXT_CHARS] for text in texts]
        return self._texts(clipped, batch_size).reshape(len(clipped), self.dim)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Images go through this key's image tower (CLIP's, for the multilingual model)."""
        encoder = self.image_encoder
        limited = [limit_aspect_ratio(image) for image in images]
        return encoder._images(limited, batch_size).reshape(len(images), encoder.dim)

    def _encode_texts_now(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def _encode_images_now(self, images: list[Image.Image], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(images, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(images), self.dim)

    def probe(self) -> np.ndarray:
        """The vector of a fixed sentence: a fingerprint of the exact weights (see core/weights.py).

        Kept once computed: loading (the fast-path record) and every index check ask for it.
        """
        if self._probe is None:
            self._probe = self.encode_texts([PROBE_TEXT])[0]
        return self._probe


def load_encoder(key: str, device: str = "auto", fast: bool | None = None) -> Encoder:
    """A newly loaded encoder; `fast` None follows VITRINE_FAST_PATH (see core/quantize.py)."""
    spec = get_spec(key)
    resolved = pick_device(device)
    if spec.image_tower == key:
        tower = None
    elif fast is None:
        tower = get_encoder(spec.image_tower, resolved)
    else:
        tower = load_encoder(spec.image_tower, resolved, fast)
    encoder = Encoder(spec, _load_sentence_transformer(spec, resolved), tower)
    configured = settings.current()
    if resolved == "cpu" and quantize.wanted(
        key, fast, configured.fast_path, configured.fastpath_record_dir, encoder.probe
    ):
        encoder.model = quantize.quantize(encoder.model)
        encoder.fast, encoder._probe = True, None
    return encoder


_cache: dict[tuple[str, str], Encoder] = {}
_cache_lock = threading.RLock()


def get_encoder(key: str, device: str = "auto") -> Encoder:
    """The encoder for `key`, loaded once per process and device."""
    resolved = pick_device(device)
    with _cache_lock:
        cached = _cache.get((key, resolved))
        if cached is None:
            cached = load_encoder(key, resolved)
            _cache[(key, resolved)] = cached
        return cached


def clear_cache() -> None:
    """Forget loaded models (tests switch model folders)."""
    with _cache_lock:
        _cache.clear()


def download(target: Path, keys: Sequence[str] = tuple(REGISTRY)) -> list[Path]:
    """Fetch models in their hub layout into target/<key>/ for offline use (every hub key by default)."""
    from huggingface_hub import snapshot_download

    folders = []
    for key in keys:
        spec = get_spec(key)
        if key not in REGISTRY:
            raise ModelLoadError(f"Model '{key}' is a local model ({spec.hub_id}); only hub models can be downloaded.")
        folder = target / key
        try:
            only = {"allow_patterns": _CLIP_FILES} if spec.layout == TRANSFORMERS_CLIP_LAYOUT else {}
            snapshot_download(spec.hub_id, local_dir=folder, **only)
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
    fetch = commands.add_parser("download", help="download the hub models for offline use")
    fetch.add_argument("--to", type=Path, default=settings.current().models_dir or Path("models"), help="target folder")
    fetch.add_argument("--models", default=",".join(REGISTRY), help="comma-separated model keys")
    args = parser.parse_args(argv)
    return cli.run(lambda: _download(args.to, args.models), ModelLoadError)


def _download(target: Path, models: str) -> int:
    keys = [get_spec(key.strip()).key for key in models.split(",") if key.strip()]
    for folder in download(target, keys):
        print(f"saved {folder}")
    print(f"Now set {settings.MODELS_DIR_ENV}={target.resolve()} to run without network.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
