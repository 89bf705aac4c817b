"""core.finetune with the tiny models on real photos: it learns, resumes exactly, and its output is a model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from core import settings
from core.training import finetune as finetune_cli
from core import models
from core.build_index import build_index
from core.training.checkpoint import CHECKPOINT_DIR, WEIGHTS_FILE
from core.quality.evaluate import evaluate_index
from core.training.finetune import REPORT_FILE, FinetuneConfig, finetune
from core.index import IndexMismatchError
from core.models import CLIP_KEY, MULTILINGUAL_KEY
from core.quality.metrics import recall_at, target_ranks
from core.search import SearchEngine
from core.training.pairs import decode_images, training_pairs

from .app_support import ROOT
from .models_env import copy_hub_models, models_dir_set

# Sizes chosen so the tiny random CLIP reliably learns within seconds (see the gain test).
FAST = dict(batch_size=32, lr=1e-3, val_fraction=0.25, limit=400, seed=0)
QUICK = dict(batch_size=16, lr=3e-3, val_fraction=0.25, limit=160, seed=0)


def quiet(_line: str) -> None:
    """Fine-tuning's progress lines are not needed in test output."""


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models train several times faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models_root(tiny_models, tmp_path_factory):
    with models_dir_set(copy_hub_models(tiny_models, tmp_path_factory.mktemp("finetune") / "models")) as root:
        yield root


@pytest.fixture(scope="module")
def clip_run(models_root, fashion_catalog):
    config = FinetuneConfig(base=CLIP_KEY, out=models_root / "shop-clip", epochs=10, **FAST)
    return finetune(fashion_catalog, config, progress=False, log=quiet)


@pytest.fixture(scope="module")
def german_config(models_root):
    return FinetuneConfig(base=MULTILINGUAL_KEY, out=models_root / "shop-german", epochs=5, **{**FAST, "lr": 3e-3})


@pytest.fixture(scope="module")
def german_run(german_config, fashion_catalog):
    return finetune(fashion_catalog, german_config, progress=False, log=quiet)


def test_a_short_fine_tune_lowers_held_out_loss_and_raises_recall(clip_run):
    before, after = clip_run.before, clip_run.after
    assert clip_run.epochs == 10 and len(clip_run.history) == 10 and clip_run.stopped == "finished 10 epochs"
    assert after["loss"] < before["loss"] - 0.5
    assert after["recall_at_10"] >= before["recall_at_10"] + 0.15
    assert after["chance_recall_at_10"] == pytest.approx(10 / clip_run.held_out_pairs)
    assert clip_run.train_pairs + clip_run.held_out_pairs == FAST["limit"]
    assert abs(clip_run.temperature - 0.07) > 1e-5  # learned unless fixed


def test_a_fixed_temperature_stays_fixed(fashion_catalog, models_root):
    config = FinetuneConfig(base=MULTILINGUAL_KEY, out=models_root / "fixed", epochs=1, temperature=0.05, **QUICK)
    report = finetune(fashion_catalog, config, progress=False, log=quiet)
    assert report.temperature == pytest.approx(0.05) and report.history[0]["temperature"] == pytest.approx(0.05)


def test_the_output_is_a_model_in_the_base_layout_holding_the_best_weights(clip_run, models_root, fashion_catalog):
    out = models_root / "shop-clip"
    assert json.loads((out / "modules.json").read_text()) == json.loads((models_root / CLIP_KEY / "modules.json").read_text())
    assert (out / "0_CLIPModel" / "model.safetensors").is_file()
    descriptor = json.loads((out / "vitrine.json").read_text())
    assert descriptor["base"] == CLIP_KEY and descriptor["image_tower"] == "self" and descriptor["encodes_images"]
    assert descriptor["val_fraction"] == FAST["val_fraction"]
    assert json.loads((out / REPORT_FILE).read_text())["after"] == clip_run.after

    spec = models.get_spec("shop-clip")
    assert spec.image_tower == "shop-clip" and "shop-clip" in [s.key for s in models.available_models()]
    encoder = models.get_encoder("shop-clip", "cpu")
    pairs = training_pairs(fashion_catalog, FAST["val_fraction"], FAST["limit"], progress=False).held_out
    texts = encoder.encode_texts([pair.caption for pair in pairs])
    images = encoder.encode_images(decode_images(pairs))
    products = np.arange(len(pairs))
    assert recall_at(target_ranks(texts, images, products, products), 10) == pytest.approx(clip_run.after["recall_at_10"])
    assert not np.allclose(images, models.get_encoder(CLIP_KEY, "cpu").encode_images(decode_images(pairs)))


def test_a_fine_tuned_clip_indexes_with_its_own_image_tower(clip_run, fashion_catalog, tmp_path):
    out = tmp_path / "index"
    build_index(fashion_catalog, out, ["shop-clip"], limit=60, progress=False)
    engine = SearchEngine(out)
    assert engine.reader.image_model == "shop-clip" and engine.models == ["shop-clip"]
    caption = engine.reader.items["caption"].iloc[3]
    result = engine.search(text=caption, model="shop-clip", k=5)
    assert len(result.hits) == 5 and result.model == "shop-clip"
    with pytest.raises(IndexMismatchError, match="reads images with 'clip-ViT-B-32'"):
        engine.search(text=caption, model=CLIP_KEY)
    assert evaluate_index(out, "shop-clip", val_fraction=1.0).queries == 60


def test_the_multilingual_text_encoder_learns_against_frozen_clip_image_vectors(german_run, models_root, fashion_catalog, tmp_path):
    assert german_run.image_tower == CLIP_KEY
    assert german_run.after["loss"] < german_run.before["loss"]
    assert german_run.after["recall_at_10"] >= german_run.before["recall_at_10"] + 0.1
    descriptor = json.loads((models_root / "shop-german" / "vitrine.json").read_text())
    assert descriptor["image_tower"] == CLIP_KEY and descriptor["encodes_images"] is False
    assert (models_root / "shop-german" / "2_Dense").is_dir()

    out = tmp_path / "index"
    build_index(fashion_catalog, out, [CLIP_KEY, "shop-german"], limit=60, progress=False)
    engine = SearchEngine(out)
    result = engine.search(text="rotes Kleid für den Sommer", model="shop-german", k=4)
    assert len(result.hits) == 4 and engine.reader.caption_index("shop-german") is not None
    image = [Image.new("RGB", (40, 40), "red")]
    np.testing.assert_allclose(
        models.get_encoder("shop-german", "cpu").encode_images(image),
        models.get_encoder(CLIP_KEY, "cpu").encode_images(image),
        atol=1e-6,
    )


# `python -m core.finetune ARGS`, SIGKILLed (with its process group, as a power cut would) inside the
# folder swap of the Nth checkpoint: the previous checkpoint moved aside, the new one not yet in place.
# Where Linux exchanges two folders in one step there is no such moment; the swap is made to take the
# two-rename path other systems take, which is the one a kill can cut short.
KILLED_FINETUNE = """
import os, runpy, signal, sys
import core.atomic
core.atomic._exchange = lambda first, second: False

kill_at, args = int(sys.argv[1]), sys.argv[2:]
real_replace, swaps = os.replace, []

def replace(source, target):
    if str(source).endswith(".staging"):
        swaps.append(target)
        if len(swaps) == kill_at:
            os.killpg(0, signal.SIGKILL)
    real_replace(source, target)

os.replace = replace
sys.argv = ["core.finetune", *args]
runpy.run_module("core.finetune", run_name="__main__", alter_sys=True)
"""


def _same_training(first, second) -> None:
    """Two runs ended with identical weights, optimizer-driven history and saved model."""
    strip = [{k: v for k, v in entry.items() if k != "seconds"} for entry in first.history]
    assert strip == [{k: v for k, v in entry.items() if k != "seconds"} for entry in second.history]
    a = load_file(str(Path(first.out) / CHECKPOINT_DIR / WEIGHTS_FILE))
    b = load_file(str(Path(second.out) / CHECKPOINT_DIR / WEIGHTS_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_stopped_and_killed_runs_resume_to_the_uninterrupted_result(
    german_run, german_config, fashion_catalog, fashion_dir, models_root
):
    config = replace(german_config, out=models_root / "resumed", epochs=2)
    assert finetune(fashion_catalog, config, progress=False, log=quiet).epochs == 2

    resumed = finetune(fashion_catalog, replace(config, epochs=german_config.epochs, resume=True), progress=False, log=quiet)
    _same_training(german_run, resumed)

    killed_out = models_root / "killed"
    cli_args = [*catalog_args(fashion_dir, FAST["limit"]), "--base", MULTILINGUAL_KEY, "--out", str(killed_out),
                "--epochs", str(german_config.epochs), "--batch-size", str(FAST["batch_size"]), "--lr", "3e-3",
                "--val-fraction", str(FAST["val_fraction"]), "--seed", str(FAST["seed"]), "--quiet"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_FINETUNE, "4", *cli_args],  # swaps: before training, epochs 1, 2, 3
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True, capture_output=True, text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr
    assert not (killed_out / CHECKPOINT_DIR).exists(), "the kill must land between the two renames of the swap"
    longer = replace(german_config, out=killed_out, resume=True)
    resumed = finetune(fashion_catalog, longer, progress=False, log=quiet)
    assert resumed.epochs == german_run.epochs and resumed.before == german_run.before
    _same_training(german_run, resumed)
    expected = SentenceTransformer(german_run.out).encode(["rotes Kleid"])
    for out in (config.out, killed_out):
        assert np.array_equal(SentenceTransformer(str(out)).encode(["rotes Kleid"]), expected)


def test_no_improvement_stops_early_and_keeps_the_base_weights(fashion_catalog, models_root):
    config = FinetuneConfig(base=MULTILINGUAL_KEY, out=models_root / "stalled", epochs=4, patience=1, **{**QUICK, "lr": 1e-12})
    report = finetune(fashion_catalog, config, progress=False, log=quiet)
    assert report.epochs == 1 and report.best_epoch == 0 and report.stopped.startswith("stopped early")
    assert report.after == {k: report.before[k] for k in report.after}
    assert "base model's weights" in report.describe()
    texts = ["a blue shirt", "rotes Kleid"]
    np.testing.assert_allclose(
        models.get_encoder("stalled", "cpu").encode_texts(texts), models.get_encoder(MULTILINGUAL_KEY, "cpu").encode_texts(texts), atol=1e-6
    )


def test_the_time_budget_ends_training_at_an_epoch_boundary(fashion_catalog, models_root):
    config = FinetuneConfig(base=MULTILINGUAL_KEY, out=models_root / "budget", epochs=5, max_seconds=0.001, **QUICK)
    report = finetune(fashion_catalog, config, progress=False, log=quiet)
    assert report.epochs == 1 and "time budget" in report.stopped


def test_overwrite_starts_an_earlier_run_again(fashion_catalog, models_root):
    config = FinetuneConfig(base=MULTILINGUAL_KEY, out=models_root / "again", epochs=1, **QUICK)
    first = finetune(fashion_catalog, config, progress=False, log=quiet)
    (config.out / "stale.txt").write_text("from the first run")
    second = finetune(fashion_catalog, replace(config, overwrite=True), progress=False, log=quiet)
    assert second.history[0]["loss"] == first.history[0]["loss"] and not (config.out / "stale.txt").exists()


def test_a_frozen_image_tower_keeps_the_base_image_space(fashion_catalog, models_root):
    config = FinetuneConfig(base=CLIP_KEY, out=models_root / "frozen", epochs=1, freeze_image_tower=True, **QUICK)
    report = finetune(fashion_catalog, config, progress=False, log=quiet)
    assert report.image_tower == CLIP_KEY and models.get_spec("frozen").image_tower == CLIP_KEY
    image = [Image.new("RGB", (40, 40), "navy")]
    own_tower = SentenceTransformer(str(config.out)).encode(image, normalize_embeddings=True)
    np.testing.assert_allclose(own_tower, models.get_encoder(CLIP_KEY, "cpu").encode_images(image), atol=1e-6)
    texts = ["a blue shirt"]
    assert not np.allclose(models.get_encoder("frozen", "cpu").encode_texts(texts), models.get_encoder(CLIP_KEY, "cpu").encode_texts(texts))


def catalog_args(fashion_dir, limit: int = 160) -> list[str]:
    return ["--images", str(fashion_dir / "images"), "--captions", str(fashion_dir / "products.csv"), "--limit", str(limit)]


def test_cli_saves_beside_the_other_models_by_default(models_root, fashion_dir, capsys):
    args = [*catalog_args(fashion_dir), "--base", MULTILINGUAL_KEY, "--epochs", "1", "--batch-size", "16", "--quiet"]
    assert finetune_cli.main(args) == 0
    out = capsys.readouterr().out
    key = f"{MULTILINGUAL_KEY}-finetuned"
    assert "text->image R@10" in out and f"--models {key}" in out
    assert key in [spec.key for spec in models.available_models()]


@pytest.fixture
def images_only(fashion_dir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((fashion_dir / "images").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base", "clip-huge"], "Unknown model 'clip-huge'"),
        (["--base", CLIP_KEY, "--text-only-multilingual"], "use --freeze-image-tower"),
        (["--base", MULTILINGUAL_KEY, "--freeze-image-tower"], "no image tower of its own"),
        (["--base", CLIP_KEY, "--out", "{root}/" + MULTILINGUAL_KEY], "cannot be the key of a fine-tuned model"),
        (["--base", CLIP_KEY, "--epochs", "0"], "--epochs must be at least 1"),
        (["--base", CLIP_KEY, "--batch-size", "1"], "--batch-size must be at least 2"),
        (["--base", CLIP_KEY, "--limit", "3"], "each side needs at least 2"),
        (["--base", CLIP_KEY, "--out", "{root}/never-trained", "--resume"], "Nothing to resume"),
        (["--base", MULTILINGUAL_KEY, "--out", "{root}/shop-german"], "already exists"),
        (["--base", MULTILINGUAL_KEY, "--out", "{root}", "--overwrite"], "not one"),
        (["--base", MULTILINGUAL_KEY, "--out", "{root}/shop-german", "--resume", "--lr", "0.1"], "other settings (lr 0.003 -> 0.1"),
    ],
)
def test_bad_options_exit_2(german_run, models_root, fashion_dir, capsys, extra, message):
    args = [*catalog_args(fashion_dir, FAST["limit"]), "--lr", "3e-3", "--val-fraction", "0.25", "--batch-size", "32", "--quiet"]
    extra = [value.replace("{root}", str(models_root)) for value in extra]
    assert finetune_cli.main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_catalog_without_captions_exits_2_and_writes_nothing(models_root, images_only, capsys):
    assert finetune_cli.main(["--images", str(images_only), "--base", CLIP_KEY, "--out", str(models_root / "x")]) == 2
    assert "has no captions" in capsys.readouterr().err
    assert not (models_root / "x").exists()


def test_an_empty_catalog_exits_2(models_root, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert finetune_cli.main(["--images", str(tmp_path / "empty"), "--base", CLIP_KEY, "--out", str(models_root / "y")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_without_out_or_models_dir_exits_2(fashion_dir, monkeypatch, capsys):
    monkeypatch.delenv(settings.MODELS_DIR_ENV, raising=False)
    assert finetune_cli.main([*catalog_args(fashion_dir), "--base", CLIP_KEY]) == 2
    assert "Give --out" in capsys.readouterr().err
