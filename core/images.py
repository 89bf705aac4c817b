"""Safe image decoding: the one place where untrusted bytes (uploads, catalog files) become pixels.

Everything that can go wrong with a file a user hands us -- wrong format, damage, a
decompression bomb, an exotic pixel mode -- ends here as an `ImageError` with a sentence
fit to show that user, and everything that succeeds is a fully loaded, detached RGB image.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import threading
import typing
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from core.lru import LRU

DEFAULT_MAX_BYTES: int = 32 * 1024 * 1024
DEFAULT_MAX_PIXELS: int = 40_000_000
# CLIP resizes the short side to 224 px, then keeps the centre square: a 40000x1 photo would first
# grow to 8,960,000x224 px (gigabytes). Cropping such strips to 4:1 around the centre keeps the same
# centre square at a bounded cost; photos up to 4:1 are untouched.
MAX_ASPECT_RATIO = 4.0
# Decoding is where an upload costs memory (a 40-megapixel PNG is 160 MB of RGBA before anything can
# shrink it): at most this many decodes run at once per process, whatever the number of visitors.
MAX_CONCURRENT_DECODES = 2
_decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
# A query photo is decoded once at the size CLIP needs (its short side 224 px) and kept by content
# hash: the app's preview and the search that follows share it.
QUERY_MIN_SIDE = 224
QUERY_CACHE_SIZE = 8
_query_images: LRU[Image.Image] = LRU(QUERY_CACHE_SIZE)
# Query decodes run on a few threads of their own: malloc keeps a freed peak in the arena of the
# thread that made it, so decoding on every visitor's thread would keep one peak per visitor.
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own
_pool_guard = threading.Lock()
# Modes Image.reduce averages correctly; others are converted first (a palette index cannot be averaged).
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr"})
STRIP_BYTES = 8 << 20  # rows reduced at a time, as 4-byte pixels

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | typing.BinaryIO

# Only these decoders ever run: every extra one is attack surface and a format the models never saw.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
UNSUPPORTED_MESSAGE = "This file is not a supported image (JPEG, PNG, WebP, GIF, BMP or TIFF)."
DAMAGED_MESSAGE = "The image is damaged or incomplete."

# Leading bytes of the accepted formats (WebP is checked apart: RIFF....WEBP).
_SIGNATURES = (
    b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"
)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class ImageError(ValueError):
    """Raised for any input that cannot become a safe RGB image.

    str(e) is a human sentence fit to show a user; the technical cause is kept as __cause__.
    """


def _size_text(n_bytes: float, round_up: bool = False) -> str:
    """'40.1 MB': rounded up for an offending size, so it never reads as equal to its limit."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n_bytes >= scale:
            value = math.ceil(n_bytes / scale * 10) / 10 if round_up else round(n_bytes / scale, 1)
            return f"{value:g} {unit}"
    return f"{n_bytes:g} bytes"


def _file_too_large(max_bytes: int, size: int | None = None) -> ImageError:
    actual = f": {_size_text(size, round_up=True)}" if size is not None else ""
    return ImageError(f"The file is too large{actual} (limit {_size_text(max_bytes)}).")


def _read_path(path: str | os.PathLike, max_bytes: int) -> bytes:
    """Stat before reading, so an oversized file is refused without ever being read."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"'{os.fspath(path)}' is a folder, not an image file.")
        if info.st_size > max_bytes:
            raise _file_too_large(max_bytes, info.st_size)
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)  # the size may have changed since stat, or be unknown (devices)
    except FileNotFoundError as err:
        raise ImageError(f"The image file '{os.fspath(path)}' was not found.") from err
    except OSError as err:
        raise ImageError(f"The image file '{os.fspath(path)}' could not be read ({err.strerror}).") from err


def read_image_bytes(source: ImageSource, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read the raw bytes of a path, bytes-like or binary file-like, never holding more than max_bytes + 1."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if memoryview(source).nbytes > max_bytes:
            raise _file_too_large(max_bytes, memoryview(source).nbytes)
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, max_bytes)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes):
            raise TypeError("load_image needs a file opened in binary mode ('rb').")
    else:
        raise TypeError(f"Cannot read an image from {type(source).__name__}.")
    if len(data) > max_bytes:
        raise _file_too_large(max_bytes)
    if not data:
        raise ImageError("The file is empty.")
    return data


def _has_accepted_signature(data: bytes) -> bool:
    """Tells a damaged JPEG/PNG/... (worth saying so) from a file that is no image of ours at all."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit and float greyscale: Pillow's convert() clips to 255 (white), so scale the range instead."""
    full = 1.0 if im.mode == "F" else 65535.0
    a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=full, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > full:  # outside its nominal range (signed or 32-bit data): stretch what is there
        a, full = a - lo, (hi - lo) or 1.0
    return Image.fromarray(np.rint(a * (255.0 / full)).astype(np.uint8))


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded mode to RGB; transparency is composited on white, as a product photo's backdrop."""
    if im.mode in _HIGH_DEPTH_MODES:
        im = _scale_to_8bit(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")  # also for RGB: convert() returns a detached copy


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None) -> Image.Image:
    """Decode bytes into a fully loaded RGB image, refusing oversized images from the header alone.

    `min_side`: the caller only needs both sides at least this long (a query for a 224 px model),
    so a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps them: several times
    less work than decoding a phone photo at full size. Other formats cannot decode smaller; they
    are box-reduced by a whole factor right after decoding, before any mode conversion, so the
    conversions (alpha on white, 16-bit to 8-bit) work on the small image. At most
    MAX_CONCURRENT_DECODES decodes run at once.
    """
    if not data:
        raise ImageError("The file is empty.")
    limit = f"limit {max_pixels / 1e6:g} megapixels"
    with _decode_slots:
        return _decode(data, max_pixels, min_side, limit)


def _decode(data: bytes, max_pixels: int, min_side: int | None, limit: str) -> Image.Image:
    try:
        # Pillow's own bomb guard (Image.MAX_IMAGE_PIXELS) stays as a second line, its warning made an
        # error; our header check does not depend on it, as warning filters are process-wide.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as im:
                width, height = im.size  # Image.open is lazy: only the header has been read
                if width * height > max_pixels:
                    raise ImageError(f"The image is too large: {width}×{height} pixels ({limit}).")
                if min_side is not None and im.format == "JPEG":
                    im.draft("RGB", (min_side, min_side))
                im.load()  # first frame only, for GIF/WebP/TIFF
                reduced = _reduce(im, min_side) if min_side is not None else im
                return _to_rgb(ImageOps.exif_transpose(reduced))
    except ImageError:
        raise
    except Image.UnidentifiedImageError as err:  # also a zero-size or header-truncated image
        raise ImageError(DAMAGED_MESSAGE if _has_accepted_signature(data) else UNSUPPORTED_MESSAGE) from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"The image is too large ({limit}).") from err
    except Exception as err:  # decoders fail on untrusted data in many ways: OSError, SyntaxError, struct.error
        raise ImageError(DAMAGED_MESSAGE) from err


def _reduce(im: Image.Image, min_side: int) -> Image.Image:
    """Shrink by the largest whole factor that keeps both sides at least `min_side` (box average),
    a strip at a time: Pillow premultiplies alpha and converts modes on a full-size copy (another
    160 MB for a 40-megapixel RGBA), a strip costs a few MB."""
    factor = min(im.size) // min_side
    if factor < 2:
        return im
    mode = _reducible_mode(im)
    width, height = (im.width // factor) * factor, (im.height // factor) * factor
    out = Image.new(mode, (width // factor, height // factor))
    step = factor * max(1, STRIP_BYTES // (4 * width * factor))
    for top in range(0, height, step):
        strip = im.crop((0, top, width, min(top + step, height)))
        out.paste((strip if strip.mode == mode else strip.convert(mode)).reduce(factor), (0, top // factor))
    if "transparency" in im.info and mode == im.mode:  # an RGB or L colour key stays one
        out.info["transparency"] = im.info["transparency"]
    return out


def _reducible_mode(im: Image.Image) -> str:
    """The mode a decoded image is reduced in: its own where box averaging means something."""
    if im.mode in _REDUCIBLE_MODES:
        return im.mode
    if im.mode.startswith("I;16"):
        return "I"
    if im.mode == "1":
        return "L"
    return "RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB"  # palette: colours first


def decode_query_image(data: bytes) -> Image.Image:
    """A query photo decoded once, at the size CLIP needs: the app's preview and the search of the
    same bytes share one decode. The image is shared: copy it before changing it."""
    data = read_image_bytes(data)  # the size limits first
    key = hashlib.sha1(data).hexdigest()
    image = _query_images.get(key)
    if image is None:
        image = _decoder_pool().submit(decode_image, data, min_side=QUERY_MIN_SIDE).result()
        _query_images.put(key, image)
    return image


def _decoder_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(MAX_CONCURRENT_DECODES, thread_name_prefix="vitrine-decode"))
        return _pool[1]


def load_image(
    source: ImageSource, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Path, bytes or file-like to a safe RGB image: the entry point for uploads and catalog files."""
    return decode_image(read_image_bytes(source, max_bytes), max_pixels)


def limit_aspect_ratio(image: Image.Image, max_ratio: float = MAX_ASPECT_RATIO) -> Image.Image:
    """The centre of an extreme strip, at most max_ratio:1; other images are returned as they are."""
    width, height = image.size
    if width > max_ratio * height:
        keep = max(1, round(max_ratio * height))
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > max_ratio * width:
        keep = max(1, round(max_ratio * width))
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image
