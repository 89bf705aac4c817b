"""Helpers for tests that need their own $VITRINE_MODELS_DIR (local models beside the tiny hub ones)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
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


def closed_loopback_url() -> str:
    """An http:// address on this machine where nothing listens: every connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def no_hub_env(hf_home: Path, *, offline: bool) -> dict[str, str]:
    """The environment of a process that cannot reach the hub: set before huggingface_hub is imported,
    which reads these variables once. The hub address is a closed loopback port, so even a machine with
    network downloads nothing, and the hub cache is a fresh folder rather than the user's ~/.cache."""
    env = {key: value for key, value in os.environ.items() if key not in settings.MODEL_LOCATION_ENV}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=closed_loopback_url())
    if offline:
        env[settings.HUB_OFFLINE_ENV] = "1"
    return env


def run_python(code_or_args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python ARGS` from the project root, output captured as text."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, *code_or_args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def files_under(hf_home: Path) -> list[Path]:
    """Whatever a hub call left in the cache folder (nothing, when it was refused as it should be)."""
    return [path for path in hf_home.rglob("*") if path.is_file()] if hf_home.exists() else []
