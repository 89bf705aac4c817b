"""hnswlib index files: build, atomic save, checked load, HNSW against the exact oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.index import (
    FORMAT_VERSION,
    HnswParams,
    IndexEntry,
    IndexMismatchError,
    Manifest,
    VectorIndex,
    read_manifest,
    write_manifest,
)
from core.atomic import atomic_path, replace_folder


def clustered_vectors(n: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Unit vectors around cluster centres: harder for HNSW than uniform noise, like real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall_at_k(index: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    approx, _ = index.hnsw_search(queries, k)
    exact, _ = index.exact_search(queries, k)
    return np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)])


def test_hnsw_agrees_with_exact_search():
    vectors = clustered_vectors(6000, 64)  # heavy noise: far harder than real embeddings, so a wide beam
    index = VectorIndex.build(vectors, HnswParams(ef_search=256))
    queries = clustered_vectors(200, 64, seed=1)
    assert recall_at_k(index, queries) >= 0.99


def test_exact_search_is_sorted_and_scores_are_cosines():
    vectors = clustered_vectors(500, 16)
    index = VectorIndex.build(vectors)
    labels, scores = index.exact_search(vectors[:3], 5)
    assert labels[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)
    np.testing.assert_allclose(scores, np.take_along_axis(vectors[:3] @ vectors.T, labels, axis=1), rtol=1e-5)


def test_k_larger_than_the_index_is_clamped():
    index = VectorIndex.build(clustered_vectors(7, 8))
    for search in (index.exact_search, index.hnsw_search):
        labels, _ = search(clustered_vectors(1, 8), 50)
        assert sorted(labels[0].tolist()) == list(range(7))


def test_save_load_round_trip(tmp_path):
    vectors = clustered_vectors(3000, 32)
    index = VectorIndex.build(vectors)
    entry = IndexEntry(encoder="enc", modality="image", dim=32, count=3000)
    index.save(tmp_path, entry.stem)
    loaded = VectorIndex.load(tmp_path, entry, ef_search=HnswParams().ef_search)
    queries = clustered_vectors(20, 32, seed=3)
    np.testing.assert_array_equal(loaded.hnsw_search(queries, 10)[0], index.hnsw_search(queries, 10)[0])
    assert isinstance(loaded.vectors, np.memmap)
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_refuses_a_shape_mismatch(tmp_path):
    VectorIndex.build(clustered_vectors(100, 32)).save(tmp_path, "image__enc")
    with pytest.raises(IndexMismatchError, match="manifest says 100x512"):
        VectorIndex.load(tmp_path, IndexEntry("enc", "image", 512, 100), 64)
    with pytest.raises(IndexMismatchError, match="missing"):
        VectorIndex.load(tmp_path, IndexEntry("other", "image", 32, 100), 64)


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def make_manifest() -> Manifest:
    return Manifest(
        catalog={"name": "x", "items": 1},
        hnsw=HnswParams(),
        entries=[IndexEntry("clip-ViT-B-32", "image", 512, 1)],
        created_at="2026-01-01T00:00:00+00:00",
        models={"clip-ViT-B-32": {"dim": 512, "probe": [0.0]}},
    )


def test_manifest_round_trip(tmp_path):
    write_manifest(tmp_path, make_manifest())
    manifest = read_manifest(tmp_path)
    assert manifest.find("clip-ViT-B-32", "image").dim == 512
    assert manifest.find("clip-ViT-B-32", "caption") is None
    assert manifest.format_version == FORMAT_VERSION


def test_manifest_checks(tmp_path):
    with pytest.raises(IndexMismatchError, match="not a Vitrine index"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, make_manifest())
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError, match="format 99.*Rebuild"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(IndexMismatchError, match="damaged"):
        read_manifest(tmp_path)


def test_replace_folder_swaps_whole_folders(tmp_path):
    target, staging = tmp_path / "index", tmp_path / ".index.staging"
    target.mkdir()
    (target / "old").write_text("1")
    staging.mkdir()
    (staging / "new").write_text("2")
    replace_folder(staging, target)
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
