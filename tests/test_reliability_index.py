"""Damaged index folders: every damage ends in one clear line naming the file and the remedy.

Each case copies the session's real index, damages one file the way a disk, a sync tool or a
careless hand does, then opens and searches it as the CLI and the app do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from core.index import ITEMS_FILE, MANIFEST_FILE, IndexMismatchError, IndexReader
from core.search import SearchEngine, main as search_main

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "image__clip-ViT-B-32"
CAPTION = "caption__clip-ViT-B-32-multilingual-v1"


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _noise(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _edit_items(folder: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    table = pd.read_parquet(folder / ITEMS_FILE)
    change(table).to_parquet(folder / ITEMS_FILE, index=False)


def _edit_manifest(folder: Path, change: Callable[[dict], object]) -> None:
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _set_ef_search(data: dict) -> dict:
    data["hnsw"]["ef_search"] = -5
    return data


def _miscount(data: dict) -> dict:
    data["entries"][0]["count"] += 1
    return data


# damage name -> (how, the file the message must name)
DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "image hnsw truncated": (lambda f: _truncate(f / f"{IMAGE}.hnsw"), f"{IMAGE}.hnsw"),
    "image hnsw emptied": (lambda f: (f / f"{IMAGE}.hnsw").write_bytes(b""), f"{IMAGE}.hnsw"),
    "image hnsw noise": (lambda f: _noise(f / f"{IMAGE}.hnsw"), f"{IMAGE}.hnsw"),
    "image hnsw tail cut": (lambda f: _truncate(f / f"{IMAGE}.hnsw", 0.99), f"{IMAGE}.hnsw"),
    "image npy truncated": (lambda f: _truncate(f / f"{IMAGE}.npy"), f"{IMAGE}.npy"),
    "image npy noise": (lambda f: _noise(f / f"{IMAGE}.npy"), f"{IMAGE}.npy"),
    "caption npy truncated": (lambda f: _truncate(f / f"{CAPTION}.npy"), f"{CAPTION}.npy"),
    "caption hnsw truncated": (lambda f: _truncate(f / f"{CAPTION}.hnsw"), f"{CAPTION}.hnsw"),
    "caption hnsw missing": (lambda f: (f / f"{CAPTION}.hnsw").unlink(), f"{CAPTION}.hnsw"),
    "items emptied": (lambda f: (f / ITEMS_FILE).write_bytes(b""), ITEMS_FILE),
    "items truncated": (lambda f: _truncate(f / ITEMS_FILE), ITEMS_FILE),
    "items missing": (lambda f: (f / ITEMS_FILE).unlink(), ITEMS_FILE),
    "no sha1 column": (lambda f: _edit_items(f, lambda t: t.drop(columns="sha1")), ITEMS_FILE),
    "no thumbnail column": (lambda f: _edit_items(f, lambda t: t.drop(columns="thumbnail")), ITEMS_FILE),
    "metadata numbers": (lambda f: _edit_items(f, lambda t: t.assign(metadata=1.5)), ITEMS_FILE),
    "metadata not JSON": (lambda f: _edit_items(f, lambda t: t.assign(metadata="{not json")), ITEMS_FILE),
    "metadata a JSON list": (lambda f: _edit_items(f, lambda t: t.assign(metadata="[1, 2]")), ITEMS_FILE),
    "manifest not JSON": (lambda f: (f / MANIFEST_FILE).write_text("{ not json"), MANIFEST_FILE),
    "manifest a JSON list": (lambda f: _edit_manifest(f, lambda d: [d]), MANIFEST_FILE),
    "manifest entries a string": (lambda f: _edit_manifest(f, lambda d: {**d, "entries": "x"}), MANIFEST_FILE),
    "manifest without hnsw": (lambda f: _edit_manifest(f, lambda d: {k: v for k, v in d.items() if k != "hnsw"}),
                              MANIFEST_FILE),
    "ef_search -5": (lambda f: _edit_manifest(f, _set_ef_search), MANIFEST_FILE),
    "manifest count off by one": (lambda f: _edit_manifest(f, _miscount), MANIFEST_FILE),
    "manifest not UTF-8": (lambda f: (f / MANIFEST_FILE).write_bytes(b"\xff\xfe{"), MANIFEST_FILE),
}


@pytest.fixture
def damaged_copy(fashion_index, tmp_path) -> Callable[[str], Path]:
    def make(damage: str) -> Path:
        folder = tmp_path / "fashion"
        shutil.copytree(fashion_index, folder)
        DAMAGES[damage][0](folder)
        return folder

    return make


def _open_and_search(folder: Path) -> None:
    """What the CLI and the app do: open the folder, then a words query (caption index included)."""
    engine = SearchEngine(IndexReader(folder))
    engine.search(text="red dress", model="clip-ViT-B-32-multilingual-v1", k=300)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_index_is_refused_with_the_file_and_the_remedy(damaged_copy, damage, capsys):
    folder = damaged_copy(damage)
    with pytest.raises(IndexMismatchError) as caught:
        _open_and_search(folder)
    message = str(caught.value)
    assert DAMAGES[damage][1] in message and "Rebuild" in message and "\n" not in message, message
    # the CLI says the same on one line and exits 2
    assert search_main(["--index", str(folder), "--text", "red dress", "-k", "300",
                        "--model", "clip-ViT-B-32-multilingual-v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and DAMAGES[damage][1] in err and "\n" not in err


def test_damage_is_found_at_load_not_at_the_first_query(damaged_copy):
    """The caption index loads at the first words query; its damage is found when the folder opens."""
    with pytest.raises(IndexMismatchError, match=f"{CAPTION}.npy"):
        IndexReader(damaged_copy("caption npy truncated"))


def test_a_deleted_thumbnails_folder_gives_hits_without_thumbnails(fashion_index, tmp_path):
    folder = tmp_path / "fashion"
    shutil.copytree(fashion_index, folder)
    engine = SearchEngine(folder)
    before = engine.search(text="red dress", k=5).hits
    assert all(hit.thumbnail and Path(hit.thumbnail).is_file() for hit in before)
    shutil.rmtree(folder / "thumbnails")
    after = engine.search(text="red dress", k=5).hits
    assert [hit.id for hit in after] == [hit.id for hit in before]
    assert all(hit.thumbnail is None for hit in after)


def test_the_cli_exits_2_without_a_traceback(damaged_copy, tiny_models):
    folder = damaged_copy("image hnsw noise")
    run = subprocess.run(
        [sys.executable, "-m", "core.search", "--index", str(folder), "--text", "red dress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert f"{IMAGE}.hnsw is damaged" in run.stderr
