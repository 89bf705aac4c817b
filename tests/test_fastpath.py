"""The int8 CPU fast path: off until the agreement check passes for the loaded weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import fastpath, models, quantize, settings
from core.images import decode_image
from core.models import CLIP_KEY, MULTILINGUAL_KEY

from .models_env import copy_hub_models


@pytest.fixture
def fresh_models(tiny_models, tmp_path, monkeypatch):
    # a copy of the models per test: the records are kept beside them
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(copy_hub_models(tiny_models, tmp_path / "models")))
    monkeypatch.delenv(settings.FAST_PATH_ENV, raising=False)
    models.clear_cache()
    yield tiny_models
    models.clear_cache()


def is_quantised(encoder: models.Encoder) -> bool:
    return any("quantized" in type(module).__module__ for module in encoder.model.modules())


def test_auto_mode_stays_off_without_a_recorded_check(fresh_models):
    encoder = models.get_encoder(CLIP_KEY, "cpu")
    assert not encoder.fast and not is_quantised(encoder)


def test_check_command_records_a_verdict_that_auto_mode_follows(fresh_models, fashion_dir, capsys):
    code = fastpath.main(
        ["check", "--images", str(fashion_dir / "images"), "--captions", str(fashion_dir / "products.csv"), "--limit", "40"]
    )
    out = capsys.readouterr().out
    assert f"{CLIP_KEY}: 40 items" in out and f"{MULTILINGUAL_KEY}: 40 items" in out
    for key in (CLIP_KEY, MULTILINGUAL_KEY):
        line = next(line for line in out.splitlines() if f" {key}:" in line)
        models.clear_cache()
        encoder = models.get_encoder(key, "cpu")
        assert encoder.fast == line.startswith("PASS") == is_quantised(encoder)
    assert code == (0 if "FAIL" not in out else 1)


def test_check_under_forced_on_still_compares_with_fp32(fresh_models, monkeypatch):
    monkeypatch.setenv(settings.FAST_PATH_ENV, "on")
    agreement, probe = fastpath.measure_agreement(CLIP_KEY, [Image.new("RGB", (40, 40), "red")] * 12, ["a"] * 12)
    exact = models.load_encoder(CLIP_KEY, "cpu", fast=False)
    np.testing.assert_allclose(probe, exact.probe(), atol=1e-6)
    assert agreement.image_cosine_min < 1.0 or agreement.text_cosine_min < 1.0


@pytest.mark.parametrize(
    ("agreement", "fast"),
    [
        (quantize.Agreement(CLIP_KEY, 40, 0.995, 0.995, 0.95, 0.95), True),
        (quantize.Agreement(CLIP_KEY, 40, 0.995, 0.995, 0.85, 0.95), False),
        (quantize.Agreement(CLIP_KEY, 40, 0.98, 0.995, 0.95, 0.95), False),
    ],
)
def test_auto_mode_follows_a_recorded_verdict(fresh_models, agreement, fast):
    probe = models.get_encoder(CLIP_KEY, "cpu").probe()
    quantize.save_record(settings.current().fastpath_record_dir, CLIP_KEY, probe, agreement)
    models.clear_cache()
    encoder = models.get_encoder(CLIP_KEY, "cpu")
    assert encoder.fast is fast and is_quantised(encoder) is fast


@pytest.mark.parametrize(("setting", "expected"), [("on", True), ("off", False)])
def test_forced_settings(fresh_models, monkeypatch, setting, expected):
    monkeypatch.setenv(settings.FAST_PATH_ENV, setting)
    encoder = models.get_encoder(CLIP_KEY, "cpu")
    assert encoder.fast is expected and is_quantised(encoder) is expected


def test_quantised_vectors_stay_close_to_fp32(fresh_models):
    exact = models.load_encoder(MULTILINGUAL_KEY, "cpu", fast=False)
    fast = models.load_encoder(MULTILINGUAL_KEY, "cpu", fast=True)
    texts = ["rotes Kleid", "blue denim jacket", "zapatillas blancas"]
    cosines = np.sum(exact.encode_texts(texts) * fast.encode_texts(texts), axis=1)
    assert np.all(cosines > 0.9) and is_quantised(fast) and not is_quantised(exact)
    image = [Image.new("RGB", (50, 50), "orange")]
    assert float(exact.encode_images(image)[0] @ fast.encode_images(image)[0]) > 0.9


def jpeg_bytes(size: tuple[int, int]) -> bytes:
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_query_decoding_shrinks_large_jpegs_but_keeps_clip_resolution():
    small = decode_image(jpeg_bytes((1000, 800)), min_side=224)
    assert small.size == (500, 400)  # the 1/2 DCT scale: 1/4 (250×200) would drop under 224 px
    assert decode_image(jpeg_bytes((1000, 800))).size == (1000, 800)
    assert decode_image(jpeg_bytes((300, 300)), min_side=224).size == (300, 300)
