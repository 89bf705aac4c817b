"""CLIP's training objective: symmetric InfoNCE over in-batch negatives, with a temperature.

Each caption must pick its own image out of the batch and each image its own caption;
every other pair in the batch is a negative. The temperature sharpens the softmax; CLIP
learns it (as a log logit scale, capped at 100) and so do we unless the user fixes it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

INITIAL_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


class Temperature(torch.nn.Module):
    """The softmax temperature as CLIP keeps it: a log logit scale, learnable or fixed."""

    def __init__(self, temperature: float = INITIAL_TEMPERATURE, learnable: bool = True) -> None:
        super().__init__()
        if not 0.0 < temperature <= 1.0:
            raise ValueError(f"the temperature must be in (0, 1], not {temperature}")
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    @property
    def value(self) -> float:
        return float(1.0 / self.logit_scale().detach())


def symmetric_info_nce(texts: torch.Tensor, images: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the text->image and image->text cross-entropies; row i of both is one pair."""
    texts = F.normalize(texts.float(), dim=-1)
    images = F.normalize(images.float(), dim=-1)
    logits = logit_scale * texts @ images.T
    targets = torch.arange(len(texts), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
