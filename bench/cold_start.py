"""Cold start: process start to the first result with local model folders, and index load time.

    python -m bench.cold_start [--products 500] [--load-size 200000]

The first figure runs a fresh `python -m core.search` process (imports, model load from
VITRINE_MODELS_DIR, index load, one text query), as a booth laptop does after a reboot.
The second loads a synthetic index folder of --load-size products (manifest, items table,
hnswlib graph) into a SearchEngine, the part that grows with the catalog.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.setup import DEFAULT_WORK, ROOT, prepare, synthetic_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--load-size", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    folder = prepare(args.work, args.products)

    first_result = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "core.search", "--index", str(folder), "--text", "red summer dress", "-k", "12"],
            check=True, cwd=ROOT, env=dict(os.environ), capture_output=True,
        )
        first_result.append(time.perf_counter() - started)
    print(f"process start -> first result: median {statistics.median(first_result):.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in first_result)}; goal <= 10 s)")

    from core.search import SearchEngine

    big = synthetic_index(args.work, args.load_size)
    loads = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        SearchEngine(big)
        loads.append(time.perf_counter() - started)
    print(f"index load at {args.load_size} items: median {statistics.median(loads):.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in loads)}; goal <= 1 s)")
    print(f"result: cold start {statistics.median(first_result):.2f} s, index load {statistics.median(loads):.2f} s")


if __name__ == "__main__":
    main()
