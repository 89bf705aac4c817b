"""Tests for core.images: every way untrusted bytes can arrive, and every way they can be wrong."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.images import (
    DEFAULT_MAX_BYTES,
    ImageError,
    decode_image,
    load_image,
    read_image_bytes,
)

from .conftest import missing
from .io_watch import decoders_started, files_opened

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)
UNSUPPORTED = re.escape("not a supported image (JPEG, PNG, WebP, GIF, BMP or TIFF)")
DAMAGED = "damaged or incomplete"
FASHION_IMAGES = Path(__file__).resolve().parents[2] / "shared/data/fashion-products/images"


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def two_colour(size=(32, 24), left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another: checks that pixels land where they should."""
    im = Image.new("RGB", size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def assert_close(pixel, expected, tol=0):
    assert all(abs(a - b) <= tol for a, b in zip(pixel, expected)), f"{pixel} != {expected} (±{tol})"


def assert_safe_rgb(im: Image.Image):
    """RGB, fully loaded, and a plain Image: no plugin subclass still holding a file handle."""
    assert im.mode == "RGB"
    assert type(im) is Image.Image
    assert getattr(im, "fp", None) is None


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def greyscale_png(width: int, height: int, idat: bytes) -> bytes:
    """A hand-made 8-bit greyscale PNG whose header can claim any size, whatever its data holds."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


# Run in a fresh interpreter, so the peak memory it reports is the decode's alone: this process's
# peak already holds every earlier test's allocations (and the bomb's own 64 MB of rows).
_PEAK_GROWTH_MB = """
import resource, sys
from core.images import ImageError, decode_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data)
    outcome = "decoded"
except ImageError as err:
    outcome = str(err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)  # Linux: KiB
print(outcome)
"""


def decode_in_fresh_process(data: bytes, tmp_path: Path) -> tuple[float, str]:
    """(growth of the peak resident memory in MB, 'decoded' or the refusal) of decode_image(data)."""
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    child = subprocess.run([sys.executable, "-c", _PEAK_GROWTH_MB, str(path)], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1], check=True)
    growth, outcome = child.stdout.splitlines()
    return float(growth), outcome


# --- accepted formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, tol", [("JPEG", 40), ("PNG", 0), ("WEBP", 40), ("GIF", 0), ("BMP", 0), ("TIFF", 0)]
)
def test_every_accepted_format_round_trips(fmt, tol):
    im = decode_image(encode(two_colour(), fmt))
    assert_safe_rgb(im)
    assert im.size == (32, 24)
    assert_close(im.getpixel((4, 12)), RED, tol)
    assert_close(im.getpixel((28, 12)), BLUE, tol)


def test_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    im = load_image(data)
    assert_safe_rgb(im)
    assert im.getpixel((4, 4)) == RED


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (40, 20), RED)  # stored landscape: top half red, bottom half blue
    stored.paste(BLUE, (0, 10, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    im = decode_image(encode(stored, "JPEG", exif=exif, quality=95))
    assert im.size == (20, 40)
    assert_close(im.getpixel((15, 20)), RED, 40)  # the top went to the right
    assert_close(im.getpixel((4, 20)), BLUE, 40)


# --- pixel modes ------------------------------------------------------------------------------------


def test_rgba_is_composited_on_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)])
    im = decode_image(encode(rgba, "PNG"))
    assert_safe_rgb(im)
    assert im.getpixel((0, 0)) == WHITE  # fully transparent: white, not the hidden red
    assert im.getpixel((1, 0)) == BLUE
    assert_close(im.getpixel((2, 0)), (127, 127, 127), 1)  # half transparent black: grey


def test_la_is_composited_on_white():
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (50, 255)])
    im = decode_image(encode(la, "PNG"))
    assert im.getpixel((0, 0)) == WHITE
    assert im.getpixel((1, 0)) == (50, 50, 50)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt):
    p = Image.new("P", (2, 1))
    p.putpalette(RED + GREEN)
    p.putdata([0, 1])
    im = decode_image(encode(p, fmt, transparency=0))
    assert im.getpixel((0, 0)) == WHITE
    assert im.getpixel((1, 0)) == GREEN


def test_rgb_with_trns_colour_key_is_composited_on_white():
    im = decode_image(encode(two_colour(), "PNG", transparency=RED))
    assert im.getpixel((4, 12)) == WHITE
    assert im.getpixel((28, 12)) == BLUE


def test_pa_tiff_is_composited_on_white():
    pa = Image.new("PA", (2, 1))
    pa.putpalette(RED + GREEN)
    pa.putdata([(0, 0), (1, 255)])
    data = encode(pa, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "PA"
    im = decode_image(data)
    assert im.getpixel((0, 0)) == WHITE
    assert im.getpixel((1, 0)) == GREEN


def test_adobe_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert b"Adobe" in data[:200]  # inverted CMYK, as Photoshop writes it
    im = decode_image(data)
    assert_safe_rgb(im)
    assert_close(im.getpixel((8, 8)), RED, 10)


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("CMYK", (0, 255, 255, 0), RED),
        ("L", 200, (200, 200, 200)),
        ("1", 1, WHITE),
        ("YCbCr", (255, 128, 128), WHITE),
        ("LAB", (255, 128, 128), WHITE),
    ],
)
def test_other_modes_become_rgb(mode, value, expected):
    data = encode(Image.new(mode, (4, 4), value), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    im = decode_image(data)
    assert_safe_rgb(im)
    assert_close(im.getpixel((1, 1)), expected, 2)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_not_clipped(fmt):
    grey = Image.fromarray(np.array([[0, 32768, 65535, 1000]], dtype=np.uint16))
    data = encode(grey, fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    im = decode_image(data)
    assert_safe_rgb(im)
    assert [im.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 4]


def test_16_bit_big_endian_tiff_is_scaled():
    grey = Image.frombytes("I;16B", (3, 1), np.array([0, 32768, 65535], dtype=">u2").tobytes())
    data = encode(grey, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    assert [decode_image(data).getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128,) * 3, WHITE]


def test_32_bit_integer_tiff_is_scaled_as_16_bit():
    data = encode(Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32)), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    assert [decode_image(data).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_float_tiff_is_scaled():
    data = encode(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    assert [decode_image(data).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_1_bit_becomes_rgb(fmt):
    bits = Image.new("1", (2, 1))
    bits.putdata([0, 1])
    data = encode(bits, fmt)
    assert Image.open(io.BytesIO(data)).mode == "1"
    im = decode_image(data)
    assert_safe_rgb(im)
    assert [im.getpixel((0, 0)), im.getpixel((1, 0))] == [(0, 0, 0), WHITE]


# --- input kinds ------------------------------------------------------------------------------------


@pytest.fixture
def png_bytes() -> bytes:
    return encode(two_colour(), "PNG")


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, io.BytesIO],
    ids=["bytes", "bytearray", "memoryview", "BytesIO"],
)
def test_in_memory_sources(png_bytes, wrap):
    im = load_image(wrap(png_bytes))
    assert_safe_rgb(im)
    assert im.getpixel((4, 12)) == RED


@pytest.mark.parametrize("as_str", [False, True])
def test_path_sources(tmp_path, png_bytes, as_str):
    path = tmp_path / "shirt.png"
    path.write_bytes(png_bytes)
    im = load_image(str(path) if as_str else path)
    path.unlink()  # detached: the file is no longer needed
    assert_safe_rgb(im)
    assert im.getpixel((28, 12)) == BLUE


def test_open_binary_file_source(tmp_path, png_bytes):
    path = tmp_path / "shirt.png"
    path.write_bytes(png_bytes)
    with path.open("rb") as f:
        im = load_image(f)
    assert im.getpixel((4, 12)) == RED


def test_text_mode_file_is_a_programming_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with path.open("r") as f, pytest.raises(TypeError, match="binary mode"):
        read_image_bytes(f)


def test_read_image_bytes_returns_the_bytes(png_bytes):
    assert read_image_bytes(bytearray(png_bytes)) == png_bytes


# --- size limits ------------------------------------------------------------------------------------


def test_byte_limit_is_inclusive(png_bytes):
    assert load_image(png_bytes, max_bytes=len(png_bytes)).size == (32, 24)
    with pytest.raises(ImageError, match=r"The file is too large: .* \(limit .*\)"):
        load_image(png_bytes, max_bytes=len(png_bytes) - 1)


def test_byte_limit_for_file_like_reads_at_most_one_byte_more():
    stream = io.BytesIO(bytes(1000))
    with pytest.raises(ImageError, match=r"The file is too large \(limit 100 bytes\)"):
        read_image_bytes(stream, max_bytes=100)
    assert stream.tell() == 101


def test_byte_limit_for_paths_uses_stat_without_reading(tmp_path):
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB claimed, nothing written
    with files_opened() as opened, pytest.raises(ImageError, match=r"The file is too large: 2 GB \(limit 32 MB\)"):
        load_image(huge)
    assert str(huge) not in opened


def test_file_just_over_the_limit_never_reads_as_the_limit():
    with pytest.raises(ImageError, match=r"too large: 32.1 MB \(limit 32 MB\)"):
        read_image_bytes(b"\0" * (DEFAULT_MAX_BYTES + 1))


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    # A real decompression bomb: 8000×8000 greyscale (64 MB of pixels) in about 64 KB. It is under
    # Pillow's own MAX_IMAGE_PIXELS, so only our header check stands between it and the memory.
    rows = (b"\0" + bytes(8000)) * 8000
    bomb = greyscale_png(8000, 8000, zlib.compress(rows, 9))
    del rows
    assert len(bomb) < 100_000
    with decoders_started(monkeypatch) as decoders, pytest.raises(
        ImageError, match="The image is too large: 8000×8000 pixels \\(limit 40 megapixels\\)"
    ):
        decode_image(bomb)
    assert decoders == []
    growth_mb, outcome = decode_in_fresh_process(bomb, tmp_path)
    assert outcome.startswith("The image is too large") and growth_mb < 32


def test_giant_header_is_refused_before_any_decoding(monkeypatch):
    with decoders_started(monkeypatch) as decoders, pytest.raises(ImageError, match="The image is too large"):
        decode_image(greyscale_png(50000, 50000, zlib.compress(b"\0" * 1000)))
    assert decoders == []


def test_pillow_bomb_warning_is_a_refusal_too():
    # 100 megapixels is under our raised limit but over Pillow's MAX_IMAGE_PIXELS: its warning refuses it.
    max_pixels_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="The image is too large") as info:
        decode_image(greyscale_png(10000, 10000, zlib.compress(b"\0")), max_pixels=10**9)
    assert isinstance(info.value.__cause__, Image.DecompressionBombWarning)
    assert Image.MAX_IMAGE_PIXELS == max_pixels_before


def test_max_pixels_parameter(png_bytes):
    assert decode_image(png_bytes, max_pixels=32 * 24).size == (32, 24)
    with pytest.raises(ImageError, match=r"32×24 pixels \(limit 0.000767 megapixels\)"):
        decode_image(png_bytes, max_pixels=32 * 24 - 1)


# --- broken and foreign input -----------------------------------------------------------------------


def noisy(size=(64, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated_image_is_damaged(fmt):
    data = encode(noisy(), fmt)
    with pytest.raises(ImageError, match=DAMAGED) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.__cause__ is not None  # the technical cause is kept
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's note on the cut TIFF header
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_image_cut_inside_its_header_is_damaged(fmt):
    with pytest.raises(ImageError, match=DAMAGED):
        decode_image(encode(noisy(), fmt)[:16])


def test_pillow_errors_that_are_not_oserror_are_wrapped():
    header = struct.pack(">IIBBBB", 4, 4, 8, 0, 0, 0)  # IHDR one byte short: Pillow raises ValueError
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageError, match=DAMAGED) as info:
        decode_image(data)
    assert type(info.value.__cause__) is ValueError


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt metadata
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_corrupted_headers_give_an_image_or_an_image_error(fmt):
    """Seeded fuzzing: whatever a damaged header makes Pillow raise, only ImageError gets out."""
    rng = np.random.default_rng(7)
    data = encode(noisy((32, 32)), fmt)
    for _ in range(300):
        corrupt = bytearray(data)
        for pos in rng.integers(0, min(len(data), 200), size=3):
            corrupt[pos] = rng.integers(0, 256)
        try:
            assert decode_image(bytes(corrupt)).mode == "RGB"
        except ImageError as err:
            assert str(err).startswith(("The image is damaged", "The image is too large", "This file is not"))


def test_zero_size_image_is_refused():
    with pytest.raises(ImageError, match=DAMAGED):
        decode_image(greyscale_png(0, 0, zlib.compress(b"")))


@pytest.mark.parametrize("source", [b"", bytearray(), io.BytesIO()], ids=["bytes", "bytearray", "BytesIO"])
def test_empty_input(source):
    with pytest.raises(ImageError, match="^The file is empty.$"):
        load_image(source)


def test_empty_file_and_decode_of_empty_bytes(tmp_path):
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(ImageError, match="^The file is empty.$"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="^The file is empty.$"):
        decode_image(b"")


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).bytes(5000),
        b"Product list\nshirt, blue, 19.99\n",
        b"<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>",
    ],
    ids=["random", "text", "html"],
)
def test_non_images_are_unsupported(tmp_path, data):
    path = tmp_path / "upload.jpg"  # the name lies; the bytes decide
    path.write_bytes(data)
    with pytest.raises(ImageError, match=UNSUPPORTED) as info:
        load_image(path)
    assert str(info.value) == "This file is not a supported image (JPEG, PNG, WebP, GIF, BMP or TIFF)."


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM"])
def test_formats_pillow_reads_but_we_do_not_accept(fmt):
    data = encode(two_colour(), fmt)
    Image.open(io.BytesIO(data)).load()  # Pillow itself can read it...
    with pytest.raises(ImageError, match=UNSUPPORTED):
        decode_image(data)  # ...but its decoder never runs here


def test_missing_path(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_directory_path(tmp_path):
    with pytest.raises(ImageError, match="is a folder, not an image file"):
        load_image(tmp_path)


def test_unknown_source_type():
    with pytest.raises(TypeError, match="Cannot read an image from int"):
        load_image(42)


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


# --- real photos ------------------------------------------------------------------------------------


def test_real_catalog_photos():
    if not FASHION_IMAGES.is_dir():
        missing(f"shared fashion-products data not found at {FASHION_IMAGES}")
    paths = sorted(FASHION_IMAGES.glob("*.jpg"))[:20]
    assert len(paths) == 20
    for path in paths:
        im = load_image(path)
        assert_safe_rgb(im)
        assert im.size == (224, 224)
