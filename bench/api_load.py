"""Load on the HTTP API: 1, 4 and 16 concurrent clients on loopback, throughput and p50/p95 latency.

    python -m bench.api_load [--models full|tiny] [--engine local|ray|both] [--requests 64] [--seconds 60]

Starts `python -m core.api` (and/or `--engine ray`, on a local Ray it starts) over an index of
the first --products shared photos, waits for /health, then for each client count runs
closed-loop clients (each sends its next query when the last one is answered) over kept-alive
connections until --requests queries are answered or --seconds pass. Every query is a new text
(a number in it), so the engine's text cache never answers: each one is encoded. Full-size
random models cost what the real ones do; tiny ones show the HTTP and batching overhead.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.local_server import free_port, running
from bench.setup import DATA, DEFAULT_WORK, ROOT

WORDS = ["red", "navy", "black", "white", "green", "leather", "cotton", "summer", "winter", "sports"]
THINGS = ["dress", "shirt", "shoes", "watch", "bag", "jeans", "jacket", "sandals", "cap", "scarf"]


def prepare(work: Path, size: str, products: int) -> Path:
    """Random models of `size` and an index over the first `products` shared photos, made once."""
    from core import settings
    from core.build_index import build_index
    from core.catalog import from_folder
    from core.random_models import make_models

    models = work / f"models-{size}" if size == "tiny" else work / "models"
    if not (models / "clip-ViT-B-32" / "modules.json").is_file():
        make_models(models, size)
    os.environ[settings.MODELS_DIR_ENV] = str(models)
    index = work / f"api-index-{size}-{products}" / "fashion"
    if not (index / "manifest.json").is_file():
        build_index(from_folder(DATA / "images", DATA / "products.csv", name="fashion"), index, limit=products)
    return index


def query(n: int) -> bytes:
    text = f"{WORDS[n % 10]} {THINGS[(n // 10) % 10]} number {n}"
    return json.dumps({"text": text, "k": 10}).encode()


def run_level(port: int, clients: int, requests: int, seconds: float, first: int) -> tuple[float, list[float], int]:
    """(wall seconds, latencies in ms, failures) of `clients` closed-loop clients."""
    counter = iter(range(first, first + requests))
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            started = time.perf_counter()
            connection.request("POST", "/search", body=query(n), headers={"Content-Type": "application/json"})
            reply = connection.getresponse()
            reply.read()
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
                failures[0] += reply.status != 200
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, failures[0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def bench_engine(engine: str, index: Path, args: argparse.Namespace) -> dict[int, float]:
    port = free_port()
    command = [sys.executable, "-m", "core.api", "--index", str(index), "--port", str(port)]
    if engine == "ray":
        command += ["--engine", "ray", "--replicas", str(args.replicas)]
    log_path = args.work / f"api-load-{engine}.log"
    env = {"PYTHONPATH": str(ROOT), "VITRINE_TORCH_THREADS": str(args.threads)}
    throughput: dict[int, float] = {}
    with running(command, f"http://127.0.0.1:{port}/health", log_path, env, start_timeout_s=600, stop_timeout_s=60):
        run_level(port, 2, 8, args.seconds, first=10**6)  # warm connections and code paths
        first = 0
        for clients in args.clients:
            wall, latencies, failures = run_level(port, clients, args.requests, args.seconds, first)
            first += args.requests
            throughput[clients] = len(latencies) / wall
            print(
                f"{engine:>5} {clients:>3} clients: {len(latencies):>4} queries in {wall:6.1f} s, "
                f"{throughput[clients]:6.1f} queries/s, p50 {statistics.median(latencies):7.1f} ms, "
                f"p95 {percentile(latencies, 0.95):7.1f} ms, failed {failures}",
                flush=True,
            )
    if 1 in throughput and max(args.clients) in throughput:
        top = max(args.clients)
        print(f"{engine:>5} throughput at {top} clients / 1 client: {throughput[top] / throughput[1]:.2f}x", flush=True)
    return throughput


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("full", "tiny"), default="full")
    parser.add_argument("--engine", choices=("local", "ray", "both"), default="local")
    parser.add_argument("--products", type=int, default=300, help="photos in the index")
    parser.add_argument("--clients", type=lambda text: [int(n) for n in text.split(",")], default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=64, help="queries per client count (at most)")
    parser.add_argument("--seconds", type=float, default=60, help="time per client count (at most)")
    parser.add_argument("--threads", type=int, default=1, help="VITRINE_TORCH_THREADS of the server")
    parser.add_argument("--replicas", type=int, default=1, help="encoder replicas per model (--engine ray)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    index = prepare(args.work, args.models, args.products)
    print(
        f"{args.models} models, {args.products} photos, text queries (k=10), torch threads {args.threads}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for engine in (("local", "ray") if args.engine == "both" else (args.engine,)):
        bench_engine(engine, index, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
