"""Peak extra memory to decode the worst uploads the app accepts, alone and 8 at once.

    python -m bench.upload_memory            # writes the files to $TMPDIR/vitrine-worst-uploads once

Each measurement runs in a fresh process: it reads the file(s), notes its peak resident size
(VmHWM), decodes them as the app does (core.images.decode_query_image: what the preview and
the search share), and prints how far the peak rose. The files are the worst cases within the
upload limits (32 MB, 40 megapixels): flat PNGs that compress to almost nothing, in the modes
that cost most to decode and convert, and a 40-megapixel JPEG.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIDE = 6324  # 6324 x 6324 = 39.99 megapixels, just under DEFAULT_MAX_PIXELS
CONCURRENT = 8

CHILD = """
import sys, threading
from core.images import decode_query_image
paths = sys.argv[1:]
data = [open(path, 'rb').read() for path in paths]
def peak_kb():  # this process's own high-water mark (ru_maxrss would include a parent's, kept across exec)
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))
before = peak_kb()
threads = [threading.Thread(target=decode_query_image, args=(d,)) for d in data]
[t.start() for t in threads]
[t.join() for t in threads]
print((peak_kb() - before) / 1024)
"""


def worst_files(folder: Path) -> dict[str, Path]:
    """The worst accepted uploads, made once (a few seconds each)."""
    folder.mkdir(parents=True, exist_ok=True)
    makers = {
        "RGBA PNG": lambda: Image.new("RGBA", (SIDE, SIDE), (200, 30, 30, 128)),
        "16-bit grey PNG": lambda: Image.fromarray(np.full((SIDE, SIDE), 40000, np.uint16)),
        "palette PNG with transparency": lambda: _palette(),
        "RGB JPEG": lambda: Image.new("RGB", (SIDE, SIDE), (30, 90, 200)),
    }
    files = {}
    for name, make in makers.items():
        path = folder / (name.replace(" ", "-") + (".jpg" if "JPEG" in name else ".png"))
        if not path.is_file():
            make().save(path)
        files[name] = path
    return files


def _palette() -> Image.Image:
    image = Image.new("P", (SIDE, SIDE), 1)
    image.info["transparency"] = 0
    return image


def peak_extra_mb(paths: list[Path]) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)],
                         cwd=ROOT, capture_output=True, text=True, check=True)  # run from the root: core/ imports
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "vitrine-worst-uploads")
    args = parser.parse_args()
    files = worst_files(args.folder)
    results = {}
    for name, path in files.items():
        results[name] = peak_extra_mb([path])
        print(f"{name:32s} {path.stat().st_size / 1024:8.0f} KB  peak extra {results[name]:6.0f} MB")
    worst = max(results, key=results.get)
    # eight visitors at once, each with a copy of the worst file (distinct bytes: no shared decode)
    copies = []
    for n in range(CONCURRENT):
        copy = args.folder / f"copy-{n}{files[worst].suffix}"
        copy.write_bytes(files[worst].read_bytes() + bytes([n]))  # a trailing byte: new hash, same image
        copies.append(copy)
    together = peak_extra_mb(copies)
    print(f"{CONCURRENT} concurrent uploads of the {worst}: peak extra {together:.0f} MB")
    print(json.dumps({"per_file_mb": results, "concurrent_mb": together}))


if __name__ == "__main__":
    main()
