"""Resumable and atomic builds: a build killed at any moment, run again, ends exactly as a clean one.

The kill is a real SIGKILL to a real build process and its reader workers (the whole process
group, as a power cut would), sent from inside the build's own progress callback so that it
lands at the same point on every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.build_index import build_index
from core.catalog import from_folder
from core.index import read_manifest
from core.search import SearchEngine
from tests.test_cli import ROOT

ROWS = 160
ARGS = {"limit": ROWS, "batch_size": 8, "shard_size": 32}  # 5 shards of 4 batches

KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from core.build_index import build_index
    from core.catalog import from_folder

    images, captions, out, stage, at = sys.argv[1:]

    def power_cut(name, done, total):
        if name == stage and done >= int(at):
            os.killpg(0, signal.SIGKILL)

    catalog = from_folder(Path(images), Path(captions), name="fashion")
    build_index(catalog, Path(out), limit={limit}, batch_size={batch_size}, shard_size={shard_size},
                workers=1, progress=False, on_progress=power_cut, full=True)
    """
).format(**ARGS)


def fashion(fashion_dir: Path):
    return from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="fashion")


def index_files(folder: Path) -> dict:
    manifest = read_manifest(folder)
    return {
        "items": pd.read_parquet(folder / "items.parquet"),
        "vectors": {e.stem: np.load(folder / f"{e.stem}.npy", allow_pickle=False) for e in manifest.entries},
        "entries": manifest.entries,
        "thumbnails": sorted(p.name for p in (folder / "thumbnails").iterdir()),
    }


@pytest.fixture(scope="module")
def clean_build(tiny_models, fashion_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("clean") / "fashion"
    build_index(fashion(fashion_dir), out, workers=2, progress=False, **ARGS)
    return index_files(out)


def work_folders(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.build-*"))


@pytest.mark.parametrize(
    ("stage", "at", "finished_shards"),
    [("images", 80, 2), ("index", 1, 5)],  # mid-shard 3 with two shards on disk; while writing the index
    ids=["killed-while-encoding", "killed-while-assembling"],
)
def test_a_killed_build_resumes_and_ends_like_a_clean_one(
    tiny_models, fashion_dir, tmp_path, clean_build, stage, at, finished_shards
):
    out = tmp_path / "index_data" / "fashion"
    build_index(fashion(fashion_dir), out, limit=24, progress=False)  # the index the app serves meanwhile
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BUILD, str(fashion_dir / "images"), str(fashion_dir / "products.csv"),
         str(out), stage, str(at)],
        cwd=ROOT, env={**os.environ, "VITRINE_MODELS_DIR": str(tiny_models), "PYTHONPATH": str(ROOT)},
        start_new_session=True, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert SearchEngine(out).count == 24, "the old index must stay in place until the new one is complete"
    [work] = work_folders(out)
    assert len(list((work / "shards").glob("[0-9]*"))) == finished_shards

    summary = build_index(fashion(fashion_dir), out, workers=0, progress=False, full=True, **ARGS)

    assert summary.resumed_shards == finished_shards and summary.shards == 5
    assert "Continued an interrupted build: " in summary.describe()
    resumed = index_files(out)
    pd.testing.assert_frame_equal(resumed["items"], clean_build["items"])
    assert resumed["entries"] == clean_build["entries"] and resumed["thumbnails"] == clean_build["thumbnails"]
    for stem, vectors in clean_build["vectors"].items():
        assert np.array_equal(resumed["vectors"][stem], vectors), stem
    assert SearchEngine(out).count == ROWS
    assert work_folders(out) == [] and sorted(p.name for p in out.parent.iterdir()) == ["fashion"]


def test_ctrl_c_keeps_the_work_and_other_arguments_start_afresh(tiny_models, fashion_dir, tmp_path):
    """An interrupted build leaves its shards for the same command; a build with other arguments
    does not reuse them (they hold other vectors), and once it completes it clears them away."""
    out = tmp_path / "fashion"

    def ctrl_c(stage, done, total):
        if done >= 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(fashion(fashion_dir), out, progress=False, on_progress=ctrl_c, **ARGS)
    assert not out.exists() and len(work_folders(out)) == 1

    summary = build_index(fashion(fashion_dir), out, progress=False, **{**ARGS, "batch_size": 16})
    assert summary.resumed_shards == 0 and summary.indexed == ROWS
    assert work_folders(out) == []
