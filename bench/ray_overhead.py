"""Ray engine overhead: images/s of `--engine ray` versus the local engine on this machine, in one run.

    python -m bench.ray_overhead                       # 1024 shared photos, batch 32

Both engines build an index of the same first N shared photos (photos only: one image
index) with the same full-size ViT-B/32 CLIP with random weights (core/random_models.py;
it costs what the trained one costs), the same batch and shard sizes, end to end:
catalog, model facts, reading, encoding, shards, hnswlib, assembly. Ray runs locally on
all cores and is started before the clock (a cluster is up before a build is sent to it);
its start-up time is printed apart. On one machine Ray can only add overhead: the ratio
says how much of the local engine's speed the Ray engine keeps (goal on 2 cores: >= 0.8).
Each round builds with both engines back to back, in alternating order, and gives one
ratio; the median of the rounds' ratios is the figure (load from other work on a shared
machine shifts both builds of a round alike, and a round apart).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from bench.setup import full_clip_photos
from core.build_index import BuildSummary, build_index, make_executor
from core.models import CLIP_KEY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=1024, help="photos per build")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="builds per engine, alternating")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "vitrine-bench-full-clip")
    args = parser.parse_args()
    catalog = full_clip_photos(args.models_dir, args.limit)
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - started

    rates: dict[str, list[float]] = {"local": [], "ray": []}
    last: dict[str, BuildSummary] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for engine in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
                last[engine] = build_index(
                    catalog, Path(scratch) / f"{engine}-{round_}" / "bench", [CLIP_KEY], device="cpu",
                    batch_size=args.batch_size, progress=False, executor=make_executor(engine),
                )
                rates[engine].append(last[engine].indexed / last[engine].seconds)
            print(f"round {round_ + 1}: local {rates['local'][-1]:.2f} images/s, ray {rates['ray'][-1]:.2f} images/s, "
                  f"ratio {rates['ray'][-1] / rates['local'][-1]:.3f}", flush=True)
    ray.shutdown()

    ratios = [remote / local for remote, local in zip(rates["ray"], rates["local"])]
    print(f"\n{len(catalog.items)} photos, batch {args.batch_size}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, full-size ViT-B/32 (random weights), {args.rounds} round(s)")
    print(f"local engine (median): {statistics.median(rates['local']):.2f} images/s")
    print(f"ray engine (median):   {statistics.median(rates['ray']):.2f} images/s   "
          f"(local Ray started beforehand in {ray_start:.1f} s)")
    print(f"ratio ray / local (median of rounds): {statistics.median(ratios):.3f}")
    for engine, summary in last.items():
        print(f"last {engine} build: {summary.describe()}")


if __name__ == "__main__":
    main()
