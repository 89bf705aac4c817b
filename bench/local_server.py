"""One of this project's servers as a child process on a loopback port: started, awaited, stopped.

The benches and the tests that talk to a real server (the API, `streamlit run app.py`) share it,
so each starts, waits for health and stops the same way, with its log kept for the failure message.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.setup import ROOT

POLL_S = 0.2  # between health checks while a server starts (loading models takes seconds)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    """Whether a GET of url answers 200 (a server still warming up answers 503, or not at all)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_until_healthy(health_url: str, server: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Poll health_url until it answers 200; a server that exits or stays unhealthy is a RuntimeError with its log."""
    deadline = time.monotonic() + timeout_s
    while not answers(health_url):
        if server.poll() is not None:
            raise RuntimeError(f"{health_url}: the server exited with {server.returncode}:\n{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{health_url} did not answer within {timeout_s} s:\n{log_path.read_text(errors='replace')}")
        time.sleep(POLL_S)


def stop(server: subprocess.Popen, timeout_s: float = 30) -> None:
    """Ask the server to stop; kill it if it has not within timeout_s."""
    server.terminate()
    try:
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextmanager
def running(
    command: Sequence[str], health_url: str, log_path: Path, env: Mapping[str, str] | None = None,
    start_timeout_s: float = 240, stop_timeout_s: float = 30,
) -> Iterator[subprocess.Popen]:
    """`command` run from the repository root with `env` added, healthy; stopped when the block ends."""
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            list(command), cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until_healthy(health_url, server, log_path, start_timeout_s)
        yield server
    finally:
        stop(server, stop_timeout_s)
