"""Ray is an optional install: the base CLI works without it and says how to get it when asked for.

These tests do not need Ray, so they run (and guard the message) on a machine without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from core import build_index as cli
from tests.test_cli import ROOT

WITHOUT_RAY = textwrap.dedent(
    """
    import sys
    sys.modules["ray"] = None  # what an interpreter without ray installed sees: import ray fails
    from core.build_index import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_engine_ray_without_ray_exits_2_and_says_how_to_install_it(fashion_dir, tmp_path):
    out = tmp_path / "idx"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, "--images", str(fashion_dir / "images"), "--out", str(out),
         "--limit", "4", "--engine", "ray"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --engine ray needs Ray Data")
    assert "pip install -r requirements-ray.txt" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())


def test_the_local_engine_never_imports_ray(tiny_models, fashion_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, "--images", str(fashion_dir / "images"), "--out", str(tmp_path / "idx"),
         "--limit", "4", "--models", "clip-ViT-B-32"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "VITRINE_MODELS_DIR": str(tiny_models)},
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Indexed 4 images" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray-address", "auto"], "need --engine ray"),
        (["--ray-concurrency", "2"], "need --engine ray"),
        (["--engine", "ray", "--workers", "2"], "--workers is for the local engine"),
        (["--engine", "ray", "--ray-concurrency", "0"], "must be at least 1"),
        (["--engine", "spark"], "invalid choice"),
    ],
)
def test_engine_options_that_do_not_go_together(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--out", "x", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
