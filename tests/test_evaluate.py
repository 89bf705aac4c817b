"""core.evaluate on real photos with the tiny models: numbers checked by hand, held-out sampling, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.quality import evaluate
from core.build_index import build_index
from core.catalog import from_folder
from core.quality.evaluate import evaluate_index
from core.quality.holdout import held_out_mask
from core.models import CLIP_KEY, MULTILINGUAL_KEY, get_encoder

from .models_env import add_local_model, clip_descriptor, copy_hub_models, models_dir_set


def test_numbers_match_a_hand_computation(fashion_index, engine):
    report = evaluate_index(fashion_index, CLIP_KEY, label_column="subCategory", queries=10_000, val_fraction=1.0)
    items = engine.reader.items
    assert items["id"].is_unique and report.queries == report.products == len(items)
    texts = get_encoder(CLIP_KEY).encode_texts(items["caption"].tolist())
    images = np.asarray(engine.reader.image_vectors)
    ranks = []
    for row, text in enumerate(texts):
        scores = images @ text
        ranks.append(int((scores >= scores[row]).sum()))
    ranks = np.array(ranks)
    for k in (1, 5, 10):
        assert report.recall[k] == pytest.approx(np.mean(ranks <= k))
        assert report.chance_recall[k] == pytest.approx(k / len(items))
    assert report.mrr == pytest.approx(np.mean(1.0 / ranks))

    labels = [json.loads(m).get("subCategory", "") for m in items["metadata"]]
    precisions, chances = [], []
    for row in range(len(items)):
        scores = images @ images[row]
        scores[row] = -np.inf
        nearest = np.argsort(-scores)[:10]
        precisions.append(np.mean([labels[other] == labels[row] for other in nearest]))
        chances.append((labels.count(labels[row]) - 1) / (len(items) - 1))
    assert report.label_queries == len(items)
    assert report.precision_at_10 == pytest.approx(np.mean(precisions))
    assert report.chance_precision_at_10 == pytest.approx(np.mean(chances))


def test_queries_come_from_held_out_products_with_a_fixed_seed(fashion_index, engine):
    held_out = int(held_out_mask(engine.reader.items["id"], 0.2).sum())
    assert evaluate_index(fashion_index, queries=10_000, val_fraction=0.2).queries == held_out
    few = evaluate_index(fashion_index, queries=5, val_fraction=0.2, seed=7)
    assert few.queries == 5
    assert few == evaluate_index(fashion_index, queries=5, val_fraction=0.2, seed=7)


def test_cli_prints_the_table_and_json(fashion_index, capsys):
    assert evaluate.main(["--index", str(fashion_index), "--label-column", "masterCategory", "--val-fraction", "0.5"]) == 0
    table = capsys.readouterr().out
    assert "Recall@10" in table and "MRR" in table and "chance" in table and "precision@10 by masterCategory" in table
    assert evaluate.main(["--index", str(fashion_index), "--model", MULTILINGUAL_KEY, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == MULTILINGUAL_KEY and report["image_tower"] == CLIP_KEY and set(report["recall"]) == {"1", "5", "10"}


@pytest.fixture(scope="module")
def uncaptioned_index(tiny_models, fashion_dir, tmp_path_factory):
    images = tmp_path_factory.mktemp("uncaptioned") / "images"
    images.mkdir()
    for path in sorted((fashion_dir / "images").glob("*.jpg"))[:6]:
        shutil.copy(path, images / path.name)
    out = images.parent / "index"
    build_index(from_folder(images), out, progress=False)
    return out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label-column", "articleType"], "Label column 'articleType' is not in the index's metadata; available columns: baseColour"),
        (["--model", "clip-huge"], "Unknown model 'clip-huge'"),
        (["--queries", "0"], "--queries must be at least 1"),
        (["--val-fraction", "0.0001"], "No held-out product"),
    ],
)
def test_bad_input_exits_2(fashion_index, capsys, args, message):
    assert evaluate.main(["--index", str(fashion_index), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_an_index_without_captions_exits_2(uncaptioned_index, capsys):
    assert evaluate.main(["--index", str(uncaptioned_index)]) == 2
    assert "has no captions" in capsys.readouterr().err


def test_a_folder_that_is_not_an_index_exits_2(tmp_path, capsys):
    assert evaluate.main(["--index", str(tmp_path)]) == 2
    assert "not a Vitrine index" in capsys.readouterr().err


def test_a_model_with_another_image_tower_exits_2(fashion_index, tiny_models, tmp_path, capsys):
    with models_dir_set(copy_hub_models(tiny_models, tmp_path / "models")) as root:
        add_local_model(root, "shop-clip", CLIP_KEY, clip_descriptor())
        assert evaluate.main(["--index", str(fashion_index), "--model", "shop-clip"]) == 2
    assert "reads images with 'shop-clip'" in capsys.readouterr().err


def test_a_model_fine_tuned_on_some_queries_gets_a_note(fashion_index, tiny_models, tmp_path):
    descriptor = {"base": MULTILINGUAL_KEY, "image_tower": CLIP_KEY, "encodes_images": False, "val_fraction": 0.05}
    with models_dir_set(copy_hub_models(tiny_models, tmp_path / "models")) as root:
        add_local_model(root, "shop-german", MULTILINGUAL_KEY, descriptor)
        report = evaluate_index(fashion_index, "shop-german", val_fraction=0.1)
        assert evaluate_index(fashion_index, "shop-german", val_fraction=0.05).notes == []
    assert "fine-tuned with --val-fraction 0.05" in report.notes[0]
