"""Catalog sources (folder [+ CSV], Hugging Face parquet) turned into one list of items.

Nothing here decodes an image: items only locate their bytes (a file path, a URI or bytes
kept in memory), and core/images.py opens them later. Folders, CSV and parquet files may
be URIs (s3://, gs://, file://, ...: see core/remote.py). Problems with single rows never stop a
build; they are collected as SkippedRow so the user can see what was left out and why.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Sequence

from core import remote
from core.images import DEFAULT_MAX_BYTES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
CAPTION_CANDIDATES = ("caption", "productDisplayName", "title", "name", "description")
ESCAPES = "path escapes the images folder"


class CatalogError(ValueError):
    """A problem with the whole catalog (missing folder, unreadable file, unknown column)."""


@dataclass(frozen=True)
class CatalogItem:
    id: str
    caption: str | None
    metadata: dict[str, str]
    image_path: Path | None
    image_bytes: bytes | None = None
    image_uri: str | None = None  # a photo in a bucket (s3://, gs://, ...) rather than on a local disk

    def read_bytes(self) -> bytes:
        """The raw (undecoded) image bytes, read lazily so a catalog stays cheap to build."""
        if self.image_path is not None:
            return self.image_path.read_bytes()
        if self.image_bytes is not None:
            return self.image_bytes
        if self.image_uri is not None:
            return remote.read_bytes(self.image_uri, DEFAULT_MAX_BYTES)
        raise ValueError(f"catalog item {self.id!r} has no image")

    @property
    def location(self) -> str:
        """Where the photo is, for reports and the items table: a path, a URI, or '' when embedded."""
        return str(self.image_path) if self.image_path is not None else self.image_uri or ""


@dataclass(frozen=True)
class SkippedRow:
    row: str
    reason: str


@dataclass
class Catalog:
    name: str
    source: str
    items: list[CatalogItem]
    skipped: list[SkippedRow]
    images_dir: Path | None = None  # lets fingerprints use paths relative to the folder
    stamps: dict[str, str] = field(default_factory=dict)  # image URI -> 'rel:size:mtime' from the listing

    def fingerprint(self) -> str:
        """Hash of what the vectors depend on (ids, captions, images), so an index built
        from another version of the catalog can be detected; moving the folder keeps it."""
        h = hashlib.sha256()
        for item in self.items:
            identity = _image_identity(item, self.images_dir, self.stamps)
            h.update(f"{item.id}\x1f{item.caption or ''}\x1f{identity}\x1e".encode())
        return h.hexdigest()


def conflicting_ids(items: Sequence[CatalogItem]) -> list[SkippedRow]:
    """Ids whose rows disagree on caption or metadata, one note per id. Several photos of one product
    share an id by design (search shows the product once); two different products under one id are
    a catalog mistake the builder reports, since search and "more like this" treat them as one."""
    first: dict[str, CatalogItem] = {}
    rows: dict[str, int] = {}
    differ: dict[str, set[str]] = {}
    for item in items:
        seen = first.setdefault(item.id, item)
        rows[item.id] = rows.get(item.id, 0) + 1
        fields = {"caption"} if seen.caption != item.caption else set()
        fields |= {key for key in seen.metadata.keys() | item.metadata.keys() if seen.metadata.get(key) != item.metadata.get(key)}
        if fields:
            differ.setdefault(item.id, set()).update(fields)
    return [
        SkippedRow(f"id {item_id}", f"{rows[item_id]} rows share this id but disagree on {', '.join(sorted(fields))}")
        for item_id, fields in differ.items()
    ]


def _image_identity(item: CatalogItem, root: Path | None, stamps: dict[str, str]) -> str:
    if item.image_uri is not None:
        return stamps.get(item.image_uri, item.image_uri)
    if item.image_path is not None:
        path = item.image_path
        rel = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.name
        try:
            st = path.stat()
            return f"{rel}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return f"{rel}:missing"
    return hashlib.sha256(item.image_bytes or b"").hexdigest()


def _text(value: Any) -> str | None:
    """Cell value -> trimmed string; None for null/NaN/empty; 2012.0 -> '2012'."""
    if value is None or isinstance(value, (bytes, bytearray, dict, list)):
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


# ---------------------------------------------------------------- folder catalogs

def _scan(root: Path) -> tuple[dict[str, Path], set[str]]:
    """All image files under root (hidden entries pruned, symlinked folders not followed):
    relative posix path -> path, plus the relative paths of symlinks leading outside."""
    files: dict[str, Path] = {}
    escaping: set[str] = set()
    resolved_root = root.resolve()
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(resolved_root):
                        escaping.add(rel)
                    elif entry.is_file():
                        files[rel] = Path(entry.path)
    return dict(sorted(files.items())), escaping


def _stem_index(rels: Sequence[str]) -> dict[str, str]:
    """id -> relative path, built once so 100k rows need no glob: the relative path
    without extension ("shoes/123") wins over a bare stem ("123"); among equal stems
    .jpg first, then IMAGE_EXTENSIONS order, then path order."""
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    bare: dict[str, str] = {}
    full: dict[str, str] = {}
    for rel in sorted(rels, key=lambda r: (rank[os.path.splitext(r)[1].lower()], r)):
        bare.setdefault(PurePosixPath(rel).stem, rel)
        full.setdefault(os.path.splitext(rel)[0], rel)
    return {**bare, **full}


def _read_csv(path: Path | str) -> tuple[list[str], Iterator[tuple[int, list[str] | str]]]:
    """Header and (line number, fields or error message) per record; encoding as _decode_csv
    finds it, delimiter guessed from the header among ',', ';' and tab."""
    try:
        data = remote.read_bytes(path) if remote.is_uri(path) else path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read captions file {path}: {exc}") from exc
    text = _decode_csv(data, path)
    first = text.split("\n", 1)[0]
    sep = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise CatalogError(f"captions file {path} has no readable header line") from exc

    def records() -> Iterator[tuple[int, list[str] | str]]:
        line = reader.line_num
        while True:
            start = line + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, f"malformed CSV line ({exc})"
            else:
                if len(fields) > len(header):
                    yield start, f"malformed CSV line: {len(fields)} fields, the header has {len(header)}"
                elif any(f.strip() for f in fields):
                    yield start, fields + [""] * (len(header) - len(fields))
            line = reader.line_num

    return header, records()


def _decode_csv(data: bytes, path: Path | str) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252, the usual legacy export
    (Excel on Windows): read as latin-1 its euro signs and curly quotes would be control characters.
    Bytes that are none of these are refused rather than guessed at."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise CatalogError(f"captions file {path} starts as UTF-16 but is not valid UTF-16 ({exc.reason}).") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise CatalogError(
                f"captions file {path} is neither UTF-8 nor Windows-1252 (byte 0x{data[exc.start]:02x} on line {line}): "
                "save it as UTF-8 (in Excel: CSV UTF-8) and try again."
            ) from exc


def _column(header: Sequence[str], name: str, what: str, source: Path | str) -> int:
    if name not in header:
        raise CatalogError(f"{what} column {name!r} not found in {_name(source)}; available columns: {', '.join(header)}")
    return header.index(name)


def from_folder(images_dir: Path | str, captions_csv: Path | str | None = None, *, id_column: str = "id",
                caption_column: str | None = None, filename_column: str | None = None,
                name: str | None = None) -> Catalog:
    """A folder of images (a path or a URI), optionally described by a CSV (one item per CSV row)."""
    if remote.is_uri(images_dir):
        try:
            listing = remote.list_files(images_dir, IMAGE_EXTENSIONS)
        except OSError as exc:
            raise CatalogError(f"images folder not readable: {images_dir} ({exc})") from exc
        files: dict[str, Path | str] = {rel: uri for rel, (uri, _) in listing.items()}
        escaping: set[str] = set()
        local_dir, stamps = None, dict(listing.values())
    else:
        local_dir = images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise CatalogError(f"images folder not found: {images_dir}")
        (files, escaping), stamps = _scan(images_dir), {}
    name = name or _name(images_dir if local_dir is None else images_dir.resolve())
    if captions_csv is None:
        items = [_item(os.path.splitext(rel)[0], None, {}, where) for rel, where in files.items()]
        skipped = [SkippedRow(rel, ESCAPES) for rel in sorted(escaping)]
        return Catalog(name, str(images_dir), items, skipped, local_dir, stamps)

    captions_csv = _location(captions_csv)
    header, records = _read_csv(captions_csv)
    id_i = _column(header, id_column, "id", captions_csv)
    if caption_column is None:
        caption_column = next((c for c in CAPTION_CANDIDATES if c in header), None)
    cap_i = _column(header, caption_column, "caption", captions_csv) if caption_column else None
    file_i = _column(header, filename_column, "filename", captions_csv) if filename_column else None
    meta = [(i, h) for i, h in enumerate(header) if i not in (id_i, cap_i, file_i) and h]
    stems = _stem_index(list(files) + sorted(escaping))
    items: list[CatalogItem] = []
    skipped: list[SkippedRow] = []
    for line, fields in records:
        where = f"{_name(captions_csv)} line {line}"
        if isinstance(fields, str):
            skipped.append(SkippedRow(where, fields))
            continue
        item_id = fields[id_i].strip()
        if not item_id:
            skipped.append(SkippedRow(where, "empty id"))
            continue
        if file_i is None:
            rel = stems.get(item_id)
            if rel is None:
                skipped.append(SkippedRow(where, f"no image named {item_id!r} in the images folder"))
                continue
        else:
            rel = fields[file_i].strip().replace("\\", "/")
            if not rel:
                skipped.append(SkippedRow(where, "empty filename"))
                continue
        found, problem = _locate(rel, files, escaping, local_dir)
        if found is None:
            skipped.append(SkippedRow(where, problem))
            continue
        caption = (fields[cap_i].strip() or None) if cap_i is not None else None
        metadata = {h: fields[i].strip() for i, h in meta if fields[i].strip()}
        items.append(_item(item_id, caption, metadata, found))
    return Catalog(name, f"{images_dir} + {captions_csv}", items, skipped, local_dir, stamps)


def _item(item_id: str, caption: str | None, metadata: dict[str, str], where: Path | str) -> CatalogItem:
    """An item whose photo is a local file (a Path) or a file behind a URI (a str)."""
    if isinstance(where, Path):
        return CatalogItem(item_id, caption, metadata, where)
    return CatalogItem(item_id, caption, metadata, None, image_uri=where)


def _location(location: Path | str) -> Path | str:
    """URIs stay strings (Path would fold 's3://b' into 's3:/b'); anything else is a local path."""
    return location if remote.is_uri(location) else Path(location)


def _name(location: Path | str) -> str:
    return remote.basename(location) if remote.is_uri(location) else Path(location).name


def _locate(rel: str, files: dict[str, Path | str], escaping: set[str],
            images_dir: Path | None) -> tuple[Path | str | None, str]:
    """A CSV-given relative path -> a file safely inside the images folder, or why not.
    `images_dir` is None for a folder behind a URI: its listing is all there is."""
    if rel in files:  # fast path: found by the scan, already known to be inside
        return files[rel], ""
    pure = PurePosixPath(rel)
    if rel in escaping or pure.is_absolute() or ".." in pure.parts or (len(rel) > 1 and rel[1] == ":"):
        return None, ESCAPES
    if pure.suffix.lower() not in IMAGE_EXTENSIONS:
        return None, f"not an image file ({pure.suffix or 'no extension'}): {rel}"
    if images_dir is None:
        return None, f"image file not found: {rel}"
    path = images_dir / pure
    if not path.resolve().is_relative_to(images_dir.resolve()):  # through a symlinked folder
        return None, ESCAPES
    if not path.is_file():
        return None, f"image file not found: {rel}"
    return path, ""


# ---------------------------------------------------------------- parquet catalogs

def from_parquet(paths: Sequence[Path | str], *, id_column: str = "id", caption_column: str | None = None,
                 image_column: str = "image", name: str | None = None) -> Catalog:
    """Parquet files with image bytes inside (Hugging Face Image feature or plain binary).
    caption_column=None picks the first of CAPTION_CANDIDATES present (productDisplayName).
    A URI may name a folder: its .parquet files are read in name order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [found for p in paths for found in _parquet_files(_location(p))]
    if not paths:
        raise CatalogError("no parquet files given")
    items: list[CatalogItem] = []
    skipped: list[SkippedRow] = []
    for path in paths:
        try:
            pf = pq.ParquetFile(remote.open_file(path) if remote.is_uri(path) else path)
        except (OSError, pa.ArrowException) as exc:
            raise CatalogError(f"cannot read parquet file {path}: {exc}") from exc
        header = pf.schema_arrow.names
        _column(header, id_column, "id", path)
        _column(header, image_column, "image", path)
        cap = caption_column or next((c for c in CAPTION_CANDIDATES if c in header), None)
        if cap:
            _column(header, cap, "caption", path)
        image_type = pf.schema_arrow.field(image_column).type
        if pa.types.is_struct(image_type):
            if image_type.get_field_index("bytes") < 0:
                raise CatalogError(f"image column {image_column!r} in {_name(path)} is a struct without 'bytes'")
        elif not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
            raise CatalogError(f"image column {image_column!r} in {_name(path)} is {image_type}, not binary")
        meta = [c for c in header if c not in (id_column, cap, image_column)
                and not pa.types.is_binary(pf.schema_arrow.field(c).type)]
        row = 0
        for batch in pf.iter_batches(batch_size=512):
            cols = {c: batch.column(c).to_pylist() for c in batch.schema.names}
            for k in range(batch.num_rows):
                where = f"{_name(path)} row {row}"
                row += 1
                image = cols[image_column][k]
                data = image.get("bytes") if isinstance(image, dict) else image
                item_id = _text(cols[id_column][k])
                if not item_id:
                    skipped.append(SkippedRow(where, "empty id"))
                elif not data:
                    skipped.append(SkippedRow(where, "no image bytes"))
                else:
                    metadata = {c: v for c in meta if (v := _text(cols[c][k])) is not None}
                    caption = _text(cols[cap][k]) if cap else None
                    items.append(CatalogItem(item_id, caption, metadata, None, bytes(data)))
    first = paths[0]
    name = name or (remote.basename(remote.parent(first)) if remote.is_uri(first) else first.resolve().parent.name)
    return Catalog(name, ", ".join(str(p) for p in paths), items, skipped)


def _parquet_files(location: Path | str) -> list[Path | str]:
    """A parquet file, or for a folder URI (shells expand no globs in buckets) the files in it."""
    if not remote.is_uri(location):
        return [location]
    try:
        listing = remote.list_files(location, (".parquet",))
    except OSError:  # not a folder: a file, or nothing, which opening it will say
        return [location]
    return [uri for uri, _ in listing.values()]


def load_catalog(images: Path | str | None = None, captions: Path | str | None = None,
                 parquet: Sequence[Path | str] = (), **columns: str | None) -> Catalog:
    """One entry point for CLIs: a folder (+ CSV) or parquet files; None options are ignored."""
    options = {k: v for k, v in columns.items() if v is not None}
    if parquet:
        if images is not None or captions is not None:
            raise CatalogError("give either an images folder (+ captions CSV) or parquet files, not both")
        allowed = {"id_column", "caption_column", "image_column", "name"}
    elif images is not None:
        allowed = {"id_column", "caption_column", "filename_column", "name"}
    else:
        raise CatalogError("no catalog given: pass an images folder (optionally with a captions CSV) or parquet files")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise CatalogError(f"option(s) {', '.join(unknown)} do not apply to this kind of catalog")
    if parquet:
        return from_parquet(list(parquet), **options)
    return from_folder(_location(images), _location(captions) if captions else None, **options)
