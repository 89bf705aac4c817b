"""Model registry, loading from VITRINE_MODELS_DIR, clear load errors, the download command."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from core import settings
from core import models
from core.models import CLIP_KEY, MULTILINGUAL_KEY, ModelLoadError

from .models_env import files_under, no_hub_env, run_python


def test_registry_names_both_hub_models():
    assert models.REGISTRY[CLIP_KEY].hub_id == "sentence-transformers/clip-ViT-B-32"
    assert models.REGISTRY[MULTILINGUAL_KEY].hub_id == "sentence-transformers/clip-ViT-B-32-multilingual-v1"
    assert models.REGISTRY[CLIP_KEY].encodes_images
    assert not models.REGISTRY[MULTILINGUAL_KEY].encodes_images
    assert models.REGISTRY[MULTILINGUAL_KEY].image_tower == CLIP_KEY


def test_unknown_key_lists_known_models():
    with pytest.raises(ModelLoadError, match="Unknown model 'clip-huge'.*clip-ViT-B-32"):
        models.get_spec("clip-huge")


def test_encoders_return_unit_float32_vectors_of_the_model_dimension(tiny_models):
    clip = models.get_encoder(CLIP_KEY, "cpu")
    assert clip.dim == 24  # read from the tiny model, not hard-coded
    texts = clip.encode_texts(["red dress", "blue shirt", "x" * 50_000])
    images = clip.encode_images([Image.new("RGB", (64, 48), c) for c in ("red", "blue")])
    for vectors, rows in ((texts, 3), (images, 2)):
        assert vectors.dtype == np.float32 and vectors.shape == (rows, 24)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_multilingual_model_reads_images_with_the_clip_tower(tiny_models):
    clip = models.get_encoder(CLIP_KEY, "cpu")
    multi = models.get_encoder(MULTILINGUAL_KEY, "cpu")
    image = [Image.new("RGB", (40, 40), "green")]
    np.testing.assert_allclose(multi.encode_images(image), clip.encode_images(image), atol=1e-6)
    german = multi.encode_texts(["rotes Kleid für den Sommer"])
    assert german.shape == (1, clip.dim)
    assert not np.allclose(german, clip.encode_texts(["rotes Kleid für den Sommer"]))


def test_models_load_once_per_process(tiny_models):
    assert models.get_encoder(CLIP_KEY, "cpu") is models.get_encoder(CLIP_KEY, "cpu")


def test_device_auto_selection_falls_back_to_cpu_and_honours_a_request():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert models.pick_device("auto") in (expected, "mps")
    assert models.pick_device("cpu") == "cpu"


@pytest.fixture
def isolated_models(monkeypatch, tmp_path):
    """A fresh model cache, restored afterwards (these tests set VITRINE_MODELS_DIR: no hub call)."""
    models.clear_cache()
    yield
    models.clear_cache()


def test_missing_model_folder_names_key_and_remedy(isolated_models, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError) as err:
        models.get_encoder(CLIP_KEY, "cpu")
    message = str(err.value)
    assert "clip-ViT-B-32" in message and "does not exist" in message
    assert "python -m core.models download" in message and "VITRINE_MODELS_DIR" in message


def test_broken_model_folder_gives_clear_error(isolated_models, monkeypatch, tmp_path, tiny_models):
    broken = tmp_path / "models"
    shutil.copytree(tiny_models / CLIP_KEY, broken / CLIP_KEY)
    (broken / CLIP_KEY / "0_CLIPModel" / "model.safetensors").write_bytes(b"not weights")
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(broken))
    with pytest.raises(ModelLoadError, match="Model 'clip-ViT-B-32' could not be loaded from .*VITRINE_MODELS_DIR"):
        models.get_encoder(CLIP_KEY, "cpu")


def test_folder_without_modules_json_is_refused(isolated_models, monkeypatch, tmp_path):
    (tmp_path / CLIP_KEY).mkdir()
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelLoadError, match="not a sentence-transformers folder"):
        models.get_encoder(CLIP_KEY, "cpu")


LOAD_AND_REPORT = f"""
from core import models
try:
    models.get_encoder({MULTILINGUAL_KEY!r}, "cpu")
except models.ModelLoadError as err:
    print(err)
"""


def test_hub_unreachable_gives_offline_remedy(tmp_path):
    # HF_HUB_OFFLINE only: without it, the hub library retries each file for about two minutes first
    loaded = run_python(["-c", LOAD_AND_REPORT], no_hub_env(tmp_path / "hf-home", offline=True))
    assert loaded.returncode == 0, loaded.stderr
    assert "sentence-transformers/clip-ViT-B-32" in loaded.stdout and "VITRINE_MODELS_DIR" in loaded.stdout
    assert "Traceback" not in loaded.stdout + loaded.stderr
    assert files_under(tmp_path / "hf-home") == []


def test_download_command_saves_hub_layout(monkeypatch, tmp_path, tiny_models, capsys):
    """Only the hub call is replaced (this machine cannot reach it); the rest is the real command."""
    import huggingface_hub

    def fake_snapshot_download(repo_id, local_dir, **kwargs):
        shutil.copytree(tiny_models / repo_id.split("/")[1], local_dir)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert models.main(["download", "--to", str(tmp_path / "offline")]) == 0
    for key in (CLIP_KEY, MULTILINGUAL_KEY):
        assert (tmp_path / "offline" / key / "modules.json").is_file()
    assert "VITRINE_MODELS_DIR=" in capsys.readouterr().out


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "no-network"])
def test_download_without_network_exits_2(tmp_path, offline):
    env = no_hub_env(tmp_path / "hf-home", offline=offline)
    fetched = run_python(["-m", "core.models", "download", "--to", str(tmp_path / "m"), "--models", CLIP_KEY], env)
    assert fetched.returncode == 2 and "could not be downloaded" in fetched.stderr
    assert "Traceback" not in fetched.stderr and len(fetched.stderr.strip().splitlines()) == 1
    assert files_under(tmp_path / "hf-home") == [] and files_under(tmp_path / "m") == []
