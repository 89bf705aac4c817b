"""A full disk: refused before a build it cannot hold; mid-build, a clear message, shards kept to resume."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from core.build_index import build_index, main as build_main
from core.catalog import Catalog
from core.pipeline import BuildError
from core.pipeline.writer import ShardWriter


@pytest.fixture
def small_disk(tmp_path):
    """A real 6 MB filesystem (tmpfs; mounting needs root, as in CI here)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}); "
                    "test_a_full_disk_mid_build_keeps_the_shards covers the same path by injection")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def _work_folders(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.build-*"))


def test_a_build_the_disk_cannot_hold_is_refused_before_it_starts(tiny_models, fashion_dir, small_disk, capsys):
    out = small_disk / "fashion"
    code = build_main(["--images", str(fashion_dir / "images"), "--captions", str(fashion_dir / "products.csv"),
                       "--limit", "600", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: Not enough free space for this build in ") and "\n" not in err
    assert "MB are free" in err and not out.exists() and not _work_folders(out)


def test_a_disk_that_fills_mid_build_keeps_the_shards_and_resumes(tiny_models, fashion_catalog, small_disk):
    catalog = Catalog("fashion", "test", fashion_catalog.items[:96], [])
    out, filler = small_disk / "fashion", small_disk / "filler"

    def fill_the_disk(stage: str, done: int, total: int) -> None:
        if stage == "images" and done >= 32 and not filler.exists():  # another program takes the space
            with open(filler, "wb") as handle:
                free = int(subprocess.check_output(["df", "--output=avail", "-B1", str(small_disk)]).split()[-1])
                handle.write(b"\0" * max(0, free - 16 * 1024))

    with pytest.raises(BuildError) as caught:
        build_index(catalog, out, batch_size=8, shard_size=16, progress=False, on_progress=fill_the_disk)
    message = str(caught.value)
    (work,) = _work_folders(out)
    assert message.startswith("The disk is full (No space left on device") and "\n" not in message
    assert f"The finished shards are kept in {work} (" in message and "run the same command again" in message
    assert any((work / "shards").iterdir()) and not (work / "index").exists() and not out.exists()

    filler.unlink()
    summary = build_index(catalog, out, batch_size=8, shard_size=16, progress=False)
    assert summary.resumed_shards >= 1 and summary.indexed == 96 and not _work_folders(out)


def test_a_full_disk_mid_build_keeps_the_shards(tiny_models, fashion_catalog, tmp_path, monkeypatch):
    """Where no small filesystem can be mounted: the same path, with ENOSPC raised at the shard write."""
    catalog = Catalog("fashion", "test", fashion_catalog.items[:48], [])
    write = ShardWriter.write

    def write_until_full(self, number, rows, vectors):
        if number >= 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.folder / f"{number:06d}"))
        write(self, number, rows, vectors)

    monkeypatch.setattr(ShardWriter, "write", write_until_full)
    out = tmp_path / "fashion"
    with pytest.raises(BuildError, match=r"^The disk is full \(No space left on device writing .*000001\)"):
        build_index(catalog, out, batch_size=8, shard_size=16, progress=False)
    (work,) = _work_folders(out)
    assert [path.name for path in (work / "shards").iterdir()] == ["000000"]


def test_an_assembled_index_that_fails_its_check_is_not_swapped_in(tiny_models, fashion_catalog, tmp_path,
                                                                   monkeypatch):
    """hnswlib writes its graph without checking the stream: a short write must not replace the index."""
    from core.index import VectorIndex

    catalog = Catalog("fashion", "test", fashion_catalog.items[:24], [])
    out = tmp_path / "fashion"
    build_index(catalog, out, batch_size=8, progress=False)
    before = (out / "manifest.json").read_text()
    save = VectorIndex.save

    def short_save(self, folder, stem):
        save(self, folder, stem)
        graph = folder / f"{stem}.hnsw"
        graph.write_bytes(graph.read_bytes()[:100])

    monkeypatch.setattr(VectorIndex, "save", short_save)
    with pytest.raises(BuildError, match=r"did not check out, so it was not swapped in .*\.hnsw is damaged"):
        build_index(catalog, out, batch_size=4, progress=False)
    assert (out / "manifest.json").read_text() == before
