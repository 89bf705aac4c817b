"""FashionCLIP: a plain transformers CLIP checkpoint as a third model key with its own image tower."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core import models, settings
from core.index import IndexMismatchError, read_manifest
from core.models import CLIP_KEY, DEFAULT_MODELS, FASHION_KEY, TRANSFORMERS_CLIP_LAYOUT, ModelLoadError
from core.weights import check_fits

from .test_models import isolated_models  # noqa: F401  (the fixture: a fresh model cache, no hub cache)


def test_registry_has_fashion_clip_with_its_own_tower_outside_the_default_build():
    spec = models.REGISTRY[FASHION_KEY]
    assert spec.hub_id == "patrickjohncyh/fashion-clip"
    assert spec.layout == TRANSFORMERS_CLIP_LAYOUT and spec.encodes_images and spec.image_tower == FASHION_KEY
    assert FASHION_KEY not in DEFAULT_MODELS and FASHION_KEY in [s.key for s in models.available_models()]


def test_tiny_model_has_the_hub_checkpoint_layout(tiny_models):
    folder = tiny_models / FASHION_KEY
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "vocab.json", "merges.txt",
            "tokenizer.json", "tokenizer_config.json"} <= names
    assert "modules.json" not in names and not any(path.is_dir() for path in folder.iterdir())
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["CLIPModel"] and config["model_type"] == "clip"


def test_fashion_clip_encodes_texts_and_images_with_its_own_weights(tiny_models):
    fashion = models.get_encoder(FASHION_KEY, "cpu")
    clip = models.get_encoder(CLIP_KEY, "cpu")
    assert fashion.image_encoder is fashion and type(fashion.model[0]).__name__ == "CLIPModel"
    texts = fashion.encode_texts(["red dress", "blue shirt"])
    images = fashion.encode_images([Image.new("RGB", (64, 48), "red"), Image.new("RGB", (30, 90), "blue")])
    for vectors in (texts, images):
        assert vectors.dtype == np.float32 and vectors.shape == (2, fashion.dim) and fashion.dim == 24
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(texts[0], texts[1])
    assert not np.allclose(images, clip.encode_images([Image.new("RGB", (64, 48), "red"), Image.new("RGB", (30, 90), "blue")]))


def test_offline_folder_without_the_checkpoint_is_refused_with_the_remedy(isolated_models, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelLoadError, match="fashion-clip.*does not exist.*python -m core.models download"):
        models.get_encoder(FASHION_KEY, "cpu")
    (tmp_path / FASHION_KEY).mkdir()
    with pytest.raises(ModelLoadError, match=r"not a transformers CLIP folder \(no config.json\)"):
        models.get_encoder(FASHION_KEY, "cpu")


def test_broken_weights_give_a_load_error_naming_the_key(isolated_models, monkeypatch, tmp_path, tiny_models):
    shutil.copytree(tiny_models / FASHION_KEY, tmp_path / FASHION_KEY)
    (tmp_path / FASHION_KEY / "model.safetensors").write_bytes(b"not weights")
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelLoadError, match="Model 'fashion-clip' could not be loaded from .*VITRINE_MODELS_DIR"):
        models.get_encoder(FASHION_KEY, "cpu")


def test_download_fetches_the_checkpoint_files_into_the_offline_folder(isolated_models, monkeypatch, tmp_path, tiny_models):
    """Only the hub call is replaced (no hub here); the folder it fills is then loaded offline."""
    import huggingface_hub

    calls = {}

    def fake_snapshot_download(repo_id, local_dir, **kwargs):
        calls[repo_id] = kwargs
        shutil.copytree(tiny_models / repo_id.split("/")[1], local_dir)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    offline = tmp_path / "offline"
    assert models.main(["download", "--to", str(offline)]) == 0
    assert set(calls) == {spec.hub_id for spec in models.REGISTRY.values()}
    assert "*.safetensors" in calls["patrickjohncyh/fashion-clip"]["allow_patterns"]
    assert not any(pattern.endswith(".bin") for pattern in calls["patrickjohncyh/fashion-clip"]["allow_patterns"])
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(offline))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vector = models.get_encoder(FASHION_KEY, "cpu").encode_texts(["red dress"])
    np.testing.assert_allclose(vector, models.load_encoder(FASHION_KEY, "cpu", fast=False).encode_texts(["red dress"]))


def test_an_index_without_its_tower_refuses_fashion_clip(fashion_index):
    encoder = models.get_encoder(FASHION_KEY, "cpu")
    with pytest.raises(IndexMismatchError, match="'fashion-clip' reads images with 'fashion-clip'.*'clip-ViT-B-32'.*--models"):
        check_fits(encoder, read_manifest(fashion_index), fashion_index)
