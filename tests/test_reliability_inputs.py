"""Hostile or legacy catalog files: CSV headers shown as text, Windows-1252 CSVs decoded as such."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from core.build_index import build_index
from core.catalog import CatalogError, from_folder

from .app_support import open_app, texts

LINK_HEADER = "[click me](https://example.com/x)"


def _photos(fashion_dir: Path, folder: Path, count: int) -> list[str]:
    folder.mkdir()
    names = []
    for source in sorted((fashion_dir / "images").glob("*.jpg"))[:count]:
        shutil.copy(source, folder / source.name)
        names.append(source.stem)
    return names


def test_a_windows_1252_csv_keeps_its_euro_signs_and_curly_quotes(fashion_dir, tmp_path):
    ids = _photos(fashion_dir, tmp_path / "photos", 2)
    caption = "“Summer” dress – 20 € ‘sale’"
    text = f"id,caption,note\n{ids[0]},{caption},Œuvre™\n{ids[1]},plain,x\n"
    (tmp_path / "products.csv").write_bytes(text.encode("cp1252"))
    catalog = from_folder(tmp_path / "photos", tmp_path / "products.csv")
    assert catalog.items[0].caption == caption and catalog.items[0].metadata == {"note": "Œuvre™"}
    assert not any(0x80 <= ord(ch) <= 0x9F for item in catalog.items for ch in item.caption)


def test_utf16_with_a_bom_is_read(fashion_dir, tmp_path):
    ids = _photos(fashion_dir, tmp_path / "photos", 1)
    (tmp_path / "products.csv").write_text(f"id,caption\n{ids[0]},Jacke für Herren\n", encoding="utf-16")
    assert from_folder(tmp_path / "photos", tmp_path / "products.csv").items[0].caption == "Jacke für Herren"


def test_bytes_that_are_neither_utf8_nor_cp1252_are_refused(fashion_dir, tmp_path):
    ids = _photos(fashion_dir, tmp_path / "photos", 1)
    (tmp_path / "products.csv").write_bytes(f"id,caption\n{ids[0]},bad ".encode() + b"\x81\xff\n")
    with pytest.raises(CatalogError, match=r"neither UTF-8 nor Windows-1252 \(byte 0x81 on line 2\).*UTF-8"):
        from_folder(tmp_path / "photos", tmp_path / "products.csv")


def test_a_csv_header_is_shown_as_text_not_as_a_link(fashion_dir, tmp_path, tiny_models, monkeypatch):
    ids = _photos(fashion_dir, tmp_path / "photos", 4)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "caption", LINK_HEADER])
    writer.writerows([identifier, f"product {n}", "AB"[n % 2]] for n, identifier in enumerate(ids))
    (tmp_path / "products.csv").write_text(buffer.getvalue(), encoding="utf-8")
    out = tmp_path / "index_data" / "links"
    build_index(from_folder(tmp_path / "photos", tmp_path / "products.csv"), out, progress=False)
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(out.parent))
    at = open_app(page="pages/2_Catalog.py")
    (label,) = [box.label for box in at.multiselect if "click me" in box.label]
    assert "](" not in label and label.startswith("\\[click me\\]")


@pytest.mark.parametrize(
    ("environment", "folder_form"),
    [
        ({}, True),  # auto, on this machine (AppTest connects as localhost)
        ({"SPACE_ID": "someone/vitrine"}, False),  # auto on a Hugging Face Space
        ({"VITRINE_ALLOW_BUILDS": "off"}, False),
        ({"VITRINE_ALLOW_BUILDS": "on", "SPACE_ID": "someone/vitrine"}, True),  # the owner's own private Space
    ],
)
def test_indexing_a_server_folder_is_the_owners_action(tiny_models, tmp_path, monkeypatch, environment, folder_form):
    monkeypatch.setenv("VITRINE_INDEX_DIR", str(tmp_path / "index_data"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("VITRINE_ALLOW_BUILDS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    at = open_app()
    keys = [box.key for box in at.text_input]
    assert ("fr_images" in keys) is folder_form
    assert len(at.form_submit_button) == (2 if folder_form else 1)  # the sample catalog is always offered
    if not folder_form:
        note = " ".join(texts(at, "info"))
        assert "for its owner" in note and "python -m core.build_index" in at.code[0].value


def test_only_a_visitor_on_this_machine_counts_as_local():
    from ui.first_run import local_visitor

    assert local_visitor(None) and local_visitor("127.0.0.1") and local_visitor("::1")
    assert not local_visitor("203.0.113.5") and not local_visitor("10.0.0.7") and not local_visitor("garbage")
