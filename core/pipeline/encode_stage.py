"""The builder's encode stage: prepared pixels and captions -> unit float32 vectors on the chosen device.

Images go straight into the image tower that the sentence-transformers model wraps (the
reader already resized and cropped them with the model's own processor), so a batch is
one tensor and one forward pass per tower: in fp32 the vectors equal
`Encoder.encode_images` to 1e-5. A build may have several towers (CLIP and FashionCLIP,
say): each gets its own pixels and its own image index. On CUDA the pixels arrive in pinned memory and are copied without blocking, and
fp16/bf16 autocast runs the model; vectors are normalised and returned in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.devices import local_device
from core.index import vector_stem
from core.models import Encoder, ModelLoadError, get_encoder
from core.pipeline import BuildError
from core.pipeline.reader import DecodedBatch, ImagePrep

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: str) -> str:
    """'auto' is fp16 on CUDA (the GPU's fast path) and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise BuildError(f"Unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    return precision


class ImageTower:
    """The image half of a one-module sentence-transformers CLIP, called on prepared pixel batches."""

    def __init__(self, encoder: Encoder) -> None:
        modules = list(encoder.model)
        module = modules[0] if len(modules) == 1 else None
        config = getattr(module, "modality_config", {}).get("image")
        processor = getattr(getattr(module, "processor", None), "image_processor", None)
        if config is None or processor is None:
            names = ", ".join(type(m).__name__ for m in modules)
            raise ModelLoadError(
                f"Model '{encoder.spec.key}' cannot encode images in the builder: it needs a folder whose "
                f"modules.json names one CLIP module with an image processor, found: {names}."
            )
        self.model = module.model
        self.dim = encoder.dim
        self.device = torch.device(encoder.device)
        self.prep = ImagePrep(processor)
        self._forward = getattr(self.model, config["method"])
        self._output = config["method_output_name"]
        self._scale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        mean, std = (processor.image_mean, processor.image_std) if processor.do_normalize else ([0.0], [1.0])
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def embed(self, pixels: torch.Tensor, autocast: contextlib.AbstractContextManager) -> np.ndarray:
        """Unit vectors for a (n, 3, H, W) batch of resized, cropped, not yet normalised pixels."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = pixels.to(self.device, non_blocking=True).float()
        x = (x * self._scale - self._mean) / self._std
        with torch.inference_mode(), autocast:
            out = self._forward(pixel_values=x)
        features = out[self._output] if self._output else out
        return F.normalize(features.float(), dim=-1).cpu().numpy()


def caption_vectors(encoder: Encoder, captions: Sequence[str], batch_size: int) -> np.ndarray:
    """Caption vectors in row order; rows without a caption get a zero vector that matches nothing."""
    vectors = np.zeros((len(captions), encoder.dim), dtype=np.float32)
    present = [i for i, caption in enumerate(captions) if caption]
    if present:
        vectors[present] = encoder.encode_texts([captions[i] for i in present], batch_size=batch_size)
    return vectors


@dataclass(frozen=True)
class EncodePlan:
    """Which models the encode stage runs, where and how: small and picklable, so a remote worker
    loads its own models from it."""

    image_models: tuple[str, ...]  # one image index per tower; the first is the index's default
    caption_models: tuple[str, ...]
    device: str
    precision: str
    batch_size: int

    @property
    def outputs(self) -> list[tuple[str, str]]:
        """(modality, model key) of each vector file: one per image tower, then one per caption model."""
        return [("image", key) for key in self.image_models] + [("caption", key) for key in self.caption_models]

    @property
    def stems(self) -> list[str]:
        return [vector_stem(modality, model_key) for modality, model_key in self.outputs]

    def load(self) -> EncodeStage:
        return EncodeStage(self)

    def preps(self) -> tuple[ImagePrep, ...]:
        """Each tower's image processor, for readers that run apart from the stage (Ray tasks)."""
        return tuple(ImageTower(get_encoder(key, local_device(self.device))).prep for key in self.image_models)


class EncodeStage:
    """Turns a reader batch into {vector stem: vectors}, one row per readable image."""

    def __init__(self, plan: EncodePlan) -> None:
        self.plan = plan
        self.towers = [ImageTower(get_encoder(key, plan.device)) for key in plan.image_models]
        self.device = self.towers[0].device
        self.text_encoders = {key: get_encoder(key, plan.device) for key in plan.caption_models}
        self._dtype = _AUTOCAST_DTYPES.get(plan.precision)

    @property
    def preps(self) -> tuple[ImagePrep, ...]:
        return tuple(tower.prep for tower in self.towers)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._dtype)

    def encode(self, batch: DecodedBatch) -> dict[str, np.ndarray]:
        stems = self.plan.stems
        image_stems, caption_stems = stems[: len(self.towers)], stems[len(self.towers) :]
        vectors = {
            stem: tower.embed(pixels, self._autocast())
            for stem, tower, pixels in zip(image_stems, self.towers, batch.pixels, strict=True)
        }
        for stem, encoder in zip(caption_stems, self.text_encoders.values()):
            with self._autocast():
                vectors[stem] = caption_vectors(encoder, batch.captions, self.plan.batch_size)
        return vectors
