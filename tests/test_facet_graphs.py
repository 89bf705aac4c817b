"""A graph per common facet value: filtered searches walk it and still rank as brute force does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import facets
from core.build_index import build_index
from core.facets import RowFilter, filter_columns, graph_values, normalise_filters
from core.index import HnswParams, IndexEntry, IndexMismatchError, IndexReader, VectorIndex, read_manifest
from core.search import SearchEngine

ROWS = 6000
PARAMS = HnswParams(m=16, ef_construction=100, ef_search=64)


@pytest.fixture(scope="module")
def graphed(tmp_path_factory):
    """6,000 clustered vectors with two facets, saved with a graph for each value that is common enough."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(30, 32))
    vectors = centres[rng.integers(0, 30, ROWS)] + 0.6 * rng.normal(size=(ROWS, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    colour = rng.choice(["Black", "White", "Red", "Gold"], ROWS, p=[0.4, 0.36, 0.2, 0.04])
    size = rng.choice(["S", "L"], ROWS)
    records = [{"colour": c, "size": s} for c, s in zip(colour, size)]
    folder = tmp_path_factory.mktemp("graphed")
    index = VectorIndex.build(vectors, PARAMS)
    index.save(folder, "image__bench")
    columns = filter_columns(records)
    graphs = index.save_facet_graphs(folder, "image__bench", graph_values(columns, ["colour", "size"]), PARAMS)
    entry = IndexEntry("bench", "image", 32, ROWS, facet_graphs=graphs)
    return VectorIndex.load(folder, entry, PARAMS.ef_search), vectors, columns, graphs, (folder, entry)


def test_only_values_between_the_row_and_share_limits_get_a_graph(graphed):
    _, _, columns, graphs, _ = graphed
    assert set(graphs["colour"]) == {"black", "white"}  # red (~1,200 rows) and gold are scanned exactly
    assert all(2048 <= g["count"] <= ROWS / 2 for values in graphs.values() for g in values.values())
    assert graphs["colour"]["black"]["count"] == int(np.count_nonzero(columns["colour"] == "black"))


@pytest.mark.parametrize(
    "filters",
    [
        {"colour": ["Black"]},
        {"colour": ["Black", "White"]},  # two graphs, merged
        {"colour": ["White"], "size": ["L"]},  # the white graph, over-fetched for the half that is large
        {"colour": ["Red"], "size": ["L"]},  # red has no graph: the large-size graph, over-fetched
        {"colour": ["Gold"]},  # too few rows for a graph: exact scan
    ],
)
def test_a_filter_on_graphed_values_ranks_as_brute_force(graphed, filters):
    index, vectors, columns, _, _ = graphed
    terms = normalise_filters(filters, columns)
    mask = np.ones(ROWS, bool)
    for key, values in terms.items():
        mask &= np.isin(columns[key], list(values))
    allowed = RowFilter(mask, terms)
    queries = vectors[np.random.default_rng(2).integers(0, ROWS, 40)] + 0.01
    rows = np.flatnonzero(mask)
    truth = [rows[np.argsort(-(vectors[rows] @ q))[:10]] for q in queries]
    found = [index.search(queries, 10, allowed)]  # what the cost model picks at this size
    cover = index._facet_cover(allowed, 10)
    if cover is not None:  # and the graph walk itself, which larger catalogs pick
        found.append(index._walk_facet_graphs(queries, 10, allowed, cover))
    assert (cover is None) == ("gold" in terms.get("colour", ()))
    for labels, scores in found:
        assert np.all(mask[labels]) and labels.shape == (40, 10)
        recall = np.mean([len(set(row) & set(best)) / 10 for row, best in zip(labels.tolist(), truth)])
        assert recall >= 0.99, recall
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, labels, axis=1), atol=1e-5)
        assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_the_walk_stays_in_the_graphs_of_the_filtered_values(graphed):
    _, vectors, columns, _, (folder, entry) = graphed
    index = VectorIndex.load(folder, entry, PARAMS.ef_search)
    terms = normalise_filters({"colour": ["White"]}, columns)
    allowed = RowFilter(np.isin(columns["colour"], ["white"]), terms)
    cover = index._facet_cover(allowed, 10)
    assert [graph.count for graph, _ in cover] == [allowed.count]
    assert index._walk_facet_graphs(vectors[:3], 10, allowed, cover) is not None
    assert index.facet_graphs["colour"]["white"]._graph is not None  # loaded on first use
    assert index.facet_graphs["colour"]["black"]._graph is None
    white = index.facet_graphs["colour"]["white"]
    assert index._walk_facet_graphs(vectors[:3], 10, allowed, [(white, white.count + 1)]) is None  # hnswlib came up short


def test_the_builder_writes_facet_graphs_that_loading_checks(tiny_models, fashion_catalog, tmp_path, monkeypatch):
    monkeypatch.setattr(facets, "GRAPH_MIN_ROWS", 8)  # the test catalog is small; the rule is the same
    out = tmp_path / "fashion"
    build_index(fashion_catalog, out, limit=40, progress=False)
    manifest = read_manifest(out)
    for entry in manifest.entries:
        assert entry.facet_graphs["gender"]  # every vector file, image and caption, has its graphs
        for file, count in entry.facet_graph_files():
            assert (out / file).is_file() and count >= 8
    image = manifest.image_entry
    reader = IndexReader(out)
    for value, graph in image.facet_graphs["gender"].items():
        rows = reader.allowed_rows({"gender": [value]}).rows
        assert graph["count"] == len(rows)
    engine = SearchEngine(reader)
    value = next(iter(image.facet_graphs["gender"]))
    assert all(hit.metadata["gender"].casefold() == value for hit in engine.search(text="shirt", filters={"gender": [value]}).hits)

    (out / image.facet_graph_files()[0][0]).unlink()
    with pytest.raises(IndexMismatchError, match="is missing: the index folder is incomplete"):
        IndexReader(out)


def test_a_manifest_naming_a_graph_outside_its_folder_is_refused(graphed, tmp_path, fashion_index):
    manifest = json.loads((fashion_index / "manifest.json").read_text())
    manifest["entries"][0]["facet_graphs"] = {"gender": {"men": {"file": "../../etc/passwd", "count": 3}}}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="facet graphs"):
        read_manifest(bad)
