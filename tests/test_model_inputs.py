"""Photos whose shape would make the model's own preprocessing explode are cut down first."""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.images import limit_aspect_ratio
from core.models import CLIP_KEY


def test_extreme_strips_are_cropped_before_the_model_sees_them():
    strip = Image.new("RGB", (40_000, 1), "red")
    tall = Image.new("RGB", (3, 900), "blue")
    assert limit_aspect_ratio(strip).size == (4, 1)
    assert limit_aspect_ratio(tall).size == (3, 12)
    photo = Image.new("RGB", (400, 100))
    assert limit_aspect_ratio(photo) is photo


def test_an_extreme_strip_searches_like_its_centre(engine):
    strip = Image.new("RGB", (20_000, 2), "white")
    strip.paste(Image.new("RGB", (8, 2), "navy"), (9_996, 0))
    centre = strip.crop((9_996, 0, 10_004, 2))
    result = engine.search(image=strip, k=4)
    assert np.allclose(result.query_vector, engine.search(image=centre, k=1).query_vector, atol=1e-4)


def test_the_model_never_receives_an_extreme_strip(engine, monkeypatch):
    tower = engine.encoder(CLIP_KEY)
    received = []
    encode = tower.model.encode

    def watch(images, *args, **kwargs):
        received.extend(image.size for image in images)
        return encode(images, *args, **kwargs)

    monkeypatch.setattr(tower.model, "encode", watch)
    engine.search(image=Image.new("RGB", (40_000, 1), "red"), k=1)
    assert received == [(4, 1)]
