"""Vitrine's HTTP API (core/api_app.py) on uvicorn, or on Ray Serve (core/serve.py).

    python -m core.api --index index_data/fashion [--index DIR ...] [--host 127.0.0.1] [--port 8000]
    python -m core.api --engine ray [--ray-address auto] [--replicas N] [--max-replicas M]

It binds to this machine only unless --host says otherwise; the docs are at /docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from core import settings
from core.api_app import create_app
from core.devices import set_cpu_threads
from core.index import IndexMismatchError
from core.service import NotFound, SearchService, catalog_folders

DEFAULT_PORT = 8000
RAY_INSTALL = "pip install -r requirements-ray.txt"


def main(argv: list[str] | None = None) -> int:
    configured = settings.current()
    parser = argparse.ArgumentParser(prog="python -m core.api", description="Serve Vitrine's search over HTTP.")
    parser.add_argument(
        "--index", type=Path, action="append",
        help=f"an index folder, or a folder of them; repeatable (default {configured.index_dir})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="this process, or Ray Serve")
    parser.add_argument("--ray-address", help="Ray cluster to join (auto, host:6379); default: a local Ray")
    parser.add_argument("--replicas", type=int, default=1, help="Ray Serve: encoder replicas per model")
    parser.add_argument("--max-replicas", type=int, help="Ray Serve: let the autoscaler grow to this many")
    args = parser.parse_args(argv)
    if args.replicas < 1 or (args.max_replicas is not None and args.max_replicas < args.replicas):
        parser.error("--replicas must be at least 1, and --max-replicas at least --replicas")
    if args.engine == "local" and (args.ray_address or args.max_replicas or args.replicas != 1):
        parser.error("--ray-address, --replicas and --max-replicas need --engine ray")
    try:
        folders = catalog_folders(args.index or [configured.index_dir])
    except NotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.engine == "ray":
        return _serve_on_ray(folders, args)
    set_cpu_threads(configured.torch_threads)
    try:
        service = SearchService(folders)
    except (IndexMismatchError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0


def _serve_on_ray(folders: list[Path], args: argparse.Namespace) -> int:
    try:
        from core import serve
    except ImportError as err:
        print(f"error: --engine ray needs Ray Serve ({err}). Install it: {RAY_INSTALL}", file=sys.stderr)
        return 2
    return serve.run(folders, args.host, args.port, args.ray_address, args.replicas, args.max_replicas)


if __name__ == "__main__":
    sys.exit(main())
