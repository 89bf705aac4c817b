"""Watch the mechanism rather than the clock: which files a call opens, and whether pixels get decoded."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from PIL import Image

_recorders: list[list[str]] = []


def _on_audit(event: str, args: tuple) -> None:
    if event == "open" and _recorders and isinstance(args[0], (str, bytes, os.PathLike)):
        for opened in _recorders:
            opened.append(os.fsdecode(args[0]))


sys.addaudithook(_on_audit)  # audit hooks cannot be removed: it records only inside files_opened()


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """Every path opened (open(), io.open, os.open, Path.read_bytes ...) while the block runs."""
    opened: list[str] = []
    _recorders.append(opened)
    try:
        yield opened
    finally:
        _recorders.remove(opened)


@contextlib.contextmanager
def decoders_started(monkeypatch) -> Iterator[list[str]]:
    """The names of the Pillow pixel decoders started while the block runs (ImageFile.load uses them)."""
    started: list[str] = []
    real = Image._getdecoder

    def counting(mode, decoder_name, args, extra=()):
        started.append(decoder_name)
        return real(mode, decoder_name, args, extra)

    monkeypatch.setattr(Image, "_getdecoder", counting)
    yield started
    monkeypatch.setattr(Image, "_getdecoder", real)
