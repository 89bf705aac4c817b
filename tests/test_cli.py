"""The CLIs as a user runs them: build on real photos, then search; URIs reach the catalog; bad input exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest

from core import build_index, cli, devices, fastpath, search, settings
from core.models import CLIP_KEY
from core.quality import evaluate
from core.training import finetune

ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, env_models: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VITRINE_MODELS_DIR": str(env_models), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_build_then_search_as_a_new_user_would(tiny_models, fashion_dir, tmp_path):
    out = tmp_path / "index_data" / "fashion"
    built = run_module(
        "core.build_index", "--images", str(fashion_dir / "images"), "--captions", str(fashion_dir / "products.csv"),
        "--out", str(out), "--limit", "60", env_models=tiny_models,
    )
    assert built.returncode == 0, built.stderr
    assert "Indexed 60 images" in built.stdout and (out / "manifest.json").is_file()
    found = run_module("core.search", "--index", str(out), "--text", "blue jeans", "-k", "4", "--json", env_models=tiny_models)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 4 and {"id", "score", "caption"} <= set(hits[0])
    missing = run_module("core.search", "--index", str(out), "--image", str(tmp_path / "nope.jpg"), env_models=tiny_models)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "not found" in missing.stderr


def test_search_prints_a_readable_list(fashion_index, capsys):
    assert search.main(["--index", str(fashion_index), "--text", "watch", "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].lstrip().startswith("1.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "  "], "Type a description"),
        (["--text", "shirt", "--model", "gpt-5"], "Unknown model"),
        (["--text", "shirt", "-k", "0"], "K must be"),
        (["--text", "shirt", "--blend", "2"], "blend weight"),
    ],
)
def test_search_bad_input_exits_2(fashion_index, capsys, args, message):
    assert search.main(["--index", str(fashion_index), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_search_unreadable_image_exits_2(fashion_index, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    assert search.main(["--index", str(fashion_index), "--image", str(bad)]) == 2
    assert "damaged or incomplete" in capsys.readouterr().err


def test_search_refuses_a_folder_that_is_not_an_index(tmp_path, capsys, tiny_models):
    assert search.main(["--index", str(tmp_path), "--text", "shirt"]) == 2
    assert "not a Vitrine index" in capsys.readouterr().err


def test_search_refuses_an_index_of_another_model(fashion_index, tmp_path, capsys, monkeypatch):
    from core import models
    from core.random_models import make_models

    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(make_models(tmp_path / "small", "small")))
    models.clear_cache()
    try:
        assert search.main(["--index", str(fashion_index), "--text", "shirt"]) == 2
        assert "built by another model" in capsys.readouterr().err
    finally:
        models.clear_cache()


def test_build_reports_bad_rows_and_keeps_going(tiny_models, fashion_dir, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((fashion_dir / "images").glob("*.jpg"))[:5]:
        (images / path.name).write_bytes(path.read_bytes())
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (images / "notes.png").write_text("this is text")
    assert build_index.main(["--images", str(images), "--out", str(tmp_path / "idx")]) == 0
    out = capsys.readouterr().out
    assert "Indexed 5 images" in out and "Skipped 2 rows" in out and "damaged or incomplete" in out
    report = (tmp_path / "idx" / "skipped.csv").read_text()
    assert "broken" in report and "notes" in report


def test_build_bad_catalog_exits_2(tiny_models, tmp_path, capsys):
    assert build_index.main(["--images", str(tmp_path / "missing"), "--out", str(tmp_path / "idx")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "idx").exists()


@pytest.fixture
def bucket(fashion_dir):
    """memory://<unique>/: three shared photos and their captions, a store with no local path (like s3://)."""
    store = fsspec.filesystem("memory")
    root = uuid.uuid4().hex
    photos = sorted((fashion_dir / "images").glob("*.jpg"))[:3]
    for path in photos:
        store.pipe(f"/{root}/images/{path.name}", path.read_bytes())
    store.pipe(f"/{root}/products.csv", ("id,productDisplayName\n" + "".join(f"{p.stem},product {p.stem}\n" for p in photos)).encode())
    yield f"memory://{root}"
    store.rm(f"/{root}", recursive=True)


URIS = ["--images", "s3://shop/photos", "--captions", "gs://shop/products.csv", "--parquet", "s3://shop/rows/"]


@pytest.mark.parametrize("args", [
    lambda: build_index.parse_args([*URIS, "--out", "index_data/shop"]),
    lambda: finetune.parse_args([*URIS, "--base", CLIP_KEY]),
])
def test_catalog_flags_keep_uris_whole(args):
    parsed = args()
    assert (parsed.images, parsed.captions, parsed.parquet) == ("s3://shop/photos", "gs://shop/products.csv", ["s3://shop/rows/"])


def test_finetune_reads_a_catalog_behind_a_uri(bucket, tmp_path, capsys):
    """finetune's flags were type=Path, which turned memory://x into memory:/x, a missing local folder."""
    out = tmp_path / "shop-clip"
    assert finetune.main(["--images", f"{bucket}/images", "--captions", f"{bucket}/products.csv", "--base", "clip-huge",
                          "--out", str(out)]) == 2
    assert "Unknown model 'clip-huge'" in capsys.readouterr().err  # the catalog loaded; only the base was wrong
    assert finetune.main(["--images", f"{bucket}/images", "--base", CLIP_KEY, "--out", str(out), "--quiet"]) == 2
    assert f"The catalog {bucket}/images has no captions" in capsys.readouterr().err
    assert not out.exists()


def test_the_fast_path_check_reads_a_catalog_behind_a_uri(bucket, capsys):
    assert fastpath.main(["check", "--images", f"{bucket}/images", "--captions", f"{bucket}/products.csv",
                          "--models", "clip-huge"]) == 2
    assert "Unknown model 'clip-huge'" in capsys.readouterr().err


@pytest.mark.skipif(devices.device_available("cuda"), reason="this machine has CUDA")
def test_a_missing_device_exits_2(fashion_index, tmp_path, capsys):
    assert evaluate.main(["--index", str(fashion_index), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda: no such device")


def test_ctrl_c_ends_with_the_next_step_when_the_command_has_one(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert cli.run(interrupted, on_interrupt="run it again to continue.") == cli.INTERRUPTED
    assert capsys.readouterr().err == "\ninterrupted: run it again to continue.\n"
    with pytest.raises(KeyboardInterrupt):
        cli.run(interrupted)
