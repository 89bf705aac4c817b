"""The work folder of one build: its shards and its unfinished index, until the build completes.

    <parent of out>/.<out name>.lock            one build of <out> at a time: who holds it (pid, start, arguments)
    <parent of out>/.<out name>.build-<key>/
        build.json   what the key was made from (readable, for a curious user)
        shards/      finished shards (see writer.py)
        index/       the index folder being assembled, swapped onto <out> when complete

The key hashes everything the shards depend on (catalog fingerprint, rows, models and
their weights, device, precision, batch and shard size): the same command finds its own
folder again after a kill and continues; a different one starts afresh beside it. The lock
is per output folder, whatever the arguments: two builds of one index never run together,
and the second is told which build holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shlex
import shutil
import sys
import threading
import typing
from collections.abc import Iterator
from pathlib import Path

from core.index import IndexMismatchError
from core.pipeline import BuildError

try:
    import fcntl
except ImportError:  # Windows: builds are kept apart within one process only
    fcntl = None

# POSIX locks do not conflict within a process, and closing any descriptor of a locked file drops
# the lock: threads (app sessions) check here, and read the holder from here, never from the file.
_held: dict[Path, dict] = {}
_held_guard = threading.Lock()
# What a refusal quotes of the holder's arguments (the rest are hashes).
_SHOWN_FACTS = ("rows", "image_model", "captions", "device", "precision", "batch_size", "shard_size")
# Disk use per photo beyond its vectors: a WebP thumbnail (about 6 KB on the shared photos, in 4 KB
# blocks) in its shard and again beside the index, its row records and items-table row.
THUMBNAIL_BYTES = 8 * 1024
ROW_BYTES = 512
SPACE_MARGIN = 1.25
# Rows the facet graphs (core/facets.py) hold per row of the catalog: 1.44 on the shared one, whose
# five common values (Women, Accessories, Footwear, Topwear, Black) get a graph each.
FACET_GRAPH_ROWS = 1.5
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
MB = 1 << 20


def needed_bytes(pending_rows: int, rows: int, dims: list[int], m: int) -> int:
    """Free space a build needs: the pending shards (vectors, thumbnails), then the index assembled
    beside them (per vector file a .npy and an hnswlib graph of about dim + 2m + 4 words per row,
    and the facet graphs' share of rows again), with a margin. The previous index stays in place
    until the swap, so it is not counted as free."""
    shards = pending_rows * (4 * sum(dims) + THUMBNAIL_BYTES + ROW_BYTES)
    graph_copies = 1 + FACET_GRAPH_ROWS
    index = rows * (sum(4 * dim + graph_copies * 4 * (dim + 2 * m + 4) for dim in dims) + THUMBNAIL_BYTES + ROW_BYTES)
    return int(SPACE_MARGIN * (shards + index))


class WorkFolder:
    """Paths and lifetime of one build's work folder."""

    def __init__(self, out: Path, facts: dict) -> None:
        self.out = Path(out)
        self.facts = facts
        key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
        self.root = self.out.parent / f"{self._prefix(self.out)}{key}"

    @staticmethod
    def _prefix(out: Path) -> str:
        return f".{out.name}.build-"

    @property
    def lock_file(self) -> Path:
        """One per output folder, beside it (hidden, like the work folders)."""
        return self.out.parent / f".{self.out.name}.lock"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def staging(self) -> Path:
        return self.root / "index"

    @contextlib.contextmanager
    def locked(self) -> Iterator[WorkFolder]:
        """Hold the output folder for this build; any other build of it meanwhile is refused."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        holder = {
            "pid": os.getpid(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(sys.orig_argv),
            "arguments": {name: self.facts[name] for name in _SHOWN_FACTS if name in self.facts},
            "work_folder": str(self.root),
        }
        with _hold(self.lock_file, holder) as other:
            if other is not None:
                raise BuildError(f"Another build of {self.out} is running ({describe_holder(other)}). "
                                 "Wait for it to finish, or stop it first.")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                (self.root / "build.json").write_text(json.dumps(self.facts, indent=2, sort_keys=True), encoding="utf-8")
                yield self
            except OSError as err:
                if err.errno not in _DISK_FULL:
                    raise
                raise self._disk_full(err) from err
            except IndexMismatchError as err:  # the assembled folder failed its check: a silently short write
                shutil.rmtree(self.staging, ignore_errors=True)
                raise BuildError(
                    f"The assembled index did not check out, so it was not swapped in ({err}) Is the disk full? "
                    f"The finished shards are kept in {self.root}: run the same command again to assemble it anew."
                ) from err

    def check_free_space(self, needed: int) -> None:
        """Refuse to start a build the disk cannot hold (estimated by needed_bytes)."""
        free = shutil.disk_usage(self.out.parent).free
        if free < needed:
            if not any(self.shards.glob("*")):
                shutil.rmtree(self.root, ignore_errors=True)  # nothing done yet: leave nothing behind
            raise BuildError(
                f"Not enough free space for this build in {self.out.parent}: it needs about {_mb(needed)}, "
                f"{_mb(free)} are free. Free some space, index fewer photos (--limit), or build elsewhere (--out)."
            )

    def size(self) -> int:
        """Bytes in the work folder (its finished shards, mostly)."""
        return sum(path.stat().st_size for path in self.root.rglob("*") if path.is_file())

    def _disk_full(self, err: OSError) -> BuildError:
        """The disk filled up mid-build: drop the half-assembled index (it is made again from the
        shards), keep the finished shards and say where they are, how large, and how to go on."""
        shutil.rmtree(self.staging, ignore_errors=True)
        where = f" writing {err.filename}" if err.filename else ""
        return BuildError(
            f"The disk is full ({err.strerror or 'no space left'}{where}). The finished shards are kept in "
            f"{self.root} ({_mb(self.size())}); the previous index at {self.out}, if any, is untouched. "
            "Free some space and run the same command again to continue, or delete that folder to give up."
        )

    def remove(self) -> None:
        """After a completed build (the output lock held): its work and any unfinished work of other
        arguments for the same index, which the new index supersedes."""
        shutil.rmtree(self.root, ignore_errors=True)
        for other in self.out.parent.glob(f"{self._prefix(self.out)}*"):
            shutil.rmtree(other, ignore_errors=True)


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / MB:,.1f} MB"


def describe_holder(holder: dict) -> str:
    """'pid 123, started 2026-…, `python -m core.build_index …`, rows 500, …' from a lock's record."""
    if not holder:
        return "its details are not written yet"
    arguments = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in holder.get("arguments", {}).items())
    return (f"pid {holder.get('pid', '?')}, started {holder.get('started', '?')}, "
            f"command `{holder.get('command', '?')}`" + (f", {arguments}" if arguments else ""))


@contextlib.contextmanager
def _hold(lock_file: Path, holder: dict) -> Iterator[dict | None]:
    """Try to take a lock without waiting. Yields None when taken (and `holder` is recorded in it),
    else the record of whoever holds it; releases it on exit. A POSIX record lock dies with its
    process, so a killed build never leaves a stale lock; unlike flock it is not inherited by forked
    DataLoader workers that may outlive a kill. The holder deletes the file before it lets go, so a
    finished build leaves nothing beside its index."""
    key = lock_file.resolve()
    with _held_guard:
        other = _held.get(key)
        if other is None:
            _held[key] = holder
    if other is not None:
        yield other
        return
    try:
        with _locked_file(lock_file) as (handle, other):
            if other is not None:
                yield other
                return
            try:
                handle.truncate(0)
                handle.write(json.dumps(holder).encode())
                handle.flush()
                yield None
            finally:
                lock_file.unlink(missing_ok=True)  # while still holding it: see _locked_file
    finally:
        with _held_guard:
            if _held.get(key) is holder:
                del _held[key]


@contextlib.contextmanager
def _locked_file(lock_file: Path, attempts: int = 3) -> Iterator[tuple[typing.BinaryIO, dict | None]]:
    """The open lock file and None when this process now holds it, else the holder's record.
    A file the previous holder deleted just before letting go is no lock: open the path anew."""
    for _ in range(attempts):
        with open(lock_file, "a+b") as handle:
            if fcntl is not None:
                try:
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.seek(0)
                    yield handle, _parse(handle.read())
                    return
            if _same_file(handle, lock_file):
                yield handle, None
                return
    yield handle, {}


def _same_file(handle: typing.BinaryIO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _parse(record: bytes) -> dict:
    try:
        holder = json.loads(record.decode("utf-8"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}
