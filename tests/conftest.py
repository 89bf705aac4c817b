"""Session fixtures: tiny random models in the hub layouts, and an index over real photos.

Also the one rule for missing prerequisites (the shared photos, Chromium, Ray): a test that
needs one skips with the reason, unless VITRINE_REQUIRE_ALL_TESTS=1 (set by .ci/run), where
it fails instead, so that a CI machine without them cannot pass by skipping.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from core import settings
from core import models
from core.build_index import build_index
from core.catalog import Catalog, from_folder
from core.random_models import make_models

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-products"
INDEX_SIZE = 300
RAY_MISSING = "ray[data] is not installed: pip install -r requirements-ray.txt"
REQUIRE_ALL_ENV = "VITRINE_REQUIRE_ALL_TESTS"
REQUIRE_ALL = os.environ.get(REQUIRE_ALL_ENV, "") == "1"


def missing(reason: str) -> NoReturn:
    """A prerequisite is absent: skip with the reason, or fail where every test must run."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1: every test must run here)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str, reason: str) -> ModuleType:
    """importorskip that obeys the same rule as missing()."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Both model keys as tiny random models; VITRINE_MODELS_DIR points at them for the session."""
    root = make_models(tmp_path_factory.mktemp("models"), "tiny")
    previous = os.environ.get(settings.MODELS_DIR_ENV)
    os.environ[settings.MODELS_DIR_ENV] = str(root)
    models.clear_cache()
    yield root
    models.clear_cache()
    if previous is None:
        os.environ.pop(settings.MODELS_DIR_ENV, None)
    else:
        os.environ[settings.MODELS_DIR_ENV] = previous


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (DATA_DIR / "products.csv").is_file():
        missing(f"shared fashion-products data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def fashion_catalog(fashion_dir) -> Catalog:
    return from_folder(fashion_dir / "images", fashion_dir / "products.csv", name="fashion")


@pytest.fixture(scope="session")
def fashion_index(tiny_models, fashion_catalog, tmp_path_factory) -> Path:
    """An index folder over the first INDEX_SIZE real products, built with both tiny models."""
    out = tmp_path_factory.mktemp("index") / "fashion"
    build_index(fashion_catalog, out, limit=INDEX_SIZE, progress=False)
    return out


@pytest.fixture(scope="session")
def ray_cluster(tiny_models) -> str:
    """One local Ray (2 CPUs) for the whole session; its address lets a subprocess join it."""
    ray = need_module("ray", RAY_MISSING)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def engine(fashion_index):
    from core.search import SearchEngine

    return SearchEngine(fashion_index)
