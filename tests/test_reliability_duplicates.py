"""Duplicate product ids: several photos of one product work everywhere; ids shared by different
products are reported by the builder."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from core.build_index import build_index
from core.catalog import conflicting_ids, from_folder
from core.pipeline.assemble import NOTES_FILE

from .app_support import assert_no_exception, open_app

CATALOG_PAGE = "pages/2_Catalog.py"
# id, caption, colour per photo: p1 is one product with two photos (fine), p2 two products under one id
ROWS = [
    ("p1", "red shirt", "Red"),
    ("p1", "red shirt", "Red"),
    ("p2", "blue jeans", "Blue"),
    ("p2", "green dress", "Green"),
    ("p3", "black watch", "Black"),
    ("p3", "black watch", "Black"),
]


@pytest.fixture
def duplicate_ids(fashion_dir, tmp_path, tiny_models, monkeypatch) -> tuple[Path, object]:
    images = tmp_path / "photos"
    images.mkdir()
    sources = sorted((fashion_dir / "images").glob("*.jpg"))[: len(ROWS)]
    with open(tmp_path / "products.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file", "caption", "baseColour"])
        for number, ((item_id, caption, colour), source) in enumerate(zip(ROWS, sources)):
            shutil.copy(source, images / f"{number}.jpg")
            writer.writerow([item_id, f"{number}.jpg", caption, colour])
    catalog = from_folder(images, tmp_path / "products.csv", filename_column="file", name="dupes")
    out = tmp_path / "index_data" / "dupes"
    summary = build_index(catalog, out, progress=False)
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(out.parent))
    return out, summary


def test_only_ids_whose_rows_disagree_are_noted(fashion_dir, tmp_path):
    from core.catalog import CatalogItem

    items = [CatalogItem(i, c, {"baseColour": colour}, None) for i, c, colour in ROWS]
    (note,) = conflicting_ids(items)
    assert note.row == "id p2" and note.reason == "2 rows share this id but disagree on baseColour, caption"


def test_the_builder_reports_ids_shared_by_different_products(duplicate_ids):
    out, summary = duplicate_ids
    assert summary.indexed == 6 and [note.row for note in summary.notes] == ["id p2"]
    assert "1 product ids are shared by rows that disagree" in summary.describe()
    assert "id p2" in summary.describe()
    with open(out / NOTES_FILE, newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [
            ["row", "note"], ["id p2", "2 rows share this id but disagree on baseColour, caption"]
        ]


def test_the_catalog_page_browses_several_photos_of_one_product(duplicate_ids):
    at = open_app(page=CATALOG_PAGE)
    keys = [button.key for button in at.grid(key="browse").button]
    assert len(keys) == 6 and len(set(keys)) == 6
    at.grid(key="browse").button[1].click().run()  # the second photo of p1: "more like this" of p1
    assert_no_exception(at)


def test_the_product_picker_offers_each_product_once(duplicate_ids):
    at = open_app()
    at.segmented_control(key="image_source").set_value("Catalog product").run()
    assert_no_exception(at)
    examples = [button.key for button in at.button if button.key.startswith("example-")]
    assert examples == ["example-p1", "example-p2", "example-p3"]
