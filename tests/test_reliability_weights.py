"""Every tower a query uses is checked against the index's recorded probes; a missing probe is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core import models, settings
from core.index import MANIFEST_FILE, IndexMismatchError
from core.models import CLIP_KEY, MULTILINGUAL_KEY
from core.random_models import make_clip
from core.search import SearchEngine


@pytest.fixture
def retrained_image_tower(tiny_models, tmp_path, monkeypatch) -> Path:
    """The same multilingual text model, but a clip-ViT-B-32 with other weights (another seed)."""
    root = tmp_path / "models"
    shutil.copytree(tiny_models / MULTILINGUAL_KEY, root / MULTILINGUAL_KEY)
    make_clip(root / CLIP_KEY, "tiny", seed=7)
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(root))
    models.clear_cache()
    yield root
    models.clear_cache()


def test_multilingual_search_refuses_an_image_tower_with_other_weights(fashion_index, retrained_image_tower):
    engine = SearchEngine(fashion_index)
    with pytest.raises(IndexMismatchError, match=f"other weights for '{CLIP_KEY}'"):
        engine.search(text="rotes Sommerkleid", model=MULTILINGUAL_KEY)


def _copy_with_manifest(fashion_index: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "fashion"
    shutil.copytree(fashion_index, folder)
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("model", [CLIP_KEY, MULTILINGUAL_KEY])
def test_a_manifest_without_a_models_block_is_refused(fashion_index, tmp_path, tiny_models, model):
    folder = _copy_with_manifest(fashion_index, tmp_path, lambda data: data.pop("models"))
    with pytest.raises(IndexMismatchError, match="records no weights probe for") as caught:
        SearchEngine(folder).search(text="red dress", model=model)
    assert "Rebuild" in str(caught.value) and MANIFEST_FILE in str(caught.value)


@pytest.mark.parametrize("missing", [CLIP_KEY, MULTILINGUAL_KEY])
def test_a_missing_probe_is_refused(fashion_index, tmp_path, tiny_models, missing):
    """The multilingual query needs both probes: its own (caption vectors) and its image tower's."""
    folder = _copy_with_manifest(fashion_index, tmp_path, lambda data: data["models"][missing].pop("probe"))
    with pytest.raises(IndexMismatchError, match=f"records no weights probe for '{missing}'"):
        SearchEngine(folder).search(text="rotes Kleid", model=MULTILINGUAL_KEY)


def test_the_recorded_weights_pass(fashion_index, tiny_models):
    """The control: the same index and models search without complaint."""
    assert SearchEngine(fashion_index).search(text="rotes Kleid", model=MULTILINGUAL_KEY, k=3).hits
