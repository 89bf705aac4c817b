"""Helpers for tests that need their own $VITRINE_MODELS_DIR (local models beside the tiny hub ones)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from core import settings
from core import models
from core.descriptor import DESCRIPTOR_FILE


@contextlib.contextmanager
def models_dir_set(root: Path) -> Iterator[Path]:
    """Point VITRINE_MODELS_DIR at `root` with an empty model cache; restore both afterwards."""
    previous = os.environ.get(settings.MODELS_DIR_ENV)
    os.environ[settings.MODELS_DIR_ENV] = str(root)
    models.clear_cache()
    try:
        yield root
    finally:
        models.clear_cache()
        if previous is None:
            os.environ.pop(settings.MODELS_DIR_ENV, None)
        else:
            os.environ[settings.MODELS_DIR_ENV] = previous


def copy_hub_models(tiny_models: Path, root: Path) -> Path:
    """The two tiny hub models under a fresh root, so local models can be added beside them."""
    for key in models.REGISTRY:
        shutil.copytree(tiny_models / key, root / key)
    return root


def add_local_model(root: Path, key: str, weights_from: str, descriptor: dict) -> Path:
    """A local model folder: a copy of the `weights_from` folder plus `descriptor` written as JSON."""
    folder = root / key
    shutil.copytree(root / weights_from, folder)
    (folder / DESCRIPTOR_FILE).write_text(json.dumps(descriptor), encoding="utf-8")
    return folder


def clip_descriptor(**changes) -> dict:
    """A valid descriptor of a CLIP fine-tune with its own image tower, with `changes` applied."""
    return {"base": models.CLIP_KEY, "image_tower": "self", "encodes_images": True, "hint": "test", **changes}
