"""Catalog files behind URIs: s3://, gs://, hdfs://, file:// and any fsspec protocol.

URIs resolve the way Ray Data resolves its read paths (pyarrow's filesystems first, then
fsspec), so a catalog in a bucket is listed and read with the credentials and settings
`ray.data.read_*` would use there, by either build engine. Filesystems are cached per
folder: opening an S3 or GCS filesystem costs a round trip, reading a photo should not.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.fs as pafs


class RemoteError(OSError):
    """A URI that names no readable filesystem, folder or file; the message says which."""


def is_uri(location: object) -> bool:
    """True for 'scheme://...' strings; local paths (Path objects, 'C:\\x', '/x') are not URIs."""
    return isinstance(location, str) and "://" in location


def basename(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[2]


def parent(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[0]


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `uri` and the path of `uri` inside it."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except pa.ArrowInvalid:  # a protocol pyarrow does not know: fsspec may (memory://, az://, hf://, ...)
        pass
    except (OSError, pa.ArrowException) as err:
        raise RemoteError(f"cannot open {uri}: {err}") from err
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as err:
        raise RemoteError(f"cannot open {uri}: no filesystem for this URI ({err})") from err
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


@functools.lru_cache(maxsize=256)
def _folder(uri: str) -> tuple[pafs.FileSystem, str]:
    return resolve(uri)


def _file(uri: str) -> tuple[pafs.FileSystem, str]:
    fs, folder = _folder(parent(uri))
    return fs, f"{folder.rstrip('/')}/{basename(uri)}"


def read_bytes(uri: str, max_bytes: int | None = None) -> bytes:
    """A file's bytes; with max_bytes, never more than max_bytes + 1 of them (the caller tells 'too large')."""
    fs, path = _file(uri)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read() if max_bytes is None else stream.read(max_bytes + 1)
    except FileNotFoundError as err:
        raise RemoteError(f"The file '{uri}' was not found.") from err


def open_file(uri: str) -> pa.NativeFile:
    """A seekable handle (parquet readers jump to the footer first)."""
    fs, path = _file(uri)
    return fs.open_input_file(path)


def list_files(uri: str, extensions: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Files under a folder URI with one of `extensions`, recursively, hidden entries left out:
    relative path -> (URI, stamp). The stamp ('rel:size:mtime_ns') changes when the file does."""
    fs, root = resolve(uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise RemoteError(f"folder not found: {uri}")
    suffixes = tuple(ext.lower() for ext in extensions)
    found = {}
    prefix = root.rstrip("/") + "/"
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = info.path[len(prefix):] if info.path.startswith(prefix) else info.base_name
        if info.type != pafs.FileType.File or not rel.lower().endswith(suffixes):
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        found[rel] = (f"{uri.rstrip('/')}/{rel}", f"{rel}:{info.size}:{info.mtime_ns}")
    return dict(sorted(found.items()))
