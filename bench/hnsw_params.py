"""HNSW recall@10 against exact search vs single-query latency, per catalog size and params.

    python -m bench.hnsw_params --sizes 50000,200000 --grid
    python -m bench.hnsw_params --sizes 1000000

Vectors are synthetic clustered unit vectors (bench/vectors.py); queries come from the
same distribution but are not in the index. Latency is one query at a time on one
thread, as the app runs them. Prints one row per setting, then the chosen setting.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.vectors import clustered_unit_vectors
from core.index import HnswParams, IndexEntry, VectorIndex

K = 10


def exact_top_k(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return top


def measure(index: VectorIndex, queries: np.ndarray, truth: np.ndarray, ef: int) -> tuple[float, float]:
    index.graph.set_ef(ef)
    for query in queries[:50]:  # warm caches
        index.hnsw_search(query, K)
    timings, found = [], []
    for query in queries:
        started = time.perf_counter()
        labels, _ = index.hnsw_search(query, K)
        timings.append((time.perf_counter() - started) * 1000)
        found.append(labels[0])
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
    return recall, statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--grid", action="store_true", help="try several M / ef_construction (slow at 1M)")
    parser.add_argument("--m", type=int, default=HnswParams.m)
    parser.add_argument("--ef-construction", type=int, default=HnswParams.ef_construction)
    args = parser.parse_args()
    chosen = HnswParams()
    builds = [(16, 100), (32, 200), (48, 200)] if args.grid else [(args.m, args.ef_construction)]
    print(f"{'size':>8} {'M':>3} {'efC':>4} {'ef':>4} {'recall@10':>9} {'median ms':>9} {'build s':>8} {'load s':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = clustered_unit_vectors(size, args.dim)
        queries = clustered_unit_vectors(args.queries, args.dim, seed=1)
        truth = exact_top_k(vectors, queries)
        for m, ef_construction in builds:
            started = time.perf_counter()
            index = VectorIndex.build(vectors, HnswParams(m, ef_construction, chosen.ef_search))
            build_s = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as folder:
                entry = IndexEntry("bench", "image", args.dim, size)
                index.save(Path(folder), entry.stem)
                started = time.perf_counter()
                index = VectorIndex.load(Path(folder), entry, chosen.ef_search)
                load_s = time.perf_counter() - started
                for ef in (16, 32, 64, 128, 256):
                    recall, latency = measure(index, queries, truth, ef)
                    print(f"{size:>8} {m:>3} {ef_construction:>4} {ef:>4} {recall:>9.4f} {latency:>9.3f} {build_s:>8.1f} {load_s:>7.2f}")
                del index
    print(f"chosen: M={chosen.m} ef_construction={chosen.ef_construction} ef_search={chosen.ef_search}")


if __name__ == "__main__":
    main()
