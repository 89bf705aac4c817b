"""What the app relies on in core: product queries, no re-encoding, browsing tables, index lists, maps."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.index import list_indexes
from core.models import Encoder
from core.projection import Projection
from core.search import QueryError


def ids(result):
    return [hit.id for hit in result.hits]


class EncodeCounter:
    """Counts calls into the real encoders (they still run)."""

    def __init__(self, monkeypatch):
        self.images = self.texts = 0
        images, texts = Encoder.encode_images, Encoder.encode_texts

        def count_images(encoder, batch, *args, **kwargs):
            self.images += 1
            return images(encoder, batch, *args, **kwargs)

        def count_texts(encoder, batch, *args, **kwargs):
            self.texts += 1
            return texts(encoder, batch, *args, **kwargs)

        monkeypatch.setattr(Encoder, "encode_images", count_images)
        monkeypatch.setattr(Encoder, "encode_texts", count_texts)


def test_like_searches_with_the_stored_photo_and_leaves_the_product_out(engine, monkeypatch):
    product = engine.reader.items["id"].iloc[5]
    counter = EncodeCounter(monkeypatch)
    liked = engine.search(product=product, k=6)
    assert counter.images == 0 and product not in ids(liked)
    assert ids(liked) == ids(engine.search(product=product, k=6)) and liked.mode == "image"
    blended = engine.search(text="summer", product=product, blend=0.5, k=6)
    assert blended.mode == "blend" and product not in ids(blended)
    with pytest.raises(QueryError, match="either an image or a catalog product"):
        engine.search(image=Image.new("RGB", (8, 8)), product=product)
    with pytest.raises(QueryError, match="No product with id"):
        engine.search(product="no-such-product")


def test_the_same_photo_bytes_are_encoded_once(engine, fashion_dir, monkeypatch):
    photo = Image.open(sorted((fashion_dir / "images").glob("*.jpg"))[-2]).convert("RGB")
    photo.putpixel((0, 0), (1, 2, 3))  # bytes no other test has sent to the session's engine
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    counter = EncodeCounter(monkeypatch)
    first = engine.search(image=buffer.getvalue(), k=5)
    engine.search(image=io.BytesIO(buffer.getvalue()), text="shoes", blend=0.2, k=9)
    repeat = engine.search(image=buffer.getvalue(), k=1)
    assert counter.images == 1
    assert np.allclose(first.query_vector, repeat.query_vector)


def test_a_catalog_photo_reuses_its_stored_vector(engine, fashion_dir, monkeypatch):
    row = 9
    photo = (fashion_dir / "images" / f"{engine.reader.items['id'].iloc[row]}.jpg").read_bytes()
    counter = EncodeCounter(monkeypatch)
    result = engine.search(image=photo, k=3)
    assert counter.images == 0
    assert np.allclose(result.query_vector, engine.reader.image_vectors[row])


def test_metadata_table_has_a_row_per_photo_in_index_order(engine):
    table = engine.reader.metadata_table()
    assert len(table) == engine.count and list(table.columns[:2]) == ["id", "caption"]
    assert table["id"].tolist() == engine.reader.items["id"].astype(str).tolist()
    assert {"gender", "masterCategory", "baseColour"} <= set(table.columns)
    assert table.isna().sum().sum() == 0


def test_list_indexes_finds_complete_index_folders_only(fashion_index, tmp_path):
    assert list_indexes(fashion_index.parent) == [fashion_index]
    (tmp_path / "incomplete").mkdir()
    (tmp_path / ".shop.staging").mkdir()
    (tmp_path / ".shop.staging" / "manifest.json").write_text("{}")
    assert list_indexes(tmp_path) == [] and list_indexes(tmp_path / "missing") == []


def test_projection_keeps_the_two_widest_directions():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 6)) * np.array([10.0, 0.1, 5.0, 0.1, 0.1, 0.1])
    projection = Projection.fit(data)
    assert np.allclose(np.abs(projection.axes[0]), [1, 0, 0, 0, 0, 0], atol=0.05)
    assert np.allclose(np.abs(projection.axes[1]), [0, 0, 1, 0, 0, 0], atol=0.05)
    assert projection.explained[0] > projection.explained[1] > 0.1
    assert projection.transform(data).shape == (500, 2) and projection.transform(data[0]).shape == (1, 2)
    assert np.allclose(projection.transform(data).mean(axis=0), 0, atol=1e-4)
    with pytest.raises(ValueError):
        Projection.fit(data[:1])
