"""A real `python -m core.api` process on a free loopback port, and plain-HTTP helpers to query it."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.local_server import free_port, running
from tests.test_cli import ROOT


def call(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    """(status, JSON reply) of a GET, or of a POST when there is a body; 4xx and 5xx replies too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:  # not the API answering (Ray Serve's proxy before the app is up)
            return err.code, {"not_json": body.decode(errors="replace")}


@contextmanager
def running_api(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`python -m core.api ARGS --port FREE`, healthy; yields its base URL and stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "core.api", *args, "--port", str(port)]
    with running(command, f"{url}/health", log_path, {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}):
        yield url
