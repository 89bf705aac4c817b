"""The work folder of one build: its shards and its unfinished index, until the build completes.

    <parent of out>/.<out name>.build-<key>/
        build.json   what the key was made from (readable, for a curious user)
        lock         held while a build runs
        shards/      finished shards (see writer.py)
        index/       the index folder being assembled, swapped onto <out> when complete

The key hashes everything the shards depend on (catalog fingerprint, rows, models and
their weights, device, precision, batch and shard size): the same command finds its own
folder again after a kill and continues; a different one starts afresh beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from core.pipeline import BuildError

try:
    import fcntl
except ImportError:  # Windows: builds are kept apart within one process only
    fcntl = None

_held: set[Path] = set()  # POSIX locks do not conflict within a process: threads (app sessions) check here
_held_guard = threading.Lock()


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
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def staging(self) -> Path:
        return self.root / "index"

    @contextlib.contextmanager
    def locked(self) -> Iterator[WorkFolder]:
        """Hold the folder for this build; a second build with the same arguments is refused."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "build.json").write_text(json.dumps(self.facts, indent=2, sort_keys=True), encoding="utf-8")
        with _hold(self.root / "lock") as acquired:
            if not acquired:
                raise BuildError(
                    f"Another build of {self.out} with the same arguments is running (work folder {self.root}). "
                    "Wait for it to finish."
                )
            yield self

    def remove(self) -> None:
        """After a completed build: its work and any unfinished work of other arguments for the same index,
        which the new index supersedes (folders another build is holding are left alone)."""
        shutil.rmtree(self.root, ignore_errors=True)
        for other in self.out.parent.glob(f"{self._prefix(self.out)}*"):
            with _hold(other / "lock") as acquired:
                if acquired:
                    shutil.rmtree(other, ignore_errors=True)


@contextlib.contextmanager
def _hold(lock_file: Path) -> Iterator[bool]:
    """Try to take a lock without waiting: yields whether it was taken, releases it on exit.
    A POSIX record lock dies with its process, so a killed build never leaves a stale lock;
    unlike flock it is not inherited by forked DataLoader workers that may outlive a kill."""
    key = lock_file.resolve()
    with _held_guard:
        taken = key not in _held
        _held.add(key)
    if not taken:
        yield False
        return
    try:
        with open(lock_file, "a+b") as handle:
            try:
                if fcntl is not None:
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
            except OSError:
                acquired = False
            yield acquired
    finally:
        with _held_guard:
            _held.discard(key)
