"""Racing builds: one build per output folder at a time, whatever its arguments; folder swaps that
never collide; reader workers that die with their builder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.build_index import build_index
from core.catalog import Catalog
from core.pipeline import BuildError

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """Read when a test runs: the tiny_models fixture sets the models folder first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _wait_for(condition, what: str, limit_s: float = 180.0):
    """Poll until `condition()` is truthy (bounded); the value it returned."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _builder(fashion_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "core.build_index", "--images", str(fashion_dir / "images"),
            "--captions", str(fashion_dir / "products.csv"), "--out", str(out), *extra]


def _three_photos(fashion_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "three"
    folder.mkdir()
    for source in sorted((fashion_dir / "images").glob("*.jpg"))[:3]:
        shutil.copy(source, folder / source.name)
    return folder


def _lock_holder(out: Path) -> dict:
    try:
        return json.loads((out.parent / f".{out.name}.lock").read_text())
    except (OSError, ValueError):
        return {}


def test_a_build_with_other_arguments_is_refused_in_the_same_process(tiny_models, fashion_catalog, tmp_path):
    """Two app sessions: the second build of one folder is refused even with another batch size."""
    catalog = Catalog("fashion", "test", fashion_catalog.items[:16], [])
    refusals = []

    def meanwhile(stage, done, total):
        if not refusals:
            with pytest.raises(BuildError, match="Another build") as caught:
                build_index(catalog, tmp_path / "idx", batch_size=4, limit=12, progress=False)
            refusals.append(str(caught.value))

    build_index(catalog, tmp_path / "idx", batch_size=8, progress=False, on_progress=meanwhile)
    assert f"pid {os.getpid()}" in refusals[0] and "batch size 8" in refusals[0]


def test_a_second_build_of_the_same_out_is_refused_naming_the_first(tiny_models, fashion_dir, tmp_path):
    out = tmp_path / "index_data" / "shop"
    first = subprocess.Popen(_builder(fashion_dir, out, "--limit", "9000", "--workers", "0", "--batch-size", "16"),
                             cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _lock_holder(out).get("pid") == first.pid, "the first build to take its lock")
        second = subprocess.run(  # another catalog, small and quick to load: other arguments, same --out
            [sys.executable, "-m", "core.build_index", "--images", str(_three_photos(fashion_dir, tmp_path)),
             "--out", str(out), "--batch-size", "8"],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
        )
        assert first.poll() is None, "the first build ended before the second could be refused"
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert f"Another build of {out} is running (pid {first.pid}, started " in second.stderr
    assert "--limit 9000" in second.stderr and "batch size 16" in second.stderr
    assert not out.exists()


SWAPPER = """
import sys
from pathlib import Path
from core.atomic import replace_folder
target, name = Path(sys.argv[1]), sys.argv[2]
for n in range(int(sys.argv[3])):
    staging = target.parent / f"staging-{name}"
    staging.mkdir()
    (staging / "marker").write_text(f"{name} {n}")
    replace_folder(staging, target)
"""


def test_two_processes_swapping_one_folder_never_collide(tmp_path):
    target = tmp_path / "index"
    swappers = [
        subprocess.Popen([sys.executable, "-c", SWAPPER, str(target), name, "150"], cwd=ROOT, env=_env(),
                         stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    seen = missing = 0  # once the first swap is done, a reader must always find a complete folder
    while any(swapper.poll() is None for swapper in swappers):
        present = (target / "marker").exists()
        seen |= present
        missing += seen and not present
    errors = [swapper.communicate()[1] for swapper in swappers]
    assert [swapper.returncode for swapper in swappers] == [0, 0], errors
    assert (target / "marker").read_text() in ("a 149", "b 149")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index"]  # no old or staging folder left
    if sys.platform.startswith("linux"):
        assert missing == 0  # exchanged in one step: a reader never sees an empty or half folder


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc to find the workers")
def test_a_sigkilled_builder_leaves_no_reader_worker(tiny_models, fashion_dir, tmp_path):
    out = tmp_path / "shop"
    build = subprocess.Popen(_builder(fashion_dir, out, "--limit", "9000", "--workers", "2", "--batch-size", "16"),
                             cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = _wait_for(lambda: _children(build.pid) if len(_children(build.pid)) >= 2 else None,
                            "the build's two reader workers")
        _wait_for(lambda: any(out.parent.glob(f".{out.name}.build-*/shards/*")) or build.poll() is not None,
                  "the first finished shard")  # the workers are busy reading ahead
        assert build.poll() is None, "the build ended before it could be killed"
    finally:
        build.kill()
        build.wait(timeout=60)
    try:
        _wait_for(lambda: not any(_alive(pid) for pid in workers), "the reader workers to exit", limit_s=60)
    finally:  # a failed test must not leave them running either
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
