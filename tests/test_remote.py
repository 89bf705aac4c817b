"""Catalogs behind URIs, read through fsspec's in-memory filesystem: a store with no local path,
like a bucket, reached by the same code as s3:// or gs:// (core/remote.py)."""

from __future__ import annotations

import uuid

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.build_index import build_index
from core.catalog import CatalogError, from_folder, from_parquet, load_catalog
from core.remote import is_uri


@pytest.fixture
def bucket(fashion_dir):
    """memory://<unique>/ with five shared photos and a products.csv that also names a missing one."""
    store = fsspec.filesystem("memory")
    root = f"/{uuid.uuid4().hex}"
    photos = sorted((fashion_dir / "images").glob("*.jpg"))[:5]
    for path in photos:
        store.pipe(f"{root}/images/{path.name}", path.read_bytes())
    store.pipe(f"{root}/images/.hidden/{photos[0].name}", photos[0].read_bytes())
    rows = "".join(f"{p.stem},product {p.stem}\n" for p in photos)
    store.pipe(f"{root}/products.csv", f"id,productDisplayName\n{rows}ghost,no photo\n".encode())
    yield f"memory://{root.lstrip('/')}", store, root
    store.rm(root, recursive=True)


def test_a_folder_behind_a_uri_is_a_catalog_like_a_local_one(bucket, fashion_dir):
    uri, store, root = bucket
    catalog = from_folder(f"{uri}/images", f"{uri}/products.csv")
    photos = sorted(path.stem for path in (fashion_dir / "images").glob("*.jpg"))[:5]
    assert [(i.id, i.caption) for i in catalog.items] == [(stem, f"product {stem}") for stem in photos]
    assert [i.id for i in from_folder(f"{uri}/images").items] == photos  # the hidden folder is left out
    assert all(i.image_uri == f"{uri}/images/{i.id}.jpg" and i.image_path is None for i in catalog.items)
    assert catalog.skipped[0].reason == "no image named 'ghost' in the images folder"
    assert catalog.items[0].read_bytes() == (fashion_dir / "images" / f"{catalog.items[0].id}.jpg").read_bytes()

    before = catalog.fingerprint()
    assert from_folder(f"{uri}/images", f"{uri}/products.csv").fingerprint() == before
    store.pipe(f"{root}/images/{catalog.items[2].id}.jpg", b"changed")
    assert from_folder(f"{uri}/images", f"{uri}/products.csv").fingerprint() != before


def test_a_build_reads_the_photos_behind_uris_and_reports_a_vanished_one(tiny_models, bucket, tmp_path):
    uri, store, root = bucket
    catalog = load_catalog(images=f"{uri}/images", captions=f"{uri}/products.csv")
    store.rm(f"{root}/images/{catalog.items[1].id}.jpg")
    summary = build_index(catalog, tmp_path / "idx", batch_size=4, workers=0, progress=False)
    assert summary.indexed == 4
    assert [row.reason for row in summary.skipped][-1] == f"The file '{uri}/images/{catalog.items[1].id}.jpg' was not found."
    assert pd.read_parquet(tmp_path / "idx" / "items.parquet")["image_path"].str.startswith(uri).all()


def test_a_parquet_folder_uri_reads_its_files_in_order(bucket, tmp_path):
    uri, store, root = bucket
    for n in range(2):
        path = tmp_path / f"part-{n}.parquet"
        pq.write_table(pa.table({"id": [f"{n}a", f"{n}b"], "image": [b"x", b"y"]}), path)
        store.pipe(f"{root}/parquet/part-{n}.parquet", path.read_bytes())
    catalog = from_parquet([f"{uri}/parquet"])
    assert [i.id for i in catalog.items] == ["0a", "0b", "1a", "1b"] and catalog.name == "parquet"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda uri: from_folder(f"{uri}/nowhere"), "images folder not readable"),
        (lambda uri: from_folder("nope://bucket/images"), "no filesystem for this URI"),
        (lambda uri: from_folder(f"{uri}/images", f"{uri}/missing.csv"), "cannot read captions file"),
        (lambda uri: from_parquet([f"{uri}/missing.parquet"]), "cannot read parquet file"),
        (lambda uri: from_parquet([f"{uri}/products.csv"]), "cannot read parquet file"),
    ],
    ids=["missing-folder", "unknown-scheme", "missing-csv", "missing-parquet", "not-parquet"],
)
def test_uris_that_lead_nowhere_are_catalog_errors(bucket, build, message):
    with pytest.raises(CatalogError, match=message):
        build(bucket[0])


def test_what_counts_as_a_uri():
    assert is_uri("s3://bucket/x") and is_uri("file:///tmp/x") and is_uri("gs://b")
    assert not is_uri("/tmp/x") and not is_uri("C:\\photos") and not is_uri("relative/path")
