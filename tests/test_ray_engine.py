"""The Ray Data engine on one local Ray (2 CPUs): the local engine's index, bad rows, URIs, resume.

Every build here runs the real stages in Ray tasks and actors; the local engine's index
of the same catalog is the reference, since the two must agree row for row.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import build_index as cli
from core.build_index import build_index
from core.catalog import from_folder
from core.index import read_manifest
from core.models import CLIP_KEY
from core.pipeline import BuildError
from core.pipeline.encode_stage import EncodePlan
from core.pipeline.executor import BuildJob, plan_shards
from core.pipeline.progress import BuildProgress
from core.pipeline.reader import RowRecord
from core.pipeline.writer import ShardWriter, read_shard
from core.search import SearchEngine
from tests.conftest import INDEX_SIZE, RAY_MISSING, need_module
from tests.test_build_resume import index_files, work_folders
from tests.test_cli import ROOT
from tests.hub_support import HF_SCHEMA

need_module("ray", RAY_MISSING)

from core.pipeline.ray_executor import RayExecutor, ShardRows, _check_reachable  # noqa: E402


def assert_same_index(ray_out: Path, local_out: Path, *, same_source: bool = True) -> None:
    """Items, thumbnails, manifest entries and the skipped report equal; vectors within 1e-5."""
    built, reference = index_files(ray_out), index_files(local_out)
    columns = [c for c in reference["items"].columns if same_source or c != "image_path"]
    pd.testing.assert_frame_equal(built["items"][columns], reference["items"][columns])
    assert built["entries"] == reference["entries"] and built["thumbnails"] == reference["thumbnails"]
    for stem, vectors in reference["vectors"].items():
        assert np.abs(built["vectors"][stem] - vectors).max() <= 1e-5, stem
    ours, theirs = read_manifest(ray_out), read_manifest(local_out)
    assert (ours.models, ours.hnsw) == (theirs.models, theirs.hnsw)
    keys = [k for k in theirs.catalog if same_source or k not in ("source", "recipe")]
    assert {k: ours.catalog[k] for k in keys} == {k: theirs.catalog[k] for k in keys}
    if same_source:
        assert (ray_out / "skipped.csv").read_text() == (local_out / "skipped.csv").read_text()


def test_ray_index_equals_the_local_one_and_searches_alike(ray_cluster, fashion_catalog, fashion_index, engine, tmp_path):
    out = tmp_path / "fashion"
    summary = build_index(fashion_catalog, out, limit=INDEX_SIZE, progress=False, executor=RayExecutor())
    assert summary.indexed == INDEX_SIZE and summary.stage_seconds["encode"] > 0
    assert_same_index(out, fashion_index)

    ours = SearchEngine(out)
    product = engine.reader.items["id"].iloc[11]
    queries = [
        {"text": "navy blue shirt for men"},
        {"text": "rote Damenschuhe", "model": "clip-ViT-B-32-multilingual-v1"},
        {"image": fashion_catalog.items[11].image_path},
        {"text": "summer dress", "image": fashion_catalog.items[5].image_path, "blend": 0.4},
    ]
    for query in queries:
        assert [h.id for h in ours.search(k=10, **query).hits] == [h.id for h in engine.search(k=10, **query).hits]
    assert [h.id for h in ours.search(product=product, k=8).hits] == [h.id for h in engine.search(product=product, k=8).hits]


@pytest.fixture(scope="module")
def messy_shop(fashion_dir, tmp_path_factory) -> Path:
    """Eight real photos and four bad rows, the bad ones filling one whole batch of 4."""
    root = tmp_path_factory.mktemp("messy-shop")
    images = root / "images"
    images.mkdir()
    photos = sorted((fashion_dir / "images").glob("*.jpg"))[:8]
    for path in photos:
        shutil.copy(path, images / path.name)
    (images / "broken.jpg").write_bytes(photos[0].read_bytes()[:300])
    (images / "notes.png").write_text("not a picture")
    (images / "empty.jpg").write_bytes(b"")
    (images / "vanishes.jpg").write_bytes(photos[1].read_bytes())
    ids = [p.stem for p in photos[:4]] + ["broken", "notes", "empty", "vanishes"] + [p.stem for p in photos[4:]]
    with open(root / "products.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "productDisplayName"])
        writer.writerows([item_id, f"product {item_id}"] for item_id in [*ids, "missing"])
    return root


def test_bad_rows_are_reported_as_by_the_local_engine(ray_cluster, tiny_models, messy_shop, tmp_path):
    catalog = from_folder(messy_shop / "images", messy_shop / "products.csv", name="messy")
    (messy_shop / "images" / "vanishes.jpg").unlink(missing_ok=True)  # gone between the scan and the build
    options = {"batch_size": 4, "shard_size": 8, "progress": False}
    local = build_index(catalog, tmp_path / "local" / "messy", workers=0, **options)
    ours = build_index(catalog, tmp_path / "ray" / "messy", executor=RayExecutor(), **options)
    assert ours.indexed == local.indexed == 8 and ours.skipped == local.skipped and len(ours.skipped) == 5
    reasons = pd.read_csv(tmp_path / "ray" / "messy" / "skipped.csv")["reason"].tolist()
    assert any("damaged or incomplete" in r for r in reasons) and any("was not found" in r for r in reasons)
    assert_same_index(tmp_path / "ray" / "messy", tmp_path / "local" / "messy")


def test_catalogs_behind_uris_parquet_and_folders(ray_cluster, tiny_models, fashion_dir, tmp_path, capsys):
    """file:// URIs take the same road as s3:// or gs:// ones (pyarrow / fsspec filesystems):
    a parquet folder URI and an images folder + CSV URI, both built by the ray engine."""
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    products = pd.read_csv(fashion_dir / "products.csv", dtype=str).head(24)
    for n, part in enumerate([products.iloc[:12], products.iloc[12:]]):
        images = [{"bytes": (fashion_dir / "images" / f"{i}.jpg").read_bytes(), "path": f"{i}.jpg"} for i in part["id"]]
        images[3 * n + 2] = {"bytes": b"<html>not an image</html>", "path": None}
        table = pa.table({name: [None] * len(part) for name in HF_SCHEMA.names if name != "image"} | {
            "id": part["id"].astype(int).tolist(), "productDisplayName": part["productDisplayName"].tolist(),
            "image": images,
        }, schema=HF_SCHEMA)
        pq.write_table(table, hub / f"train-{n:05d}-of-00002.parquet")
    common = ["--batch-size", "8", "--models", "clip-ViT-B-32"]

    files = sorted(str(p) for p in hub.iterdir())
    assert cli.main(["--parquet", *files, "--out", str(tmp_path / "local" / "hub"), *common]) == 0
    assert cli.main(["--parquet", hub.as_uri(), "--out", str(tmp_path / "ray" / "hub"), "--engine", "ray", *common]) == 0
    assert "Indexed 22 images" in capsys.readouterr().out
    assert_same_index(tmp_path / "ray" / "hub", tmp_path / "local" / "hub", same_source=False)
    assert len(pd.read_csv(tmp_path / "ray" / "hub" / "skipped.csv")) == 2

    images, captions = fashion_dir / "images", fashion_dir / "products.csv"
    local = ["--images", str(images), "--captions", str(captions), "--out", str(tmp_path / "local" / "folder")]
    uris = ["--images", images.as_uri(), "--captions", captions.as_uri(), "--out", str(tmp_path / "ray" / "folder")]
    assert cli.main([*local, "--limit", "40", *common]) == 0
    assert cli.main([*uris, "--limit", "40", "--engine", "ray", *common]) == 0
    assert_same_index(tmp_path / "ray" / "folder", tmp_path / "local" / "folder", same_source=False)
    located = pd.read_parquet(tmp_path / "ray" / "folder" / "items.parquet")["image_path"]
    assert located.str.startswith(images.as_uri() + "/").all()


KILLED_RAY_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from core.build_index import build_index
    from core.catalog import from_folder
    from core.pipeline.ray_executor import RayExecutor

    images, captions, out, address = sys.argv[1:]

    def power_cut(stage, done, total):
        if stage == "images" and done >= 96:
            os.killpg(0, signal.SIGKILL)

    catalog = from_folder(Path(images), Path(captions), name="fashion")
    build_index(catalog, Path(out), limit=160, batch_size=8, shard_size=32, progress=False,
                on_progress=power_cut, executor=RayExecutor(address))
    """
)


def test_a_killed_ray_build_resumes_from_its_finished_shards(ray_cluster, tiny_models, fashion_dir, fashion_index, tmp_path):
    """A driver joined to the cluster is SIGKILLed mid-build; the same build run again keeps its shards."""
    out = tmp_path / "fashion"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RAY_BUILD, str(fashion_dir / "images"), str(fashion_dir / "products.csv"),
         str(out), ray_cluster],
        cwd=ROOT, env={**os.environ, "VITRINE_MODELS_DIR": str(tiny_models), "PYTHONPATH": str(ROOT)},
        start_new_session=True, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    [work] = work_folders(out)
    finished = len(list((work / "shards").glob("[0-9]*")))
    assert 0 < finished < 5 and not out.exists()

    catalog = from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="fashion")
    summary = build_index(catalog, out, limit=160, batch_size=8, shard_size=32, progress=False, executor=RayExecutor())

    assert (summary.resumed_shards, summary.shards, summary.indexed) == (finished, 5, 160)
    resumed, reference = index_files(out), index_files(fashion_index)
    pd.testing.assert_frame_equal(resumed["items"], reference["items"].iloc[:160])
    for stem, vectors in reference["vectors"].items():
        assert np.abs(resumed["vectors"][stem] - vectors[:160]).max() <= 1e-5, stem
    assert work_folders(out) == []


def test_shard_rows_arriving_out_of_order_are_written_in_row_order(tmp_path):
    writer = ShardWriter(tmp_path / "shards")
    rows = ShardRows(writer, {0: 3, 1: 2}, ["image__m"])

    def batch(positions, shards, errors):
        vectors = np.array([[p, p + 0.5] for p in positions], dtype=np.float32)
        return {
            "position": np.array(positions), "shard": np.array(shards), "sha1": np.array([f"s{p}" for p in positions], dtype=object),
            "thumbnail": np.array([b"t"] * len(positions), dtype=object), "error": np.array(errors, dtype=object),
            "image__m": vectors, "read_seconds": np.zeros(len(positions)), "encode_seconds": np.zeros(len(positions)),
        }

    progress = BuildProgress(5, 0, show=False, on_progress=None)
    rows.add(batch([4, 2], [1, 0], ["", ""]), progress)
    rows.add(batch([1, 3], [0, 1], ["broken", ""]), progress)
    assert rows.unfinished() == [0]
    rows.add(batch([0], [0], [""]), progress)
    assert rows.unfinished() == [] and progress.done == 5 and progress.items["encode"] == 4
    records, vectors = read_shard(tmp_path / "shards", 0, ["image__m"])
    assert records == [RowRecord(0, "s0", b"t"), RowRecord(1, "s1", b"t", "broken"), RowRecord(2, "s2", b"t")]
    assert vectors["image__m"].tolist() == [[0, 0.5], [2, 2.5]]
    assert read_shard(tmp_path / "shards", 1, ["image__m"])[1]["image__m"].tolist() == [[3, 3.5], [4, 4.5]]


def test_the_reader_runs_as_tasks_beside_the_encoder_actors(ray_cluster, fashion_catalog, tmp_path, capsys):
    """Ray Data fuses compatible neighbours: fused into the actor, decoding would wait for the model."""
    job = BuildJob(fashion_catalog.items[:8], plan_shards(range(8), 4), 4, EncodePlan((CLIP_KEY,), (), "cpu", "fp32", 4),
                   ShardWriter(tmp_path))
    RayExecutor().dataset(job).explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "ActorPoolMapOperator[MapBatches(EncodeRows)]" in optimized
    assert "TaskPoolMapOperator[MapBatches(read_rows)]" in optimized


def test_devices_are_the_clusters(ray_cluster):
    import ray

    if ray.cluster_resources().get("GPU"):
        pytest.skip("this Ray cluster has GPUs")
    assert RayExecutor().resolve_device("auto") == "cpu"
    with pytest.raises(BuildError, match="the Ray cluster has no GPU"):
        RayExecutor().resolve_device("cuda")


def test_an_address_nobody_answers_on_is_refused_at_once():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(BuildError, match=f"Cannot reach the Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable(None)
    _check_reachable("auto")


def test_the_ray_engine_updates_an_index_as_the_local_one_does(ray_cluster, fashion_catalog, fashion_index, tmp_path):
    out = tmp_path / "fashion"
    shutil.copytree(fashion_index, out)
    grown = fashion_catalog.items[20 : INDEX_SIZE + 20]  # 20 products removed, 20 added
    summary = build_index(replace(fashion_catalog, items=grown), out, progress=False, executor=RayExecutor())
    assert summary.changes == {"added": 20, "changed": 0, "removed": 20, "unchanged": INDEX_SIZE - 20}
    assert summary.stage_items["encode"] == 20
    reference = tmp_path / "reference"
    build_index(replace(fashion_catalog, items=grown), reference, progress=False, full=True)
    assert_same_index(out, reference)
