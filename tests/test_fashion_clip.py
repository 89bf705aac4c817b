"""FashionCLIP: a plain transformers CLIP checkpoint as a third model key with its own image tower."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core import models, settings
from core.build_index import build_index
from core.images import load_image
from core.index import IndexMismatchError, read_manifest
from core.models import CLIP_KEY, DEFAULT_MODELS, FASHION_KEY, MULTILINGUAL_KEY, TRANSFORMERS_CLIP_LAYOUT, ModelLoadError
from core.pipeline.encode_stage import EncodePlan
from core.pipeline.reader import BatchTask, read_batch
from core.search import SearchEngine
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


THREE_KEYS = (CLIP_KEY, MULTILINGUAL_KEY, FASHION_KEY)
THREE_KEY_SIZE = 48


@pytest.fixture(scope="module")
def three_key_index(tiny_models, fashion_catalog, tmp_path_factory):
    """The first photos of the shared catalog indexed with all three keys in one build."""
    out = tmp_path_factory.mktemp("three") / "fashion3"
    build_index(fashion_catalog, out, THREE_KEYS, limit=THREE_KEY_SIZE, progress=False, workers=0, batch_size=16)
    return out


def test_one_build_gives_an_image_index_per_tower_and_a_caption_index_per_model(three_key_index, fashion_catalog):
    manifest = read_manifest(three_key_index)
    assert manifest.image_towers == [CLIP_KEY, FASHION_KEY] and manifest.image_entry.encoder == CLIP_KEY
    assert manifest.caption_models == list(THREE_KEYS) and set(manifest.models) == set(THREE_KEYS)
    assert manifest.image_entry_for(FASHION_KEY).count == manifest.image_entry.count == THREE_KEY_SIZE
    photos = [load_image(item.image_path) for item in fashion_catalog.items[:THREE_KEY_SIZE]]
    for tower in (CLIP_KEY, FASHION_KEY):
        stored = np.load(three_key_index / f"image__{tower}.npy")
        expected = models.get_encoder(tower, "cpu").encode_images(photos)
        assert np.abs(stored - expected).max() <= 1e-5
    clip, fashion = (np.load(three_key_index / f"image__{tower}.npy") for tower in (CLIP_KEY, FASHION_KEY))
    assert not np.allclose(clip, fashion)


def test_the_reader_decodes_each_photo_once_for_every_tower(tiny_models, fashion_catalog, monkeypatch):
    from core.pipeline import reader

    decoded = []
    real_decode = reader.decode_image
    monkeypatch.setattr(reader, "decode_image", lambda data: decoded.append(1) or real_decode(data))
    stage = EncodePlan((CLIP_KEY, FASHION_KEY), (), "cpu", "fp32", 8).load()
    batch = read_batch(fashion_catalog.items[:6], BatchTask(0, tuple(range(6))), stage.preps)
    assert len(decoded) == 6 and len(batch.pixels) == 2 and all(len(pixels) == 6 for pixels in batch.pixels)
    vectors = stage.encode(batch)
    assert set(vectors) == {f"image__{CLIP_KEY}", f"image__{FASHION_KEY}"}


def test_the_default_build_keeps_one_image_tower(fashion_index):
    manifest = read_manifest(fashion_index)
    assert manifest.image_towers == [CLIP_KEY] and manifest.caption_models == list(DEFAULT_MODELS)


@pytest.fixture(scope="module")
def three_key_engine(three_key_index):
    return SearchEngine(three_key_index)


def test_each_model_searches_its_own_towers_image_index(three_key_engine, three_key_index):
    fashion_vectors = np.load(three_key_index / f"image__{FASHION_KEY}.npy")
    for model, vectors in ((FASHION_KEY, fashion_vectors), (CLIP_KEY, np.load(three_key_index / f"image__{CLIP_KEY}.npy"))):
        result = three_key_engine.search(text="red summer dress", model=model, k=5, use_captions=False)
        text = models.get_encoder(model, "cpu").encode_texts(["red summer dress"])[0]
        exact = np.argsort(-(vectors @ text), kind="stable")
        assert result.model == model and np.allclose(result.query_vector, text, atol=1e-6)
        assert [hit.score for hit in result.hits] == pytest.approx([float(vectors[hit.row] @ text) for hit in result.hits], abs=1e-5)
        assert result.hits[0].row == exact[0]
    assert three_key_engine.for_model(FASHION_KEY).reader.image_model == FASHION_KEY
    assert three_key_engine.for_model(MULTILINGUAL_KEY) is three_key_engine


def test_more_like_this_blend_and_a_known_photo_use_the_chosen_towers_vectors(three_key_engine, three_key_index, fashion_catalog):
    fashion_vectors = np.load(three_key_index / f"image__{FASHION_KEY}.npy")
    item = fashion_catalog.items[3]
    like = three_key_engine.search(product=item.id, model=FASHION_KEY, k=5)
    assert np.allclose(like.query_vector, fashion_vectors[3], atol=1e-6) and item.id not in [h.id for h in like.hits]
    photo = three_key_engine.search(image=item.image_path.read_bytes(), model=FASHION_KEY, k=5)
    assert np.allclose(photo.query_vector, fashion_vectors[3], atol=1e-6) and item.id not in [h.id for h in photo.hits]
    clip_photo = three_key_engine.search(image=item.image_path.read_bytes(), model=CLIP_KEY, k=5)
    assert np.allclose(clip_photo.query_vector, np.load(three_key_index / f"image__{CLIP_KEY}.npy")[3], atol=1e-6)
    blend = three_key_engine.search(text="shirt", product=item.id, model=FASHION_KEY, blend=0.5, k=5)
    text = models.get_encoder(FASHION_KEY, "cpu").encode_texts(["shirt"])[0]
    expected = fashion_vectors[3] + text
    assert blend.mode == "blend" and np.allclose(blend.query_vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_a_steered_query_reaches_the_other_tower_whole(three_key_engine, fashion_catalog):
    """Every argument travels with the query to the chosen tower's engine: filters, steering, exclusions, K."""
    first, second = fashion_catalog.items[5].id, fashion_catalog.items[9].id
    query = dict(text="shirt", filters={"gender": ["Men"]}, not_text=["black"], like=[second], unlike=[first],
                 exclude_ids=[second], k=4, threshold=-1.0, use_captions=False, blend=0.5)
    result = three_key_engine.search(model=FASHION_KEY, **query)
    direct = three_key_engine.for_model(FASHION_KEY).search(model=FASHION_KEY, **query)
    assert result.model == FASHION_KEY and [h.id for h in result.hits] == [h.id for h in direct.hits]
    assert len(result.hits) == 4 and all(hit.metadata["gender"] == "Men" for hit in result.hits)
    assert {first, second}.isdisjoint(hit.id for hit in result.hits) and result.matching is not None


def test_every_tower_with_an_image_index_fits(three_key_index):
    manifest = read_manifest(three_key_index)
    for key in THREE_KEYS:
        check_fits(models.get_encoder(key, "cpu"), manifest, three_key_index)


def test_a_missing_tower_index_file_is_refused_at_load(three_key_index, tmp_path):
    broken = shutil.copytree(three_key_index, tmp_path / "broken")
    (broken / f"image__{FASHION_KEY}.hnsw").unlink()
    with pytest.raises(IndexMismatchError, match=f"image__{FASHION_KEY}.hnsw is missing"):
        SearchEngine(broken)


def test_the_ray_engine_builds_the_same_towers(ray_cluster, fashion_catalog, three_key_index, tmp_path):
    from tests.test_ray_engine import RayExecutor, assert_same_index

    out = tmp_path / "fashion3"
    build_index(fashion_catalog, out, THREE_KEYS, limit=THREE_KEY_SIZE, progress=False, batch_size=16,
                executor=RayExecutor())
    assert_same_index(out, three_key_index)


@pytest.fixture
def three_key_app(three_key_index, monkeypatch):
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(three_key_index.parent))
    return three_key_index


def test_the_app_offers_and_searches_with_fashion_clip(three_key_app):
    from .app_support import open_app, result_ids

    at = open_app({"q": "red summer dress", "model": FASHION_KEY, "k": "6"})
    assert FASHION_KEY in at.selectbox(key="model").options and at.selectbox(key="model").value == FASHION_KEY
    assert len(result_ids(at)) == 6


def test_compare_puts_each_towers_own_search_side_by_side_for_words_and_a_photo(three_key_app, fashion_catalog):
    from ui import variants
    from ui.results import CAPTION_CHARS
    from ui.text import plain

    from .app_support import open_app

    def shown(at, key: str) -> list[str]:
        return [m.value.split("  \n")[0] for m in at.grid(key=f"compare-{key}").markdown if m.value.startswith("**")]

    def expected(hits) -> list[str]:
        return [f"**{plain(hit.caption or hit.id, CAPTION_CHARS)}**" for hit in hits]

    def page_hits(**query) -> list:
        """What the page shows of a search: one card per product and its variants."""
        found = engine.search(k=variants.fetch_size(5), **query).hits
        return [card.hit for card in variants.cards(found, variants.for_engine(engine), 5)]

    at = open_app({"q": "shirt", "k": "5"}, page="pages/1_Compare_models.py")
    assert [h.value for h in at.subheader] == list(THREE_KEYS)
    engine = SearchEngine(three_key_app)
    words = {key: page_hits(text="shirt", model=key) for key in THREE_KEYS}
    for key in THREE_KEYS:
        assert shown(at, key) == expected(words[key])
    (overlap,) = at.metric
    shared = set.intersection(*({hit.id for hit in hits} for hits in words.values()))
    assert overlap.value == f"{len(shared)} of 5"

    at.text_input(key="compare_text").set_value("").run()
    product = fashion_catalog.items[0].id
    at.segmented_control(key="image_source").set_value("Catalog product").run()
    at.button(key=f"example-{product}").click().run()
    assert not at.exception and [h.value for h in at.subheader] == list(THREE_KEYS)
    for key in THREE_KEYS:
        hits = page_hits(product=product, model=key)
        assert shown(at, key) == expected(hits) and product not in [hit.id for hit in hits]


def test_evaluate_reports_both_models_on_the_same_held_out_products(three_key_index, capsys):
    from core.quality import evaluate
    from core.quality.evaluate import evaluate_index

    args = ["--index", str(three_key_index), "--val-fraction", "1.0", "--label-column", "subCategory"]
    assert evaluate.main([*args, "--models", f"{CLIP_KEY},{FASHION_KEY}", "--json"]) == 0
    clip, fashion = json.loads(capsys.readouterr().out)
    assert (clip["model"], clip["image_tower"], fashion["model"], fashion["image_tower"]) == (CLIP_KEY, CLIP_KEY, FASHION_KEY, FASHION_KEY)
    assert clip["queries"] == fashion["queries"] == THREE_KEY_SIZE and clip["recall"] != fashion["recall"]
    reader_vectors = np.load(three_key_index / f"image__{FASHION_KEY}.npy")
    items = SearchEngine(three_key_index).reader.items
    texts = models.get_encoder(FASHION_KEY, "cpu").encode_texts(items["caption"].tolist())
    scores = texts @ reader_vectors.T
    ranks = (scores >= scores[np.arange(len(items)), np.arange(len(items))][:, None]).sum(axis=1)
    assert fashion["mrr"] == pytest.approx(np.mean(1.0 / ranks))
    assert evaluate_index(three_key_index, FASHION_KEY, val_fraction=1.0).recall == {int(k): v for k, v in fashion["recall"].items()}

    assert evaluate.main([*args, "--model", CLIP_KEY, "--model", FASHION_KEY]) == 0
    table = capsys.readouterr().out
    assert f"Side by side: the same {THREE_KEY_SIZE} held-out caption queries" in table
    assert "Model fashion-clip (images: fashion-clip)" in table and "P@10 subCategory" in table


def test_a_copy_saved_in_fashion_clips_layout_loads_as_a_local_model(tiny_models, tmp_path):
    """What fine-tuning writes for a FashionCLIP base: its transformers layout, plus the descriptor."""
    from core.descriptor import Descriptor, write_descriptor

    from .models_env import copy_hub_models, models_dir_set

    with models_dir_set(copy_hub_models(tiny_models, tmp_path / "models")) as root:
        out = root / "shop-fashion"
        models.save_in_layout_of(FASHION_KEY, models.load_private_copy(FASHION_KEY, "cpu"), out)
        write_descriptor(out, Descriptor(base=FASHION_KEY, image_tower="self", encodes_images=True))
        assert not (out / "modules.json").exists() and (out / "config.json").is_file()
        spec = models.get_spec("shop-fashion")
        assert spec.layout == TRANSFORMERS_CLIP_LAYOUT and spec.image_tower == "shop-fashion"
        image = [Image.new("RGB", (50, 40), "purple")]
        copy, original = models.get_encoder("shop-fashion", "cpu"), models.get_encoder(FASHION_KEY, "cpu")
        np.testing.assert_allclose(copy.encode_images(image), original.encode_images(image), atol=1e-6)
        np.testing.assert_allclose(copy.encode_texts(["red dress"]), original.encode_texts(["red dress"]), atol=1e-6)


def test_an_update_takes_over_every_towers_vectors_and_a_new_tower_encodes_afresh(three_key_index, fashion_catalog, fashion_index, tmp_path):
    from dataclasses import replace

    catalog = replace(fashion_catalog, items=fashion_catalog.items[:THREE_KEY_SIZE])
    out = shutil.copytree(three_key_index, tmp_path / "fashion3")
    summary = build_index(catalog, out, THREE_KEYS, progress=False, workers=0, batch_size=16)
    assert summary.stage_items["encode"] == 0 and summary.stage_items["reuse"] == THREE_KEY_SIZE
    for tower in (CLIP_KEY, FASHION_KEY):
        stem = f"image__{tower}.npy"
        np.testing.assert_array_equal(np.load(out / stem), np.load(three_key_index / stem))

    grown = shutil.copytree(fashion_index, tmp_path / "grown")  # built with CLIP's tower only
    small = replace(fashion_catalog, items=fashion_catalog.items[:THREE_KEY_SIZE])
    summary = build_index(small, grown, THREE_KEYS, progress=False, workers=0, batch_size=16)
    assert summary.stage_items["encode"] == THREE_KEY_SIZE and any("'fashion-clip'" in note for note in summary.update_notes)
    assert read_manifest(grown).image_towers == [CLIP_KEY, FASHION_KEY]
    np.testing.assert_allclose(
        np.load(grown / f"image__{FASHION_KEY}.npy"), np.load(three_key_index / f"image__{FASHION_KEY}.npy"), atol=1e-5
    )
