"""Updating an index in place: only what changed is encoded, and the result equals a full build.

Every kind of change is tried alone and mixed, each time against a fresh full build of the
new catalog: same items table, vectors within 1e-5, same search results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import build_index as cli
from core import settings
from core.build_index import build_index, update_from_recipe
from core.catalog import Catalog, from_folder
from core.index import IndexReader, read_manifest
from core.models import DEFAULT_MODELS
from core.search import QueryError, SearchEngine
from tests.app_support import assert_no_exception, open_app
from tests.test_cli import ROOT

BASE_ROWS = 60
QUERIES = ("red dress", "black leather shoes", "blue denim jacket")


@pytest.fixture(scope="module")
def catalog(fashion_dir) -> Catalog:
    full = from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="shop")
    return replace(full, items=full.items[: BASE_ROWS + 20])


def base(catalog: Catalog) -> Catalog:
    return replace(catalog, items=catalog.items[:BASE_ROWS])


@pytest.fixture(scope="module")
def base_index(tiny_models, catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "shop"
    build_index(base(catalog), out, workers=0, progress=False)
    return out


def updated(base_index: Path, tmp_path: Path, catalog: Catalog):
    out = tmp_path / "shop"
    shutil.copytree(base_index, out)
    return out, build_index(catalog, out, workers=0, progress=False)


def assert_same_as_full_build(out: Path, catalog: Catalog, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    build_index(catalog, fresh, workers=0, progress=False, full=True)
    ours, theirs = IndexReader(out), IndexReader(fresh)
    pd.testing.assert_frame_equal(ours.items.drop(columns="thumbnail"), theirs.items.drop(columns="thumbnail"))
    assert sorted(p.name for p in (out / "thumbnails").iterdir()) == sorted(p.name for p in (fresh / "thumbnails").iterdir())
    assert [(e.encoder, e.modality, e.count) for e in ours.manifest.entries] == [
        (e.encoder, e.modality, e.count) for e in theirs.manifest.entries
    ]
    np.testing.assert_allclose(ours.image_vectors, theirs.image_vectors, atol=1e-5)
    for key in theirs.manifest.caption_models:
        np.testing.assert_allclose(ours.caption_index(key).vectors, theirs.caption_index(key).vectors, atol=1e-5)
    a, b = SearchEngine(ours), SearchEngine(theirs)
    for text in QUERIES:
        assert [h.id for h in a.search(text=text, k=10).hits] == [h.id for h in b.search(text=text, k=10).hits]


def with_changed_caption(item, suffix=" in bright summer colours"):
    return replace(item, caption=(item.caption or "") + suffix)


def test_nothing_changed_encodes_nothing(base_index, catalog, tmp_path):
    out, summary = updated(base_index, tmp_path, base(catalog))
    assert summary.changes == {"added": 0, "changed": 0, "removed": 0, "unchanged": BASE_ROWS}
    assert summary.stage_items["encode"] == 0 and summary.stage_items["reuse"] == BASE_ROWS
    assert read_manifest(out).build_id != read_manifest(base_index).build_id
    assert_same_as_full_build(out, base(catalog), tmp_path)


def test_added_products_alone_are_encoded(base_index, catalog, tmp_path):
    out, summary = updated(base_index, tmp_path, catalog)
    assert summary.changes == {"added": 20, "changed": 0, "removed": 0, "unchanged": BASE_ROWS}
    assert summary.stage_items["encode"] == 20
    assert "20 added" in summary.describe()
    assert_same_as_full_build(out, catalog, tmp_path)


def test_removed_products_never_come_back(base_index, catalog, tmp_path):
    removed = [item.id for item in catalog.items[10:15]]
    kept = replace(catalog, items=catalog.items[:10] + catalog.items[15:BASE_ROWS])
    out, summary = updated(base_index, tmp_path, kept)
    assert summary.changes == {"added": 0, "changed": 0, "removed": 5, "unchanged": BASE_ROWS - 5}
    assert summary.stage_items["encode"] == 0
    engine = SearchEngine(out)
    for text in QUERIES:
        assert not set(removed) & {h.id for h in engine.search(text=text, k=BASE_ROWS).hits}
    with pytest.raises(QueryError, match="No product"):
        engine.search(product=removed[0], k=5)
    assert not set(removed) & set(engine.reader.metadata_table()["id"])
    assert_same_as_full_build(out, kept, tmp_path)


def test_a_changed_caption_is_encoded_again_but_its_photo_is_not(base_index, catalog, tmp_path):
    items = list(base(catalog).items)
    items[3] = with_changed_caption(items[3])
    changed = replace(catalog, items=items)
    out, summary = updated(base_index, tmp_path, changed)
    assert summary.changes["changed"] == 1 and summary.stage_items["encode"] == 0
    assert_same_as_full_build(out, changed, tmp_path)


def test_changed_metadata_is_taken_over_without_encoding(base_index, catalog, tmp_path):
    items = list(base(catalog).items)
    items[7] = replace(items[7], metadata={**items[7].metadata, "baseColour": "Purple"})
    changed = replace(catalog, items=items)
    out, summary = updated(base_index, tmp_path, changed)
    assert summary.changes["changed"] == 1 and summary.stage_items["encode"] == 0
    assert IndexReader(out).hit(7).metadata["baseColour"] == "Purple"
    assert_same_as_full_build(out, changed, tmp_path)


def test_a_photo_whose_bytes_changed_is_encoded_again(base_index, catalog, tmp_path):
    items = list(base(catalog).items)
    other = tmp_path / "new-photo.jpg"
    shutil.copyfile(catalog.items[BASE_ROWS + 5].image_path, other)  # other bytes under the old product
    items[4] = replace(items[4], image_path=other)
    changed = replace(catalog, items=items)
    out, summary = updated(base_index, tmp_path, changed)
    assert summary.changes["changed"] == 1 and summary.stage_items["encode"] == 1
    assert_same_as_full_build(out, changed, tmp_path)


def test_photos_that_moved_but_kept_their_bytes_are_reused(base_index, catalog, tmp_path):
    moved_dir = tmp_path / "moved"
    moved_dir.mkdir()
    items = []
    for item in base(catalog).items:
        target = moved_dir / f"renamed-{item.id}.jpg"
        shutil.copyfile(item.image_path, target)
        items.append(replace(item, image_path=target))
    moved = replace(catalog, items=items)
    out, summary = updated(base_index, tmp_path, moved)
    assert summary.stage_items["encode"] == 0 and summary.changes["unchanged"] == BASE_ROWS
    assert str(moved_dir) in IndexReader(out).hit(0).image_path
    assert_same_as_full_build(out, moved, tmp_path)


def test_every_kind_of_change_at_once(base_index, catalog, tmp_path):
    items = list(catalog.items[2:])  # 2 removed, 20 added
    items[0] = with_changed_caption(items[0])
    items[1] = replace(items[1], metadata={**items[1].metadata, "season": "Winter"})
    other = tmp_path / "other.jpg"
    shutil.copyfile(catalog.items[-1].image_path, other)
    items[2] = replace(items[2], image_path=other)
    mixed = replace(catalog, items=items)
    out, summary = updated(base_index, tmp_path, mixed)
    assert summary.changes == {"added": 20, "changed": 3, "removed": 2, "unchanged": BASE_ROWS - 5}
    assert summary.stage_items["encode"] == 21
    assert_same_as_full_build(out, mixed, tmp_path)


def test_full_rebuilds_everything(base_index, catalog, tmp_path):
    out = tmp_path / "shop"
    shutil.copytree(base_index, out)
    summary = build_index(base(catalog), out, workers=0, progress=False, full=True)
    assert summary.changes is None and summary.stage_items["encode"] == BASE_ROWS


def test_other_weights_are_encoded_afresh_with_a_note(base_index, catalog, tmp_path):
    out = tmp_path / "shop"
    shutil.copytree(base_index, out)
    manifest = read_manifest(out)
    for facts in manifest.models.values():
        facts["probe"] = facts["probe"][::-1]  # same size, other weights
    (out / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    summary = build_index(base(catalog), out, workers=0, progress=False)
    assert summary.stage_items["encode"] == BASE_ROWS
    assert "every photo is encoded afresh" in summary.describe()
    assert_same_as_full_build(out, base(catalog), tmp_path)


def test_the_cli_updates_by_default_and_full_forces_a_rebuild(base_index, fashion_dir, tmp_path, capsys):
    out = tmp_path / "shop"
    shutil.copytree(base_index, out)
    args = ["--images", str(fashion_dir / "images"), "--captions", str(fashion_dir / "products.csv"),
            "--out", str(out), "--limit", str(BASE_ROWS + 3), "--workers", "0"]
    assert cli.main(args) == 0
    assert "products 3 added, 0 changed, 0 removed, 60 unchanged" in capsys.readouterr().out
    assert cli.main([*args, "--full"]) == 0
    assert "Updated the existing index" not in capsys.readouterr().out


KILLED_UPDATE = textwrap.dedent(
    """
    import os, signal, sys
    from dataclasses import replace
    from pathlib import Path
    from core.build_index import build_index
    from core.catalog import from_folder

    images, captions, out = sys.argv[1:]

    def power_cut(name, done, total):
        if name == "images" and done >= 70:
            os.killpg(0, signal.SIGKILL)

    catalog = from_folder(Path(images), Path(captions), name="shop")
    build_index(replace(catalog, items=catalog.items[:100]), Path(out), batch_size=8, shard_size=16,
                workers=1, progress=False, on_progress=power_cut)
    """
)


def test_an_update_killed_half_way_resumes_and_keeps_serving_the_old_index(base_index, fashion_dir, tmp_path):
    out = tmp_path / "shop"
    shutil.copytree(base_index, out)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_UPDATE, str(fashion_dir / "images"), str(fashion_dir / "products.csv"), str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert SearchEngine(out).count == BASE_ROWS, "the old index serves until the update is complete"
    catalog = from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="shop")
    grown = replace(catalog, items=catalog.items[:100])
    summary = build_index(grown, out, batch_size=8, shard_size=16, workers=0, progress=False)
    assert summary.resumed_shards > 0 and summary.changes["added"] == 40
    assert_same_as_full_build(out, grown, tmp_path)
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_automatic_tags_are_not_counted_as_changes(tiny_models, catalog, tmp_path):
    photos_only = replace(catalog, items=[replace(item, metadata={}) for item in base(catalog).items[:30]])
    out = tmp_path / "photos"
    build_index(photos_only, out, workers=0, progress=False)
    assert any(facet.automatic for facet in read_manifest(out).facets.values())
    summary = build_index(photos_only, out, workers=0, progress=False)
    assert summary.changes == {"added": 0, "changed": 0, "removed": 0, "unchanged": 30}
    assert_same_as_full_build(out, photos_only, tmp_path)


def small_shop(fashion_dir: Path, folder: Path, rows: int) -> None:
    """A shop's own folder: the first `rows` shared photos and their CSV rows (copies, in tmp)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = (fashion_dir / "products.csv").read_text(encoding="utf-8").splitlines()
    (folder / "products.csv").write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    for line in lines[1 : rows + 1]:
        product = line.split(",")[0]
        shutil.copyfile(fashion_dir / "images" / f"{product}.jpg", folder / "images" / f"{product}.jpg")


def test_the_recorded_recipe_updates_the_catalog_from_its_source(tiny_models, fashion_dir, tmp_path, capsys):
    shop, out = tmp_path / "shop", tmp_path / "index_data" / "shop"
    small_shop(fashion_dir, shop, 20)
    args = ["--images", str(shop / "images"), "--captions", str(shop / "products.csv"), "--out", str(out), "--workers", "0"]
    assert cli.main(args) == 0
    recipe = read_manifest(out).catalog["recipe"]
    assert recipe["images"] == str(shop / "images") and recipe["models"] == list(DEFAULT_MODELS)
    small_shop(fashion_dir, shop, 23)  # the shop added three products
    summary = update_from_recipe(out)
    assert summary.changes == {"added": 3, "changed": 0, "removed": 0, "unchanged": 20}
    assert summary.stage_items["encode"] == 3 and IndexReader(out).count == 23


def test_the_catalog_page_updates_the_catalog_where_builds_are_allowed(tiny_models, fashion_dir, tmp_path, monkeypatch):
    shop, out = tmp_path / "shop", tmp_path / "index_data" / "shop"
    small_shop(fashion_dir, shop, 12)
    assert cli.main(["--images", str(shop / "images"), "--captions", str(shop / "products.csv"),
                     "--out", str(out), "--workers", "0"]) == 0
    monkeypatch.setenv(settings.INDEX_DIR_ENV, str(out.parent))
    small_shop(fashion_dir, shop, 14)
    at = open_app(page="pages/2_Catalog.py")
    at.button(key="update_catalog").click().run()
    assert_no_exception(at)
    assert IndexReader(out).count == 14
    assert any("2 products added" in caption.value for caption in at.caption)
    monkeypatch.setenv(settings.ALLOW_BUILDS_ENV, "off")  # a public deployment: no such button
    assert not [button for button in open_app(page="pages/2_Catalog.py").button if button.key == "update_catalog"]
