"""Index builder throughput versus the model's own forward pass, measured in one run.

    python -m bench.build_throughput                      # 128 shared photos, batch 32, 5 rounds

Builder: `build_index` end to end on the first N shared photos (reader workers decode,
preprocess and make thumbnails, the encoder runs the image tower, shards are written,
then hnswlib and the index folder). Raw: the same image tower's forward pass alone on
pixel tensors prepared beforehand, same batch size, same photos. The two alternate for a
few rounds and the median of the per-round ratios says how much of the model's speed
the builder delivers (goal on 2 cores: >= 0.85).

On a machine others are using, wall-clock rates swing with their load, so the ratio is
also given per CPU second (this process and its reader workers): on a 2-core machine the
model already fills both cores, so everything else the builder does costs model time,
and images per CPU second measures exactly that, whatever else runs beside it.

The model is a full-size ViT-B/32 CLIP with random weights (core/random_models.py; it
costs what the trained one costs), made once in --models-dir.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.setup import full_clip_photos
from core.build_index import build_index
from core.images import load_image
from core.models import CLIP_KEY, get_encoder


def raw_forward(encoder, pixels: torch.Tensor, batch_size: int) -> None:
    """The image tower alone over prepared (processor-normalised) pixels, batch by batch."""
    module = encoder.model[0]
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            features = module.model.get_image_features(pixel_values=pixels[start : start + batch_size])
            torch.nn.functional.normalize(features.pooler_output, dim=-1)


def clocks() -> tuple[float, float]:
    """Wall time, and CPU time of this process plus its finished children (the reader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rates(images: int, run: Callable[[], object]) -> tuple[float, float]:
    """(images per wall second, images per CPU second) of one call."""
    wall, cpu = clocks()
    run()
    wall_end, cpu_end = clocks()
    return images / (wall_end - wall), images / (cpu_end - cpu)


def median_ratio(builder: list[float], raw: list[float]) -> tuple[float, str]:
    ratios = [b / r for b, r in zip(builder, raw)]
    return statistics.median(ratios), ", ".join(f"{r:.3f}" for r in ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=128, help="photos per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, help="builder reader processes (default: the builder's own)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "vitrine-full-models")
    args = parser.parse_args()
    catalog = full_clip_photos(args.models_dir, args.limit)
    encoder = get_encoder(CLIP_KEY, "cpu")
    processor = encoder.model[0].processor.image_processor
    pixels = processor([load_image(item.image_path) for item in catalog.items], return_tensors="pt")["pixel_values"]
    raw_forward(encoder, pixels[: args.batch_size], args.batch_size)  # warm-up
    measured = {"raw": [], "builder": []}  # (wall rate, cpu rate) per round
    summaries = []

    with tempfile.TemporaryDirectory() as scratch:

        def build() -> None:
            summaries.append(build_index(
                catalog, Path(scratch) / f"index-{len(summaries)}", [CLIP_KEY], device="cpu",
                batch_size=args.batch_size, workers=args.workers, progress=False,
            ))

        runs = {"raw": lambda: raw_forward(encoder, pixels, args.batch_size), "builder": build}
        for round_ in range(args.rounds):
            for name in ("raw", "builder") if round_ % 2 == 0 else ("builder", "raw"):  # who goes first alternates
                measured[name].append(rates(len(pixels), runs[name]))
            (raw_wall, raw_cpu), (built_wall, built_cpu) = measured["raw"][-1], measured["builder"][-1]
            print(f"round {round_ + 1}: raw {raw_wall:.2f} images/s ({raw_cpu:.2f} per CPU-s), builder "
                  f"{built_wall:.2f} images/s ({built_cpu:.2f} per CPU-s), ratio {built_wall / raw_wall:.3f} "
                  f"(CPU {built_cpu / raw_cpu:.3f})", flush=True)

    wall = {name: [w for w, _ in values] for name, values in measured.items()}
    cpu = {name: [c for _, c in values] for name, values in measured.items()}
    print(f"\n{args.limit} photos, batch {args.batch_size}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(f"raw encoder forward (median): {statistics.median(wall['raw']):.2f} images/s")
    print(f"builder end to end (median):  {statistics.median(wall['builder']):.2f} images/s")
    print("ratio builder / raw, wall clock (median of rounds): %.3f  [%s]" % median_ratio(wall["builder"], wall["raw"]))
    print("ratio builder / raw, per CPU second (median):       %.3f  [%s]" % median_ratio(cpu["builder"], cpu["raw"]))
    print(f"last builder run: {summaries[-1].describe()}")


if __name__ == "__main__":
    main()
