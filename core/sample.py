"""The sample catalog: the first N products of a public fashion dataset on the Hugging Face hub.

It gives a first-run user (and a booth) something to search without a catalog of their
own. Only as many parquet files as the first N rows need are downloaded, once: later
calls, even without network, read them from the cache folder.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core import settings
from core.catalog import Catalog, CatalogError, from_parquet

SAMPLE_DATASET = "ashraq/fashion-product-images-small"
SAMPLE_NAME = "fashion-sample"
_FILE_LIST = "files.json"


class SampleDownloadError(CatalogError):
    """The sample could not be fetched from the hub; the message says what to do instead."""


def default_cache_dir() -> Path:
    """Under $VITRINE_CACHE_DIR (for hosts whose home is read-only, like some Spaces), see core/settings.py."""
    return settings.current().cache_dir / SAMPLE_DATASET.replace("/", "--")


def sample_catalog(n: int, cache_dir: Path | None = None) -> Catalog:
    """A catalog of the dataset's first `n` products (caption = productDisplayName)."""
    if n < 1:
        raise CatalogError(f"the sample needs at least 1 product, not {n}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    paths, rows = [], 0
    for name in _parquet_files(cache):
        if rows >= n:
            break
        path = _download(name, cache)
        paths.append(path)
        rows += _row_count(path, cache)
    if rows > n:
        paths = [_first_rows(paths, n, cache / f"first-{n}.parquet")]
    catalog = from_parquet(paths, name=SAMPLE_NAME)
    return replace(catalog, source=f"{SAMPLE_DATASET} (first {min(n, rows)} products)")


def _parquet_files(cache: Path) -> list[str]:
    """The dataset's parquet files in row order; the listing is cached next to the files."""
    listing = cache / _FILE_LIST
    try:
        return json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not cached yet, or cut short: ask the hub
        pass
    from huggingface_hub import HfApi

    try:
        names = sorted(n for n in HfApi().list_repo_files(SAMPLE_DATASET, repo_type="dataset") if n.endswith(".parquet"))
    except Exception as err:  # offline, DNS, proxy, hub errors: all mean the same to the user
        raise _download_error(err) from err
    if not names:
        raise SampleDownloadError(f"The dataset {SAMPLE_DATASET} on the Hugging Face hub lists no parquet files.")
    cache.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps(names), encoding="utf-8")
    return names


def _download(name: str, cache: Path) -> Path:
    local = cache / name
    if local.is_file():
        return local
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(SAMPLE_DATASET, name, repo_type="dataset", local_dir=cache))
    except Exception as err:
        raise _download_error(err) from err


def _row_count(path: Path, cache: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as err:
        raise CatalogError(f"The cached sample file {path} is damaged ({err}). Delete {cache} and try again.") from err


def _download_error(err: Exception) -> SampleDownloadError:
    reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return SampleDownloadError(
        f"Could not download the sample catalog ({SAMPLE_DATASET}) from the Hugging Face hub: {reason}. "
        "Check the network connection, or index a folder of your own with --images."
    )


def _first_rows(paths: list[Path], n: int, target: Path) -> Path:
    """A parquet file holding the first n rows of `paths`, written once (streamed, not loaded whole)."""
    if target.is_file():
        return target
    tmp = target.with_suffix(".tmp")
    left = n
    with pq.ParquetWriter(tmp, pq.ParquetFile(paths[0]).schema_arrow) as writer:
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                if left == 0:
                    break
                writer.write_batch(batch.slice(0, left))
                left -= min(left, batch.num_rows)
    tmp.replace(target)
    return target
