"""Build progress: the tqdm bar (images/s, ETA), the caller's on_progress and per-stage clocks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from tqdm import tqdm

from core.pipeline.reader import DecodedBatch

ProgressCallback = Callable[[str, int, int], None]
STAGES = ("reuse", "decode", "encode", "write", "index")


class BuildProgress:
    """Turns pipeline events into what a user sees; executors report here, whatever runs the stages."""

    def __init__(self, total: int, done: int, *, show: bool, on_progress: ProgressCallback | None) -> None:
        self.total = total
        self.done = done
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.items = dict.fromkeys(STAGES, 0)  # how many rows (or vectors, for index) each clock covers
        self._on_progress = on_progress
        self._bar = tqdm(total=total, initial=done, unit="img", desc="images", disable=not show, smoothing=0.05)

    def read(self, batch: DecodedBatch) -> None:
        """A batch came out of the reader: its (worker) time counts as decode time."""
        self.record("decode", batch.seconds, len(batch.rows))

    def record(self, stage: str, seconds: float, items: int) -> None:
        """Time a stage spent on `items` rows, wherever it ran (a worker, a remote actor)."""
        self.seconds[stage] += seconds
        self.items[stage] += items

    @contextlib.contextmanager
    def timed(self, stage: str, items: int) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, time.perf_counter() - started, items)

    def advance(self, rows: int) -> None:
        """Rows went through the encode stage: move the bar and tell the caller."""
        self.done += rows
        self._bar.update(rows)
        self._report("images", self.done, self.total)

    def index_step(self, done: int, total: int) -> None:
        self._report("index", done, total)

    def _report(self, stage: str, done: int, total: int) -> None:
        if self._on_progress is not None:
            self._on_progress(stage, done, total)

    def close(self) -> None:
        self._bar.close()
