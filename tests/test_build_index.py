"""The builder on a messy real-photo folder: bad rows skipped and reported, thumbnails, CLI options."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import build_index as cli
from core.build_index import build_index
from core.catalog import Catalog, CatalogError, CatalogItem, from_folder
from core.index import IndexReader, read_manifest
from core.models import ModelLoadError
from core.pipeline import BuildError
from core.pipeline.executor import CatalogRows
from core.pipeline.thumbnails import THUMBNAIL_PX
from core.pipeline.writer import ShardWriter

GOOD = 6


@pytest.fixture(scope="module")
def messy(tiny_models, fashion_dir, tmp_path_factory):
    """Six real photos plus every kind of bad row, built once through reader workers."""
    root = tmp_path_factory.mktemp("messy")
    images = root / "images"
    images.mkdir()
    photos = sorted((fashion_dir / "images").glob("*.jpg"))[:GOOD]
    for path in photos:
        shutil.copy(path, images / path.name)
    with Image.open(photos[0]) as photo:
        photo.resize((640, 480)).save(images / "big.png")
    shutil.copy(photos[1], images / "twin.jpg")  # same bytes as another product's photo
    (images / "broken.jpg").write_bytes(photos[2].read_bytes()[:400])
    (images / "notes.png").write_text("this is text, not a picture")
    (images / "empty.jpg").write_bytes(b"")
    (images / "vanishes.jpg").write_bytes(photos[3].read_bytes())
    with open(root / "products.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "productDisplayName", "color"])
        for path in sorted(images.iterdir()):
            writer.writerow([path.stem, f"product {path.stem}", "blue"])
        writer.writerow(["missing", "a product without a photo", "red"])
    catalog = from_folder(images, root / "products.csv", name="messy")
    catalog.items.append(CatalogItem("no-image", "added by code", {}, None, None))
    (images / "vanishes.jpg").unlink()  # deleted between the catalog scan and the build
    out = root / "index"
    summary = build_index(catalog, out, batch_size=4, workers=1, progress=False)
    return out, summary


def test_bad_rows_are_skipped_listed_and_summarised(messy):
    out, summary = messy
    reasons = dict(pd.read_csv(out / "skipped.csv").itertuples(index=False))
    assert len(reasons) == 6 and summary.indexed == GOOD + 2
    by_id = {row.split(" ")[0]: reason for row, reason in reasons.items()}
    assert "damaged or incomplete" in by_id["broken"] and "not a supported image" in by_id["notes"]
    assert "empty" in by_id["empty"] and "not found" in by_id["vanishes"] and "has no image" in by_id["no-image"]
    assert by_id["products.csv"] == "no image named 'missing' in the images folder"  # skipped by the catalog
    described = summary.describe()
    assert f"Skipped 6 rows (see {out / 'skipped.csv'})" in described and "damaged or incomplete" in described
    assert read_manifest(out).catalog["skipped"] == 6


def test_thumbnails_are_small_webp_files_beside_the_index(messy):
    out, _ = messy
    items = pd.read_parquet(out / "items.parquet")
    sizes = {}
    for item_id, thumb in zip(items["id"], items["thumbnail"]):
        with Image.open(out / thumb) as image:
            assert image.format == "WEBP"
            sizes[item_id] = image.size
    assert sizes["big"] == (THUMBNAIL_PX, THUMBNAIL_PX * 3 // 4)  # shrunk to fit, aspect kept
    assert all(max(size) <= THUMBNAIL_PX for size in sizes.values())
    twin_of = sorted(p.stem for p in (out.parent / "images").glob("*.jpg"))[1]
    row = dict(zip(items["id"], items["thumbnail"]))
    assert row["twin"] == row[twin_of]  # identical photos share one file
    assert len(list((out / "thumbnails").iterdir())) == len(items) - 1


def test_cli_options_reach_the_build(tiny_models, fashion_dir, tmp_path, capsys, monkeypatch):
    """Each option's effect, watched on the real stages: what the reader reads where, what the writer writes."""
    batches_read_here, shards_written = [], []
    read_batch, write_shard = CatalogRows.__getitem__, ShardWriter.write
    monkeypatch.setattr(CatalogRows, "__getitem__",  # runs in this process only with --workers 0
                        lambda rows, task: batches_read_here.append(len(task.positions)) or read_batch(rows, task))
    monkeypatch.setattr(ShardWriter, "write",
                        lambda writer, number, rows, vectors: shards_written.append((number, len(rows)))
                        or write_shard(writer, number, rows, vectors))
    args = ["--images", str(fashion_dir / "images"), "--captions", str(fashion_dir / "products.csv"), "--limit", "20",
            "--models", "clip-ViT-B-32"]
    assert cli.main([*args, "--out", str(tmp_path / "bf16"), "--precision", "bf16", "--workers", "0",
                     "--batch-size", "8", "--shard-size", "12", "--m", "8", "--ef-construction", "40"]) == 0
    printed = capsys.readouterr()
    assert "Indexed 20 images" in printed.out and "Stages: decode" in printed.out and "encode" in printed.out
    assert "images: 100%" in printed.err and "20/20" in printed.err  # the tqdm progress bar
    manifest = read_manifest(tmp_path / "bf16")
    assert [e.stem for e in manifest.entries] == ["image__clip-ViT-B-32", "caption__clip-ViT-B-32"]
    assert (manifest.hnsw.m, manifest.hnsw.ef_construction) == (8, 40)
    assert shards_written == [(0, 12), (1, 8)]  # --shard-size 12 (the default would be one shard of 20)
    assert batches_read_here == [8, 4, 8]  # --batch-size 8 within each shard, read here: --workers 0

    assert cli.main([*args, "--out", str(tmp_path / "fp32"), "--precision", "fp32", "--workers", "0"]) == 0
    bf16, fp32 = (IndexReader(tmp_path / name).image_vectors for name in ("bf16", "fp32"))
    assert np.abs(bf16 - fp32).max() > 1e-3 and (bf16 * fp32).sum(axis=1).min() > 0.99  # --precision bf16 ran


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "cuda"], "no such device"),
        (["--models", ""], "No model given"),
        (["--models", "clip-ViT-B-32,gpt-5"], "Unknown model"),
        (["--sample", "5"], "not both"),
    ],
)
def test_cli_refuses_what_it_cannot_do(tiny_models, fashion_dir, tmp_path, capsys, extra, message):
    if extra[:2] == ["--device", "cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    args = ["--images", str(fashion_dir / "images"), "--out", str(tmp_path / "idx"), "--limit", "4"]
    assert cli.main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--batch-size", "--limit", "--shard-size", "--workers", "--sample"])
def test_cli_rejects_impossible_numbers(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--out", "x", option, "-1"])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err


def test_a_catalog_without_a_readable_photo_writes_nothing(tiny_models, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    assert cli.main(["--images", str(images), "--out", str(tmp_path / "idx")]) == 2
    assert "No image of" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch_size": 0}, BuildError, "at least 1"),
        ({"workers": -1}, BuildError, "at least 0"),
        ({"precision": "fp8"}, BuildError, "Unknown precision"),
        ({"limit": 3, "models": ["clip-ViT-B-32", "nope"]}, ModelLoadError, "Unknown model"),
    ],
)
def test_build_api_refuses_bad_options(tiny_models, fashion_catalog, tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        build_index(fashion_catalog, tmp_path / "idx", progress=False, **{"limit": 3, **options})
    assert not any(tmp_path.iterdir())


def test_an_empty_catalog_is_refused(tiny_models, tmp_path):
    with pytest.raises(CatalogError, match="holds no product"):
        build_index(Catalog("empty", "an empty folder", [], []), tmp_path / "idx", progress=False)
