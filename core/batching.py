"""Micro-batching: concurrent callers' inputs go through a model together, in one forward pass.

A server thread per request each asking for one text vector would otherwise run one forward
pass each, one after the other (a second pass at the same time only fights the first for
the cores). Here the first caller's inputs wait a few milliseconds for company; whatever
arrived meanwhile, and whatever queued up while the previous pass ran, joins one batch.
Forward passes of one batcher never overlap. Each caller gets exactly its own rows back.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

Item = TypeVar("Item")
# A few milliseconds: short next to a CLIP forward pass (tens of ms on a CPU), long enough for
# requests that arrive together to meet.
DEFAULT_WAIT_S = 0.003
DEFAULT_MAX_BATCH = 32


@dataclass
class _Request(Generic[Item]):
    items: list[Item]
    batch_size: int
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[Item]):
    """`batcher(items, batch_size)` returns `run(items, batch_size)`'s rows, sharing the pass with
    whoever else called at about the same time. `run` maps N inputs to an (N, d) array."""

    def __init__(
        self,
        run: Callable[[list[Item], int], np.ndarray],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._start()

    def _start(self) -> None:
        """Fresh queue and worker: also after a fork, where the parent's worker thread does not exist."""
        self._pid = os.getpid()
        self._queue: deque[_Request[Item]] = deque()
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None

    def __call__(self, items: Sequence[Item], batch_size: int) -> np.ndarray:
        request = _Request(list(items), batch_size)
        with self._ready:
            if self._pid != os.getpid():
                self._start()
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="vitrine-micro-batcher", daemon=True)
                self._worker.start()
            self._queue.append(request)
            self._ready.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            self._run_batch(batch)

    def _next_batch(self) -> list[_Request[Item]]:
        """The oldest request, plus what arrives within the wait window, up to max_batch inputs."""
        with self._ready:
            while not self._queue:
                self._ready.wait()
            batch = [self._queue.popleft()]
            size = len(batch[0].items)
            deadline = time.monotonic() + self.wait_s
            while size < self.max_batch:
                if self._queue:
                    if size + len(self._queue[0].items) > self.max_batch:
                        break
                    batch.append(self._queue.popleft())
                    size += len(batch[-1].items)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            return batch

    def _run_batch(self, batch: list[_Request[Item]]) -> None:
        items = [item for request in batch for item in request.items]
        try:
            vectors = self._run(items, max(request.batch_size for request in batch))
        except BaseException as err:  # every caller of this pass gets the failure, none waits forever
            for request in batch:
                request.error = err
                request.done.set()
            return
        start = 0
        for request in batch:
            request.vectors = vectors[start : start + len(request.items)]
            start += len(request.items)
            request.done.set()
