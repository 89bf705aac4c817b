"""Atomic writes: a reader sees the old file or folder, or the new one, never half of either.

Files go to a temporary sibling and are renamed into place; a finished folder is swapped
onto its target with the old one kept until the new one is there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_folder(target: Path) -> None:
    """Undo a swap cut short between its two renames (a kill): the old folder, set aside, returns."""
    target, old = Path(target), _aside(Path(target))
    if not target.exists() and old.is_dir():
        os.replace(old, target)


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished staging folder onto `target`; the old one goes only once the new one is there."""
    target = Path(target)
    old = _aside(target)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
