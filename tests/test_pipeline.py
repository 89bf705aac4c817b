"""The builder's stages one by one: reader records, encoder equivalence, shard files, the work lock."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from core import settings
from core import models
from core.build_index import build_index
from core.catalog import Catalog, CatalogItem
from core.images import load_image
from core.models import CLIP_KEY, ModelLoadError, get_encoder
from core.pipeline import BuildError
from core.pipeline.encode_stage import EncodePlan, ImageTower
from core.pipeline.executor import plan_shards
from core.pipeline.reader import BatchTask, RowRecord, read_batch
from core.pipeline.work import WorkFolder
from core.pipeline.writer import ShardWriter, intact_shards, read_shard
from tests.test_cli import ROOT


def image_only(key: str = CLIP_KEY, precision: str = "fp32") -> EncodePlan:
    return EncodePlan((key,), (), "cpu", precision, 8)


def test_pipeline_vectors_equal_the_encoders_own(tiny_models, fashion_catalog):
    """Reader prep (uint8 resize/crop) + tower call + on-device normalisation == Encoder.encode_images."""
    items = fashion_catalog.items[:24]
    stage = image_only().load()
    batch = read_batch(items, BatchTask(0, tuple(range(len(items)))), stage.preps)
    assert batch.pixels[0].dtype.is_floating_point is False and all(r.error is None for r in batch.rows)
    vectors = stage.towers[0].embed(batch.pixels[0], contextlib.nullcontext())
    expected = get_encoder(CLIP_KEY, "cpu").encode_images([load_image(item.image_path) for item in items])
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    assert np.abs(vectors - expected).max() <= 1e-5


def test_low_precision_on_cpu_stays_close(tiny_models, fashion_catalog):
    items = fashion_catalog.items[:8]
    batch = read_batch(items, BatchTask(0, tuple(range(8))), image_only().load().preps)
    exact = image_only().load().encode(batch)[f"image__{CLIP_KEY}"]
    bf16 = image_only(precision="bf16").load().encode(batch)[f"image__{CLIP_KEY}"]
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert (bf16 * exact).sum(axis=1).min() > 0.99


def test_reader_turns_every_bad_row_into_a_reason(tiny_models, fashion_catalog, tmp_path):
    good = fashion_catalog.items[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.image_path.read_bytes()[:300])
    rows = [
        good,
        CatalogItem("gone", None, {}, tmp_path / "gone.jpg"),
        CatalogItem("broken", None, {}, broken),
        CatalogItem("text", None, {}, None, b"just some text"),
        CatalogItem("nothing", None, {}, None, None),
    ]
    batch = read_batch(rows, BatchTask(3, tuple(range(len(rows)))), image_only().load().preps)
    assert batch.shard == 3 and len(batch.pixels[0]) == 1 and batch.captions == [good.caption]
    reasons = [r.error for r in batch.rows]
    assert reasons[0] is None and len(batch.rows[0].sha1) == 40 and batch.rows[0].thumbnail[8:12] == b"WEBP"
    assert "not found" in reasons[1] and "damaged or incomplete" in reasons[2]
    assert "not a supported image" in reasons[3] and "has no image" in reasons[4]


def test_a_batch_without_a_readable_row_still_encodes(tiny_models):
    stage = EncodePlan((CLIP_KEY,), (CLIP_KEY,), "cpu", "fp32", 8).load()
    batch = read_batch([CatalogItem("x", "red", {}, None, b"nope")], BatchTask(0, (0,)), stage.preps)
    vectors = stage.encode(batch)
    assert {stem: v.shape for stem, v in vectors.items()} == {f"image__{CLIP_KEY}": (0, 24), f"caption__{CLIP_KEY}": (0, 24)}


def test_builder_refuses_a_clip_folder_it_cannot_call_directly(tiny_models, tmp_path, monkeypatch):
    clip = shutil.copytree(tiny_models / CLIP_KEY, tmp_path / CLIP_KEY)
    (clip / "1_Normalize").mkdir()
    modules = json.loads((clip / "modules.json").read_text())
    modules.append({"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"})
    (clip / "modules.json").write_text(json.dumps(modules))
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path))
    models.clear_cache()
    try:
        with pytest.raises(ModelLoadError, match="one CLIP module"):
            ImageTower(get_encoder(CLIP_KEY, "cpu"))
    finally:
        models.clear_cache()


def test_shards_plan_fixed_row_ranges():
    shards = plan_shards(range(70), 32)
    assert [(s.number, s.positions[0], s.positions[-1] + 1) for s in shards] == [(0, 0, 32), (1, 32, 64), (2, 64, 70)]
    assert [b.positions for b in shards[2].batches(4)] == [(64, 65, 66, 67), (68, 69)]


def test_shards_round_trip_and_damaged_ones_are_redone(tmp_path):
    folder = tmp_path / "shards"
    writer = ShardWriter(folder)
    rows = [RowRecord(0, "a" * 40, b"thumb"), RowRecord(1, error="The file is empty."), RowRecord(2, "b" * 40, b"t2")]
    vectors = {"image__m": np.eye(2, 4, dtype=np.float32)}
    for number in range(4):
        writer.write(number, rows, vectors)
    read_rows, read_vectors = read_shard(folder, 0, ["image__m"])
    assert read_rows == rows and np.array_equal(read_vectors["image__m"], vectors["image__m"])
    np.save(folder / "000001" / "image__m.npy", np.eye(3, 4, dtype=np.float32))  # rows and vectors disagree
    (folder / "000002" / "rows.parquet").write_bytes(b"cut short")
    (folder / ".000004.tmp").mkdir()  # a write killed before its rename
    assert intact_shards(folder, ["image__m"], {0: 3, 1: 3, 2: 3, 3: 4}) == {0}
    assert sorted(p.name for p in folder.iterdir()) == ["000000"]


def test_a_second_build_of_the_same_index_is_refused(tiny_models, fashion_catalog, tmp_path):
    """While one build holds its work folder, the same build from this process (another app session)
    or from another process stops with a clear message instead of mixing shards."""
    catalog = Catalog("fashion", "test", fashion_catalog.items[:16], [])
    seen = []

    def meanwhile(stage, done, total):
        if not seen:
            seen.append(True)
            with pytest.raises(BuildError, match="Another build"):
                build_index(catalog, tmp_path / "idx", batch_size=8, progress=False)

    build_index(catalog, tmp_path / "idx", batch_size=8, progress=False, on_progress=meanwhile)
    assert seen and (tmp_path / "idx" / "manifest.json").is_file()

    script = "import sys; from core.pipeline.work import WorkFolder; WorkFolder(sys.argv[1], {}).locked().__enter__()"
    with WorkFolder(tmp_path / "other", {}).locked():
        other = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "other")],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
        )
    assert other.returncode != 0 and "Another build" in other.stderr
