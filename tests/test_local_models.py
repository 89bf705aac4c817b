"""Local models: every descriptor-carrying folder under $VITRINE_MODELS_DIR is a model key; broken ones are skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core import settings
from core import models
from core.descriptor import Descriptor, DescriptorError, read_descriptor, write_descriptor
from core.models import CLIP_KEY, FASHION_KEY, MULTILINGUAL_KEY, ModelLoadError

from .models_env import add_local_model, clip_descriptor, copy_hub_models, models_dir_set


@pytest.fixture
def models_root(tiny_models, tmp_path):
    with models_dir_set(copy_hub_models(tiny_models, tmp_path / "models")) as root:
        yield root


def test_local_models_are_listed_resolved_and_loaded(models_root):
    add_local_model(models_root, "shop-clip", CLIP_KEY, clip_descriptor(hint="Trained on my shop."))
    add_local_model(
        models_root, "shop-german", MULTILINGUAL_KEY,
        {"base": MULTILINGUAL_KEY, "image_tower": CLIP_KEY, "encodes_images": False},
    )
    (models_root / "notes").mkdir()  # a folder without a descriptor is not a model
    assert [spec.key for spec in models.available_models()] == [
        CLIP_KEY, MULTILINGUAL_KEY, FASHION_KEY, "shop-clip", "shop-german"
    ]
    clip_like = models.get_spec("shop-clip")
    assert clip_like.image_tower == "shop-clip" and clip_like.encodes_images and clip_like.hint == "Trained on my shop."
    german = models.get_spec("shop-german")
    assert german.image_tower == CLIP_KEY and "based on" in german.hint

    image = [Image.new("RGB", (40, 40), "orange")]
    own = models.get_encoder("shop-clip", "cpu")
    assert own.encode_images(image).shape == (1, own.dim)
    np.testing.assert_allclose(
        models.get_encoder("shop-german", "cpu").encode_images(image),
        models.get_encoder(CLIP_KEY, "cpu").encode_images(image),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("descriptor", "reason"),
    [
        ("{not json", "not readable JSON"),
        ([1, 2], "JSON object"),
        ({"base": CLIP_KEY, "encodes_images": True}, "lacks image_tower"),
        (clip_descriptor(encodes_images="yes"), "encodes_images"),
        (clip_descriptor(base=""), "'base'"),
        (clip_descriptor(encodes_images=False), "\"self\""),
        (clip_descriptor(val_fraction=3), "val_fraction"),
        (clip_descriptor(image_tower="clip-gone"), "image tower 'clip-gone'"),
        (clip_descriptor(image_tower=MULTILINGUAL_KEY), f"image tower '{MULTILINGUAL_KEY}'"),
    ],
)
def test_a_broken_descriptor_is_skipped_with_a_warning(models_root, descriptor, reason):
    add_local_model(models_root, "good", CLIP_KEY, clip_descriptor())
    folder = add_local_model(models_root, "broken", CLIP_KEY, {})
    text = descriptor if isinstance(descriptor, str) else json.dumps(descriptor)
    (folder / "vitrine.json").write_text(text)
    with pytest.warns(UserWarning, match="Skipping model folder .*broken") as caught:
        keys = [spec.key for spec in models.available_models()]
    assert reason in str(caught[0].message)
    assert keys == [*models.REGISTRY, "good"]
    with pytest.warns(UserWarning), pytest.raises(ModelLoadError, match="Unknown model 'broken'.*good"):
        models.get_spec("broken")


def test_a_descriptor_without_model_files_is_skipped(models_root):
    (models_root / "empty").mkdir()
    write_descriptor(models_root / "empty", Descriptor(base=CLIP_KEY, image_tower="self", encodes_images=True))
    with pytest.warns(UserWarning, match="no modules.json"):
        assert [spec.key for spec in models.available_models()] == list(models.REGISTRY)


def test_hub_keys_cannot_be_redefined_by_a_descriptor(models_root):
    (models_root / MULTILINGUAL_KEY / "vitrine.json").write_text('{"base": "x", "image_tower": "self", "encodes_images": true}')
    assert models.get_spec(MULTILINGUAL_KEY) is models.REGISTRY[MULTILINGUAL_KEY]
    assert len(models.available_models()) == len(models.REGISTRY)


def test_without_a_models_dir_only_hub_models_are_listed(monkeypatch):
    monkeypatch.delenv(settings.MODELS_DIR_ENV, raising=False)
    assert [spec.key for spec in models.available_models()] == list(models.REGISTRY)


def test_download_refuses_a_local_model(models_root, capsys):
    add_local_model(models_root, "shop-clip", CLIP_KEY, clip_descriptor())
    assert models.main(["download", "--to", str(models_root / "copy"), "--models", "shop-clip"]) == 2
    assert "local model" in capsys.readouterr().err


def test_descriptor_round_trip_and_errors_name_the_file(tmp_path):
    written = Descriptor(base=CLIP_KEY, image_tower=CLIP_KEY, encodes_images=True, hint="h", val_fraction=0.2)
    write_descriptor(tmp_path, written)
    assert read_descriptor(tmp_path) == written
    (tmp_path / "vitrine.json").write_text('{"base": "a", "image_tower": 5, "encodes_images": true}')
    with pytest.raises(DescriptorError, match=r"vitrine\.json: 'image_tower' must be a non-empty string"):
        read_descriptor(tmp_path)
