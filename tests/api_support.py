"""A real `python -m core.api` process on a free loopback port, and plain-HTTP helpers to query it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.test_cli import ROOT

START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def wait_until_healthy(url: str, server: subprocess.Popen, log_path: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll /health (bounded): 503 while the models warm up, 200 once they are."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with {server.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if call(f"{url}/health", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not get healthy within {timeout_s} s:\n{log_path.read_text(errors='replace')}")


@contextmanager
def running_api(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`python -m core.api ARGS --port FREE`, healthy; yields its base URL and stops it after."""
    port = free_port()
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "core.api", *args, "--port", str(port)],
            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, log_path)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
