"""What every `python -m core.*` command shares: catalog flags, the device flag, the ending.

Defined once so the commands cannot drift apart. Catalog locations stay plain strings: a
`type=Path` would fold `s3://bucket/shop` into `s3:/bucket/shop`, and core/catalog.py tells
URIs from local paths itself. A known user error ends as one line `error: ...` on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from core.catalog import Catalog, CatalogError, load_catalog
from core.devices import DEVICES, DeviceError

USER_ERROR = 2
INTERRUPTED = 130  # the shell's code for Ctrl-C
# Errors any command may meet: a catalog it cannot read, a device this machine lacks.
COMMON_ERRORS: tuple[type[Exception], ...] = (CatalogError, DeviceError)
CATALOG_GROUP = "catalog (--images [--captions] or --parquet; paths or URIs such as s3://bucket/shop)"


def add_catalog_flags(parser: argparse.ArgumentParser, title: str = CATALOG_GROUP) -> argparse._ArgumentGroup:
    """--images, --captions, --parquet and the column options; returns the group for command-specific extras."""
    group = parser.add_argument_group(title)
    group.add_argument("--images", help="folder of product images")
    group.add_argument("--captions", help="CSV with one row per image (id, caption, metadata)")
    group.add_argument("--parquet", nargs="+", default=[], help="parquet files or folder URIs (HF fashion schema)")
    group.add_argument("--id-column", default="id")
    group.add_argument("--caption-column", help="default: caption, productDisplayName, title, name or description")
    group.add_argument("--filename-column", help="image file per row; default: the image named after the id")
    return group


def catalog_of(args: argparse.Namespace, name: str | None = None) -> Catalog:
    """The catalog the flags of add_catalog_flags name, called `name` (default: after its folder)."""
    columns = {option: getattr(args, option) for option in ("id_column", "caption_column", "filename_column")}
    return load_catalog(images=args.images, captions=args.captions, parquet=args.parquet, name=name, **columns)


def add_device_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str | None = None) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES, help=help or "auto: cuda, then mps, then cpu")


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def count(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def run(
    command: Callable[[], int], *user_errors: type[Exception], on_interrupt: str | None = None
) -> int:
    """Run a command's body; COMMON_ERRORS and `user_errors` end as one line on stderr and exit 2.

    With `on_interrupt`, Ctrl-C prints it (what to do next) and exits 130 instead of a traceback.
    """
    try:
        return command()
    except (*COMMON_ERRORS, *user_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        if on_interrupt is None:
            raise
        print(f"\ninterrupted: {on_interrupt}", file=sys.stderr)
        return INTERRUPTED
