"""Thumbnails: small WebP files beside the index, so a grid of 48 results decodes no full-size photo."""

from __future__ import annotations

import io

from PIL import Image

from core.index import THUMBNAILS_DIR

# A result card is at most about 240 CSS pixels wide: 480 px keeps it sharp at 2x pixel density.
THUMBNAIL_PX = 480
# method 2 encodes twice as fast as Pillow's default 4 for files about 4% larger; at GPU
# speeds the thumbnail is the largest cost a reader worker pays per image.
_WEBP_OPTIONS = {"format": "WEBP", "quality": 82, "method": 2}


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_PX) -> bytes:
    """The image shrunk to fit size x size (never enlarged), as WebP bytes."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, **_WEBP_OPTIONS)
    return buffer.getvalue()


def thumbnail_path(sha1: str) -> str:
    """Where a thumbnail lives inside the index folder: named by the photo's bytes, so
    identical photos share one file and a resumed build names it exactly as before."""
    return f"{THUMBNAILS_DIR}/{sha1}.webp"
