"""Atomic writes: a reader sees the old file or folder, or the new one, never half of either.

Files go to a temporary sibling and are renamed into place; a finished folder is swapped
onto its target with the old one kept until the new one is there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
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


def recover_folder(target: Path) -> None:
    """Undo a swap cut short between its two renames (a kill, where the system cannot exchange two
    folders in one step): the old folder, set aside by replace_folder, returns."""
    target = Path(target)
    if target.exists():
        return
    aside = [old for old in target.parent.glob(f".{target.name}.old-*") if old.is_dir() and any(old.iterdir())]
    if aside:
        os.replace(max(aside, key=lambda old: old.stat().st_mtime), target)


def replace_folder(staging: Path, target: Path) -> None:
    """Move a finished staging folder onto `target`; the old one goes only once the new one is there.

    On Linux the two folders are exchanged in one step (renameat2 RENAME_EXCHANGE): a reader
    never finds `target` missing. Elsewhere the old folder is first renamed to a name of its own,
    so two calls at once never trip over each other's leftovers."""
    staging, target = Path(staging), Path(target)
    if target.exists() and _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # it holds the old folder now
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    try:
        try:
            os.replace(target, old)  # a folder may replace an empty one
        except FileNotFoundError:
            pass  # no previous folder
        os.replace(staging, target)
    except OSError:
        if old.exists() and any(old.iterdir()) and not target.exists():
            os.replace(old, target)  # put the previous folder back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically where the system can (Linux 3.15+, most local filesystems)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return done == 0
