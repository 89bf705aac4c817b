"""The int8 CPU fast path's policy: when model loading quantises a model, and how.

Quantised weights change the vectors a little, by an amount only the real weights tell.
So the fast path stays off until the agreement check (core/fastpath.py) has passed for the
exact weights loaded now, and recorded that verdict here, keyed by the weights' probe
vector. `VITRINE_FAST_PATH` (core/settings.py): `auto` follows the record, `on` forces
the fast path, `off` never uses it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

MIN_COSINE = 0.99
MIN_TOP10_OVERLAP = 0.9


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


def wanted(key: str, requested: bool | None, mode: str, record_dir: Path, probe: Callable[[], np.ndarray]) -> bool:
    """Whether to quantise `key`: as requested, else as the mode says ('auto': a recorded pass)."""
    if requested is not None:
        return requested
    return mode == "on" or (mode == "auto" and check_passed(record_dir, key, probe()))


def weights_id(probe: np.ndarray) -> str:
    """A short fingerprint of a model's exact weights, from its probe vector."""
    return hashlib.sha1(np.round(probe, 4).astype(np.float32).tobytes()).hexdigest()[:16]


def record_path(record_dir: Path, key: str, probe: np.ndarray) -> Path:
    return record_dir / f"{key}-{weights_id(probe)}.json"


def save_record(record_dir: Path, key: str, probe: np.ndarray, agreement: Agreement) -> Path:
    path = record_path(record_dir, key, probe)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**asdict(agreement), "passed": agreement.passed}, indent=2), encoding="utf-8")
    return path


def check_passed(record_dir: Path, key: str, probe: np.ndarray) -> bool:
    try:
        return bool(json.loads(record_path(record_dir, key, probe).read_text(encoding="utf-8"))["passed"])
    except (OSError, ValueError, KeyError):
        return False
