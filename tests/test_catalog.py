"""Tests for core.catalog: folder, folder + CSV and parquet sources, skipped rows, safety."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.catalog import (
    IMAGE_EXTENSIONS,
    Catalog,
    CatalogError,
    CatalogItem,
    from_folder,
    from_parquet,
    load_catalog,
)

from .conftest import missing
from .io_watch import files_opened

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-products"
PINNED_FOLDER = "3086257e107f12094675c455fdb0180b556b9e7b09a89f115b905609afde083f"
PINNED_EMBEDDED = "042412cd085e9c4e9832d83428f3410d49fb2d6ad7eb4641789f1f6c728432a9"


def jpeg(color: tuple[int, int, int] = (200, 30, 30), fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format=fmt)
    return buf.getvalue()


def put(path: Path, data: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg() if data is None else data)
    return path


def metadata_columns(catalog: Catalog) -> list[str]:
    """The metadata columns the items carry, in the order the source lists them."""
    return list(dict.fromkeys(key for item in catalog.items for key in item.metadata))


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """images/ with 1.jpg, 2.png, 3.jpg; returns the images folder."""
    images = tmp_path / "images"
    put(images / "1.jpg", jpeg((255, 0, 0)))
    put(images / "2.png", jpeg((0, 255, 0), "PNG"))
    put(images / "3.jpg", jpeg((0, 0, 255)))
    return images


# ---------------------------------------------------------------- folder without CSV

def test_folder_without_csv_recursive_sorted_ids(tmp_path: Path) -> None:
    images = tmp_path / "shop"
    put(images / "shoes" / "123.JPG")
    put(images / "shoes" / "sub" / "9.webp")
    put(images / "b.png")
    put(images / "a.jpeg")
    put(images / ".hidden.jpg")
    put(images / ".cache" / "x.jpg")
    put(images / "notes.txt", b"hello")
    put(images / "data.csv", b"id\n1\n")
    cat = from_folder(images)
    assert [i.id for i in cat.items] == ["a", "b", "shoes/123", "shoes/sub/9"]
    assert all(i.caption is None and i.metadata == {} for i in cat.items)
    assert cat.items[2].image_path == images / "shoes" / "123.JPG"
    assert cat.items[0].read_bytes() == (images / "a.jpeg").read_bytes()
    assert cat.name == "shop"
    assert cat.skipped == []
    assert metadata_columns(cat) == []


def test_missing_folder_is_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        from_folder(tmp_path / "nope")


def test_symlink_escaping_folder_without_csv(tmp_path: Path, shop: Path) -> None:
    outside = put(tmp_path / "secret" / "s.jpg")
    (shop / "evil.jpg").symlink_to(outside)
    (shop / "ok.jpg").symlink_to(shop / "1.jpg")
    cat = from_folder(shop)
    assert [i.id for i in cat.items] == ["1", "2", "3", "ok"]
    assert [(s.row, s.reason) for s in cat.skipped] == [("evil.jpg", "path escapes the images folder")]


# ---------------------------------------------------------------- folder + CSV

def test_csv_id_to_stem_lookup_and_metadata(tmp_path: Path, shop: Path) -> None:
    csv_path = write_csv(tmp_path / "products.csv",
                         "id,gender,productDisplayName,year\n3,Men,Blue shirt,2012\n1,,Red dress,\n2,Women,,2011\n")
    cat = from_folder(shop, csv_path)
    assert [i.id for i in cat.items] == ["3", "1", "2"]  # CSV order, not folder order
    assert [i.caption for i in cat.items] == ["Blue shirt", "Red dress", None]
    assert cat.items[0].metadata == {"gender": "Men", "year": "2012"}
    assert cat.items[1].metadata == {}  # empty cells dropped
    assert cat.items[2].image_path == shop / "2.png"
    assert metadata_columns(cat) == ["gender", "year"]
    assert cat.skipped == []


def test_stem_prefers_jpg_then_extension_order(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for name in ("7.png", "7.jpeg", "7.jpg", "7.webp", "8.bmp", "8.webp", "8.png"):
        put(images / name)
    csv_path = write_csv(tmp_path / "c.csv", "id\n7\n8\n")
    cat = from_folder(images, csv_path)
    assert [i.image_path.name for i in cat.items] == ["7.jpg", "8.png"]


def test_nested_id_matches_relative_stem(tmp_path: Path) -> None:
    images = tmp_path / "images"
    put(images / "shoes" / "5.jpg")
    put(images / "bags" / "6.png")
    put(images / "6.webp")  # exact relative stem "6" beats the bare stem of bags/6.png
    cat = from_folder(images, write_csv(tmp_path / "c.csv", "id\nshoes/5\n6\nbags/6\n5\n"))
    assert [i.image_path for i in cat.items] == [
        images / "shoes" / "5.jpg", images / "6.webp", images / "bags" / "6.png", images / "shoes" / "5.jpg"]


def test_filename_column(tmp_path: Path, shop: Path) -> None:
    put(shop / "sub" / "x.jpg")
    csv_path = write_csv(tmp_path / "c.csv", "sku,file,title\nA,sub/x.jpg,Hat\nB,1.jpg,Cap\nC,sub\\x.jpg,Win\n")
    cat = from_folder(shop, csv_path, id_column="sku", filename_column="file")
    assert [(i.id, i.image_path, i.caption) for i in cat.items] == [
        ("A", shop / "sub" / "x.jpg", "Hat"), ("B", shop / "1.jpg", "Cap"), ("C", shop / "sub" / "x.jpg", "Win")]
    assert all("file" not in i.metadata and "sku" not in i.metadata for i in cat.items)


@pytest.mark.parametrize("header,expected", [
    ("id,caption,title", "caption"),
    ("id,title,name", "title"),
    ("id,description", "description"),
    ("id,other", None),
])
def test_auto_caption_column(tmp_path: Path, shop: Path, header: str, expected: str | None) -> None:
    columns = header.split(",")
    row = ",".join(["1"] + [f"v-{c}" for c in columns[1:]])
    cat = from_folder(shop, write_csv(tmp_path / "c.csv", f"{header}\n{row}\n"))
    assert cat.items[0].caption == (f"v-{expected}" if expected else None)


def test_semicolon_csv_with_bom(tmp_path: Path, shop: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "id;caption;colour\n1;Robe rouge, été;rouge\n2;\"Vert; clair\";vert\n",
                         encoding="utf-8-sig")
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    cat = from_folder(shop, csv_path)
    assert [(i.id, i.caption, i.metadata) for i in cat.items] == [
        ("1", "Robe rouge, été", {"colour": "rouge"}), ("2", "Vert; clair", {"colour": "vert"})]


def test_tab_separated(tmp_path: Path, shop: Path) -> None:
    cat = from_folder(shop, write_csv(tmp_path / "c.tsv", "id\tcaption\n1\tA, B\n"))
    assert [(i.id, i.caption) for i in cat.items] == [("1", "A, B")]


def test_missing_id_column_lists_available_columns(tmp_path: Path, shop: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "sku,caption,colour\n1,a,b\n")
    with pytest.raises(CatalogError) as err:
        from_folder(shop, csv_path)
    assert "'id'" in str(err.value)
    assert all(c in str(err.value) for c in ("sku", "caption", "colour"))


def test_explicit_missing_caption_column_is_error(tmp_path: Path, shop: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "id,caption\n1,a\n")
    with pytest.raises(CatalogError, match="'text'.*available columns: id, caption"):
        from_folder(shop, csv_path, caption_column="text")
    with pytest.raises(CatalogError, match="filename"):
        from_folder(shop, csv_path, filename_column="file")


def test_unreadable_or_empty_csv(tmp_path: Path, shop: Path) -> None:
    with pytest.raises(CatalogError):
        from_folder(shop, tmp_path / "missing.csv")
    with pytest.raises(CatalogError):
        from_folder(shop, write_csv(tmp_path / "empty.csv", ""))


def test_bad_rows_are_skipped_with_reasons(tmp_path: Path, shop: Path) -> None:
    secret = put(tmp_path / "secret.jpg")
    (shop / "link.jpg").symlink_to(secret)
    outside_dir = tmp_path / "outside"
    put(outside_dir / "o.jpg")
    (shop / "linkdir").symlink_to(outside_dir, target_is_directory=True)
    put(shop / "readme.txt", b"text")
    rows = [
        "id,file,caption",
        "1,1.jpg,kept one",            # line 2
        ",2.png,no id",                # line 3
        "4,4.jpg,missing file",        # line 4
        "5,../../etc/passwd,escape",   # line 5
        f"6,{secret},absolute",        # line 6
        "7,link.jpg,symlink out",      # line 7
        "8,linkdir/o.jpg,via dir",     # line 8
        "9,readme.txt,not image",      # line 9
        "10,sub/../1.jpg,dotdot",      # line 10
        "11,,no filename",             # line 11
        "3,3.jpg,kept two",            # line 12
    ]
    cat = from_folder(shop, write_csv(tmp_path / "c.csv", "\n".join(rows) + "\n"), filename_column="file")
    assert [i.caption for i in cat.items] == ["kept one", "kept two"]
    reasons = {s.row: s.reason for s in cat.skipped}
    escapes = "path escapes the images folder"
    assert reasons == {
        "c.csv line 3": "empty id",
        "c.csv line 4": "image file not found: 4.jpg",
        "c.csv line 5": escapes,
        "c.csv line 6": escapes,
        "c.csv line 7": escapes,
        "c.csv line 8": escapes,
        "c.csv line 9": reasons["c.csv line 9"],
        "c.csv line 10": escapes,
        "c.csv line 11": "empty filename",
    }
    assert "not an image" in reasons["c.csv line 9"]


def test_id_without_image_and_escaping_symlink_by_stem(tmp_path: Path, shop: Path) -> None:
    (shop / "66.jpg").symlink_to(put(tmp_path / "secret.jpg"))
    cat = from_folder(shop, write_csv(tmp_path / "c.csv", "id\n1\n99\n66\n../../etc/passwd\n"))
    assert [i.id for i in cat.items] == ["1"]
    reasons = [s.reason for s in cat.skipped]
    assert "99" in reasons[0] and "no image" in reasons[0]
    assert reasons[1] == "path escapes the images folder"
    assert "no image" in reasons[2]


def test_malformed_csv_line_is_reported_not_fatal(tmp_path: Path, shop: Path) -> None:
    text = ('id,caption,colour\n'
            '1,ok,red\n'
            '2,too,many,fields,here\n'
            '3,"bad"quote,blue\n'
            '\n'
            '"1","multi\nline caption",green\n'
            '3,short\n')
    cat = from_folder(shop, write_csv(tmp_path / "c.csv", text))
    assert [(i.id, i.caption) for i in cat.items] == [("1", "ok"), ("1", "multi\nline caption"), ("3", "short")]
    assert [s.row for s in cat.skipped] == ["c.csv line 3", "c.csv line 4"]
    assert all("malformed" in s.reason for s in cat.skipped)


def test_several_rows_share_one_id(tmp_path: Path, shop: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "id,file,caption\nP1,1.jpg,front\nP1,2.png,back\nP1,3.jpg,side\n")
    cat = from_folder(shop, csv_path, filename_column="file")
    assert [i.id for i in cat.items] == ["P1"] * 3
    assert len({i.image_path for i in cat.items}) == 3


def test_fingerprint_stable_and_sensitive(tmp_path: Path, shop: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "id,caption\n1,red\n2,green\n")
    first = from_folder(shop, csv_path).fingerprint()
    assert len(first) == 64 and first == from_folder(shop, csv_path).fingerprint()
    write_csv(csv_path, "id,caption\n1,red\n2,GREEN\n")
    changed_caption = from_folder(shop, csv_path).fingerprint()
    assert changed_caption != first
    write_csv(csv_path, "id,caption\n2,GREEN\n1,red\n")
    assert from_folder(shop, csv_path).fingerprint() != changed_caption  # order matters
    write_csv(csv_path, "id,caption\n1,red\n2,GREEN\n")
    put(shop / "2.png", jpeg((1, 2, 3), "PNG") + b"\0")  # new image content, new size
    assert from_folder(shop, csv_path).fingerprint() != changed_caption


def test_fingerprint_is_pinned(tmp_path: Path) -> None:
    """Known values: a changed recipe would silently mark every existing index as out of date."""
    images = tmp_path / "images"
    for name, size in (("a/1.jpg", 10), ("2.png", 20)):
        os.utime(put(images / name, b"x" * size), ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    csv_path = write_csv(tmp_path / "c.csv", "id,caption\n2,green\na/1,red\n")
    assert from_folder(images, csv_path).fingerprint() == PINNED_FOLDER
    embedded = Catalog("x", "x", [CatalogItem("7", "blue", {}, None, image_bytes=b"pixels")], [])
    assert embedded.fingerprint() == PINNED_EMBEDDED


def test_read_bytes_without_image_raises() -> None:
    with pytest.raises(ValueError):
        CatalogItem("x", None, {}, None).read_bytes()


# ---------------------------------------------------------------- parquet

def _hf_table(images: list[bytes | None], ids: list[int] | None = None) -> pa.Table:
    n = len(images)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.table({
        "id": pa.array(ids or list(range(15970, 15970 + n)), pa.int64()),
        "gender": ["Men"] * n,
        "baseColour": (["Navy Blue", None] + ["Red"] * n)[:n],
        "year": pa.array([2012] * n, pa.int64()),
        "rating": pa.array([4.5] * n, pa.float64()),
        "productDisplayName": [f"Product {i}" for i in range(n)],
        "image": pa.array([None if b is None else {"bytes": b, "path": f"{i}.jpg"} for i, b in enumerate(images)],
                          image_type),
    })


def test_parquet_struct_image_column(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-small" / "data"
    folder.mkdir(parents=True)
    imgs = [jpeg((i * 40, 0, 0)) for i in range(5)]
    table = _hf_table([imgs[0], imgs[1], None, b"", imgs[4]])
    pq.write_table(table, folder / "part-0.parquet", row_group_size=2)
    pq.write_table(_hf_table([imgs[2]], ids=[1]), folder / "part-1.parquet")
    cat = from_parquet([folder / "part-0.parquet", folder / "part-1.parquet"])
    assert [i.id for i in cat.items] == ["15970", "15971", "15974", "1"]
    assert cat.items[0].caption == "Product 0"
    assert cat.items[0].metadata == {"gender": "Men", "baseColour": "Navy Blue", "year": "2012", "rating": "4.5"}
    assert "baseColour" not in cat.items[1].metadata
    assert cat.items[0].read_bytes() == imgs[0] and cat.items[0].image_path is None
    assert [s.row for s in cat.skipped] == ["part-0.parquet row 2", "part-0.parquet row 3"]
    assert all("no image" in s.reason for s in cat.skipped)
    assert cat.name == "data" and all(i.caption for i in cat.items)
    fp = cat.fingerprint()
    assert fp == from_parquet([folder / "part-0.parquet", folder / "part-1.parquet"]).fingerprint()
    assert fp != from_parquet([folder / "part-0.parquet"]).fingerprint()


def test_parquet_plain_binary_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"sku": ["a", "b", None], "pic": pa.array([jpeg(), None, jpeg()], pa.binary()),
                             "title": ["T1", "T2", "T3"]}), path)
    cat = from_parquet([path], id_column="sku", image_column="pic")
    assert [(i.id, i.caption) for i in cat.items] == [("a", "T1")]
    assert [s.reason for s in cat.skipped] == ["no image bytes", "empty id"]
    floats = tmp_path / "floats.parquet"  # pandas writes int columns with nulls as float
    pq.write_table(pa.table({"id": pa.array([15970.0, float("nan")]), "year": pa.array([2012.0, None]),
                             "image": pa.array([jpeg(), jpeg()], pa.binary())}), floats)
    cat = from_parquet([floats])
    assert [(i.id, i.caption, i.metadata) for i in cat.items] == [("15970", None, {"year": "2012"})]
    assert [s.reason for s in cat.skipped] == ["empty id"]
    with pytest.raises(CatalogError, match="available columns: sku, pic, title"):
        from_parquet([path])  # no 'id' column
    with pytest.raises(CatalogError, match="caption"):
        from_parquet([path], id_column="sku", image_column="pic", caption_column="nope")
    with pytest.raises(CatalogError, match="not binary"):
        from_parquet([path], id_column="sku", image_column="title")
    with pytest.raises(CatalogError):
        from_parquet([tmp_path / "missing.parquet"])


# ---------------------------------------------------------------- load_catalog

def test_load_catalog_dispatch(tmp_path: Path, shop: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog"):
        load_catalog()
    assert len(load_catalog(images=shop).items) == 3
    csv_path = write_csv(tmp_path / "c.csv", "sku,caption\n1,x\n")
    cat = load_catalog(images=shop, captions=csv_path, id_column="sku", filename_column=None, name="demo")
    assert isinstance(cat, Catalog) and cat.name == "demo" and cat.items[0].caption == "x"
    path = tmp_path / "p.parquet"
    pq.write_table(_hf_table([jpeg(), jpeg()]), path)
    assert len(load_catalog(parquet=[path], caption_column=None).items) == 2
    with pytest.raises(CatalogError):
        load_catalog(parquet=[path], filename_column="file")
    with pytest.raises(CatalogError):
        load_catalog(images=shop, parquet=[path])


def test_image_extensions_constant() -> None:
    assert IMAGE_EXTENSIONS == (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


# ---------------------------------------------------------------- real data

def test_real_fashion_catalog() -> None:
    if not (REAL_DATA / "products.csv").is_file():
        missing(f"real catalog not present at {REAL_DATA} (shared test data is absent in a fresh clone)")
    with files_opened() as opened:
        cat = from_folder(REAL_DATA / "images", REAL_DATA / "products.csv")
        fingerprint = cat.fingerprint()
    assert len(cat.items) == 9583
    assert cat.skipped == []
    assert all(i.caption for i in cat.items)
    by_id = {i.id: i for i in cat.items}
    assert by_id["15970"].caption == "Turtle Check Men Navy Blue Shirt"
    assert by_id["15970"].image_path == REAL_DATA / "images" / "15970.jpg"
    assert by_id["15970"].metadata["baseColour"] == "Navy Blue"
    assert metadata_columns(cat) == ["gender", "masterCategory", "subCategory", "baseColour", "season", "usage"]
    assert by_id["15970"].read_bytes()[:2] == b"\xff\xd8"  # JPEG magic, bytes not decoded
    # a catalog lists and stats its 9,583 photos: the only file it opens is the captions CSV
    assert [path for path in opened if path.startswith(str(REAL_DATA))] == [str(REAL_DATA / "products.csv")]
    assert len(fingerprint) == 64
