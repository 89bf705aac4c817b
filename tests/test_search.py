"""SearchEngine on real photos with the tiny models: modes, blend, fusion, exclusion, dedup, errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core import settings
from core import models
from core.build_index import build_index
from core.catalog import Catalog, CatalogItem
from core.images import ImageError
from core.index import IndexMismatchError
from core.models import CLIP_KEY, MULTILINGUAL_KEY
from core.random_models import make_models
from core.search import QueryError, SearchEngine

from .conftest import INDEX_SIZE


def ids(result):
    return [hit.id for hit in result.hits]


def test_text_search_returns_k_unique_products_with_details(engine):
    result = engine.search(text="navy blue shirt for men", k=10)
    assert len(result.hits) == 10 and len(set(ids(result))) == 10
    hit = result.hits[0]
    assert hit.caption and hit.metadata["masterCategory"] and hit.thumbnail.endswith(".webp")
    assert hit.image_path.endswith(f"{hit.id}.jpg") and set(hit.matched) <= {"image", "caption"}
    assert {"encode_text", "search", "merge", "total"} <= set(result.timings_ms)
    assert result.mode == "text"
    assert [h.rank_score for h in result.hits] == sorted((h.rank_score for h in result.hits), reverse=True)


def test_text_search_fuses_the_caption_index(engine):
    caption = engine.reader.items["caption"].iloc[42]
    result = engine.search(text=caption, k=5)
    exact = [hit for hit in result.hits if hit.caption == caption]
    assert exact and "caption" in exact[0].matched
    image_only = engine.search(text=caption, k=5, use_captions=False)
    assert all(hit.matched == ("image",) for hit in image_only.hits)


def test_image_search_excludes_the_query_product_itself(engine, fashion_dir):
    product = engine.reader.items["id"].iloc[7]
    result = engine.search(image=fashion_dir / "images" / f"{product}.jpg", k=8)
    assert product not in ids(result) and len(result.hits) == 8
    assert result.mode == "image" and "decode" in result.timings_ms
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_image_outside_the_catalog_is_not_excluded(engine, fashion_dir):
    outside = sorted((fashion_dir / "images").glob("*.jpg"))[-1]
    assert outside.stem not in set(engine.reader.items["id"])
    assert len(engine.search(image=outside, k=INDEX_SIZE).hits) == INDEX_SIZE


def test_more_like_this_uses_the_stored_vector_and_excludes_itself(engine, fashion_dir):
    product = engine.reader.items["id"].iloc[3]
    similar = engine.search(product=product, k=6)
    assert product not in ids(similar)
    by_upload = engine.search(image=(fashion_dir / "images" / f"{product}.jpg").read_bytes(), k=6)
    assert ids(similar) == ids(by_upload)
    with pytest.raises(QueryError, match="No product with id"):
        engine.search(product="no-such-id")


def test_blend_endpoints_equal_pure_searches(engine, fashion_dir):
    image = fashion_dir / "images" / f"{engine.reader.items['id'].iloc[11]}.jpg"
    text = "black leather handbag"
    pure_image = engine.search(image=image, k=10)
    pure_text = engine.search(text=text, k=10)
    at_zero = engine.search(text=text, image=image, blend=0.0, k=10)
    at_one = engine.search(text=text, image=image, blend=1.0, k=10)
    assert ids(at_zero) == ids(pure_image) and [h.score for h in at_zero.hits] == pytest.approx([h.score for h in pure_image.hits])
    assert ids(at_one) == ids(pure_text) and [h.score for h in at_one.hits] == pytest.approx([h.score for h in pure_text.hits])
    middle = engine.search(text=text, image=image, blend=0.5, k=10)
    assert middle.mode == "blend" and ids(middle) not in (ids(pure_image), ids(pure_text))


def test_blend_vector_is_the_normalised_mix(engine, fashion_dir):
    clip = models.get_encoder(CLIP_KEY)
    image = fashion_dir / "images" / f"{engine.reader.items['id'].iloc[5]}.jpg"
    from core.images import load_image

    image_vec = clip.encode_images([load_image(image)])[0]
    text_vec = clip.encode_texts(["green sports shoes"])[0]
    mix = 0.7 * image_vec + 0.3 * text_vec
    mix /= np.linalg.norm(mix)
    result = engine.search(text="green sports shoes", image=image, blend=0.3, k=5, use_captions=False)
    vectors = np.asarray(engine.reader.image_vectors)
    expected = [h.row for h in result.hits]
    assert [h.score for h in result.hits] == pytest.approx((vectors[expected] @ mix).tolist(), abs=1e-5)


@pytest.mark.parametrize("model", [MULTILINGUAL_KEY, CLIP_KEY])
def test_the_chosen_model_encodes_the_words_and_picks_the_caption_index(engine, model):
    text = "rotes Sommerkleid für Damen"
    result = engine.search(text=text, model=model, k=5)
    assert len(result.hits) == 5 and result.model == model
    own = models.get_encoder(model).encode_texts([text])[0]
    other = models.get_encoder(CLIP_KEY if model == MULTILINGUAL_KEY else MULTILINGUAL_KEY).encode_texts([text])[0]
    np.testing.assert_allclose(result.query_vector, own, atol=1e-5)
    assert np.abs(own - other).max() > 1e-2  # the two models disagree, so the check above tells them apart
    by_image = [h.row for h in result.hits]
    assert [h.score for h in result.hits] == pytest.approx((np.asarray(engine.reader.image_vectors)[by_image] @ own).tolist(), abs=1e-5)
    caption_rows, _ = engine.reader.caption_index(model).search(own, 2 * 5 + 16)
    matched_by_caption = {h.row for h in result.hits if "caption" in h.matched}
    assert caption_rows[0][0] in matched_by_caption and matched_by_caption <= set(caption_rows[0].tolist())


def test_threshold_gives_an_honest_no_confident_match(engine):
    result = engine.search(text="red shoes", k=5, threshold=1.01)
    assert result.hits == [] and result.below_threshold > 0
    loose = engine.search(text="red shoes", k=5, threshold=-1.0)
    assert len(loose.hits) == 5 and loose.below_threshold == 0


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", None])
def test_empty_queries_are_refused(engine, text):
    with pytest.raises(QueryError, match="Type a description"):
        engine.search(text=text)


@pytest.mark.parametrize("text", ["x" * 10_000, "👗👠🔥", "فستان أحمر", "שמלה אדומה", "<script>alert(1)</script>"])
def test_absurd_text_still_searches(engine, text):
    assert len(engine.search(text=text, k=3).hits) == 3


@pytest.mark.parametrize(("kwargs", "message"), [({"k": 0}, "K must be"), ({"k": 5000}, "K must be"), ({"blend": 1.5}, "blend weight")])
def test_bad_parameters_are_refused(engine, kwargs, message):
    with pytest.raises(QueryError, match=message):
        engine.search(text="shirt", **kwargs)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_bad_image_bytes_raise_image_error(engine, data):
    with pytest.raises(ImageError):
        engine.search(image=data)


def test_unknown_model_is_refused(engine):
    with pytest.raises(models.ModelLoadError, match="Unknown model"):
        engine.search(text="shirt", model="no-such-model")


def test_concurrent_queries_match_serial_ones(engine, fashion_dir):
    images = [fashion_dir / "images" / f"{i}.jpg" for i in engine.reader.items["id"].iloc[:8]]
    queries = [{"text": t} for t in ("white sneakers", "blue jeans", "gold watch", "sunglasses")] * 2
    queries += [{"image": p} for p in images] + [{"text": "red top", "image": images[0], "blend": 0.4}]
    serial = [ids(engine.search(k=10, **q)) for q in queries]
    with ThreadPoolExecutor(16) as pool:
        parallel = list(pool.map(lambda q: ids(engine.search(k=10, **q)), queries * 4))
    assert parallel == serial * 4


def test_hnsw_recall_on_the_real_index(engine):
    vectors = np.asarray(engine.reader.image_vectors)
    queries = vectors[::3] + 0.05 * np.random.default_rng(0).normal(size=vectors[::3].shape).astype(np.float32)
    approx, _ = engine.reader.image_index.hnsw_search(queries, 10)
    exact, _ = engine.reader.image_index.exact_search(queries, 10)
    assert np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]) >= 0.99


def test_several_photos_of_one_product_are_deduplicated(tiny_models, fashion_catalog, tmp_path):
    base = fashion_catalog.items[:40]
    doubled = [CatalogItem(id="shared", caption=i.caption, metadata={}, image_path=i.image_path) for i in base[:10]]
    catalog = Catalog(name="dups", source="test", items=list(base[10:]) + doubled, skipped=[])
    engine = SearchEngine(_build(catalog, tmp_path / "dups"))
    result = engine.search(image=base[0].image_path.read_bytes(), k=40)
    assert "shared" not in ids(result)  # the query photo belongs to "shared": all its photos go
    result = engine.search(text="shirt", k=40)
    assert ids(result).count("shared") == 1 and len(result.hits) == 31


def _build(catalog, out):
    build_index(catalog, out, progress=False)
    return out


def test_index_built_by_other_weights_is_refused(tiny_models, fashion_catalog, tmp_path, monkeypatch):
    folder = _build(Catalog("few", "test", fashion_catalog.items[:20], []), tmp_path / "few")
    other = tmp_path / "other-models"
    make_models(other, "tiny")
    for key in (CLIP_KEY, MULTILINGUAL_KEY):  # same architecture, other random weights
        from core.random_models import make_clip, make_multilingual

        (make_clip(other / key, "tiny", seed=7) if key == CLIP_KEY else make_multilingual(other / key, 24, "tiny", seed=8))
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(other))
    models.clear_cache()
    try:
        with pytest.raises(IndexMismatchError, match="other weights"):
            SearchEngine(folder).search(text="shirt")
        make_models(other, "small")
        models.clear_cache()
        with pytest.raises(IndexMismatchError, match="128-d vectors.*24-d"):
            SearchEngine(folder).search(text="shirt")
    finally:
        models.clear_cache()
