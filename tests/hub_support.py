"""The sample dataset's hub, for tests: its parquet files made from the shared photos, and stand-ins
for the only two hub calls core.sample makes (this machine reaches no hub). Everything else is real."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.sample import SAMPLE_DATASET

FILES = ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
BAD_ROW = 3  # its image bytes are not an image

HF_SCHEMA = pa.schema([
    ("id", pa.int64()), ("gender", pa.string()), ("masterCategory", pa.string()), ("subCategory", pa.string()),
    ("articleType", pa.string()), ("baseColour", pa.string()), ("season", pa.string()), ("year", pa.float64()),
    ("usage", pa.string()), ("productDisplayName", pa.string()),
    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
])


def write_hub_repo(fashion_dir: Path, repo: Path, rows_per_file: int) -> Path:
    """The dataset repo as the hub would serve it: two parquet files (row BAD_ROW of the first is
    not an image) in the schema of ashraq/fashion-product-images-small, and a README."""
    products = pd.read_csv(fashion_dir / "products.csv", dtype=str).head(len(FILES) * rows_per_file)
    for n, name in enumerate(FILES):
        part = products.iloc[n * rows_per_file : (n + 1) * rows_per_file]
        images = [{"bytes": (fashion_dir / "images" / f"{i}.jpg").read_bytes(), "path": f"{i}.jpg"} for i in part["id"]]
        if n == 0:
            images[BAD_ROW] = {"bytes": b"<html>rate limited</html>", "path": None}
        table = pa.table({
            "id": part["id"].astype(int).tolist(), "gender": part["gender"].tolist(),
            "masterCategory": part["masterCategory"].tolist(), "subCategory": part["subCategory"].tolist(),
            "articleType": part["productDisplayName"].str.split().str[-1].tolist(),
            "baseColour": part["baseColour"].tolist(), "season": part["season"].tolist(),
            "year": [2012.0] * len(part), "usage": part["usage"].tolist(),
            "productDisplayName": part["productDisplayName"].tolist(), "image": images,
        }, schema=HF_SCHEMA)
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, repo / name)
    (repo / "README.md").write_text("dataset card")
    return repo


def serve_hub(monkeypatch, repo: Path) -> type:
    """Stand-ins for the two hub calls, serving `repo`; the returned class records the downloads.
    Set its `down = True` for no network."""
    import huggingface_hub

    class Hub:
        down = False
        downloads: list[str] = []

    def list_repo_files(self, repo_id, repo_type=None, **_):
        assert (repo_id, repo_type) == (SAMPLE_DATASET, "dataset")
        if Hub.down:
            raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")
        return ["README.md", *reversed(FILES)]

    def hf_hub_download(repo_id, filename, repo_type=None, local_dir=None, **_):
        assert (repo_id, repo_type) == (SAMPLE_DATASET, "dataset")
        if Hub.down:
            raise ConnectionError("Failed to resolve 'huggingface.co'")
        Hub.downloads.append(filename)
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / filename, target)
        return str(target)

    Hub.downloads = []
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return Hub


