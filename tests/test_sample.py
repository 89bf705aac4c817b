"""The sample catalog and parquet input, with the hub download as the only stand-in.

The "hub" serves parquet files made from the shared photos in the schema of
ashraq/fashion-product-images-small; everything after the download is the real code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core import build_index as cli
from core.catalog import CatalogError
from core.settings import CACHE_DIR_ENV
from core.sample import SAMPLE_DATASET, SampleDownloadError, sample_catalog
from core.search import SearchEngine

from .hub_support import FILES, serve_hub, write_hub_repo

ROWS_PER_FILE = 25


@pytest.fixture(scope="module")
def hub_files(fashion_dir, tmp_path_factory) -> Path:
    """The dataset repo as the hub would serve it: two parquet files and a README."""
    return write_hub_repo(fashion_dir, tmp_path_factory.mktemp("hub"), ROWS_PER_FILE)


@pytest.fixture
def hub(hub_files, monkeypatch, tmp_path):
    """Stand-ins for the two hub calls; records the downloads. Set `hub.down = True` for no network."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    return serve_hub(monkeypatch, hub_files)


def test_sample_downloads_only_the_files_the_first_rows_need(hub, tmp_path):
    catalog = sample_catalog(20, tmp_path / "cache")
    assert hub.downloads == [FILES[0]]
    assert len(catalog.items) == 20 and catalog.name == "fashion-sample" and SAMPLE_DATASET in catalog.source
    first = catalog.items[0]
    assert first.caption == "Palm Tree Girls Sp Jace Sko White Skirts" and first.image_bytes
    assert first.metadata["masterCategory"] == "Apparel" and first.metadata["year"] == "2012"

    more = sample_catalog(40, tmp_path / "cache")
    assert hub.downloads == [FILES[0], FILES[1]] and len(more.items) == 40
    assert [i.id for i in more.items[:20]] == [i.id for i in catalog.items]

    hub.down = True  # a booth without network: the cache answers
    assert len(sample_catalog(40, tmp_path / "cache").items) == 40
    assert len(sample_catalog(500, tmp_path / "cache").items) == 2 * ROWS_PER_FILE  # the whole (tiny) dataset


def test_download_failure_is_a_clear_error(hub, tmp_path, capsys):
    hub.down = True
    with pytest.raises(SampleDownloadError, match="Could not download the sample catalog .* Check the network"):
        sample_catalog(10, tmp_path / "fresh")
    assert cli.main(["--sample", "10", "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not download") and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "idx").exists()


def test_damaged_cache_and_bad_counts_are_refused(hub, tmp_path):
    with pytest.raises(CatalogError, match="at least 1"):
        sample_catalog(0, tmp_path / "cache")
    sample_catalog(5, tmp_path / "cache")
    (tmp_path / "cache" / "files.json").write_text('["data/tr')  # a listing cut short is fetched again
    assert len(sample_catalog(5, tmp_path / "cache").items) == 5
    (tmp_path / "cache" / FILES[0]).write_bytes(b"PAR1 cut short")
    with pytest.raises(CatalogError, match="damaged.*Delete"):
        sample_catalog(5, tmp_path / "cache")


def test_cli_sample_builds_a_searchable_index(hub, tiny_models, tmp_path, capsys):
    out = tmp_path / "index_data" / "sample"
    assert cli.main(["--sample", "30", "--out", str(out), "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "Indexed 29 images" in printed and "Skipped 1 rows" in printed and "not a supported image" in printed
    engine = SearchEngine(out)
    assert engine.count == 29 and engine.manifest.catalog["name"] == "fashion-sample"
    hit = engine.search(text="white skirt", k=3).hits[0]
    assert hit.caption and hit.thumbnail.endswith(".webp") and Path(hit.thumbnail).is_file()


def test_parquet_files_in_the_sample_schema_build_directly(hub_files, tiny_models, tmp_path, capsys):
    out = tmp_path / "idx"
    assert cli.main(["--parquet", *(str(hub_files / f) for f in FILES), "--out", str(out), "--limit", "28"]) == 0
    assert "Indexed 27 images" in capsys.readouterr().out
    items = pd.read_parquet(out / "items.parquet")
    assert items["image_path"].eq("").all() and items["caption"].str.len().gt(0).all()
    assert "embedded image" in (out / "skipped.csv").read_text()
