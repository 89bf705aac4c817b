"""Steering on real photos with the tiny models: facets, filtered search against brute force, not words, likes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from core.autotag import MIN_CONFIDENCE, VocabularyError, read_vocabulary, zero_shot
from core.build_index import build_index
from core.catalog import from_folder
from core.models import CLIP_KEY
from core.facets import Facet, FilterError, RowFilter, compute_facets, normalise_filters
from core.index import HnswParams, IndexReader, VectorIndex, read_manifest, write_items, write_manifest
from core import search
from core.quality.evaluate import evaluate_index
from core.quality.evaluate import main as evaluate_main
from core.search import QueryError, SearchEngine
from core.steering import NOT_WEIGHT, SteeringError, steer

FACET_KEYS = ["gender", "masterCategory", "subCategory", "baseColour", "season", "usage"]


def ids(result):
    return [hit.id for hit in result.hits]


def unit(vector):
    return vector / np.linalg.norm(vector)


def subset_index(folder, keep, out):
    """The index folder holding only the `keep` rows: brute force over the passing products, as an index."""
    manifest, items = read_manifest(folder), pd.read_parquet(folder / "items.parquet")
    rows = np.flatnonzero(keep)
    out.mkdir()
    for entry in manifest.entries:
        vectors = np.load(folder / f"{entry.stem}.npy")[rows]
        VectorIndex.build(vectors, HnswParams(m=8, ef_construction=40)).save(out, entry.stem)
    manifest.entries = [type(e)(e.encoder, e.modality, e.dim, len(rows)) for e in manifest.entries]
    write_items(out, items.iloc[rows].reset_index(drop=True))
    write_manifest(out, manifest)
    return SearchEngine(out)


def metadata(engine):
    return pd.DataFrame([json.loads(m) for m in engine.reader.items["metadata"]])


def test_build_records_each_metadata_facet_with_product_counts(engine):
    facets = engine.manifest.facets
    assert set(FACET_KEYS) <= set(facets) and all(not f.automatic for f in facets.values())
    table = metadata(engine)
    for key in FACET_KEYS:
        expected = table[key][table[key] != ""].value_counts()
        assert facets[key].values == {value: int(expected[value]) for value in facets[key].values}
        assert list(facets[key].values.values()) == sorted(facets[key].values.values(), reverse=True)
    assert "productDisplayName" not in facets  # the caption, not a facet


def test_compute_facets_counts_products_and_skips_identifiers_and_long_tails():
    ids = ["a", "a", "b", "c", "d"]  # product a has two photos
    records = [
        {"colour": "Red", "sku": "1", "size": "s0"},
        {"colour": "Red", "sku": "2", "size": "s1"},
        {"colour": "Blue", "sku": "3", "size": "s2"},
        {"colour": "Blue", "sku": "4", "size": "s2"},
        {"colour": " ", "sku": "5", "size": "s3"},
    ]
    facets = compute_facets(ids, records, max_values=3)
    assert facets == {"colour": Facet("colour", {"Blue": 2, "Red": 1})}  # sku: unique; size: 4 values > 3
    assert Facet.from_dict("colour", facets["colour"].to_dict()) == facets["colour"]


def test_filters_normalise_case_and_reject_unknown_keys():
    assert normalise_filters({"gender": ["Men", " women "], "season": []}, ["gender", "season"]) == {
        "gender": frozenset({"men", "women"})
    }
    with pytest.raises(FilterError, match="Available keys: gender, season"):
        normalise_filters({"colour": ["Red"]}, ["gender", "season"])


def filter_cases(engine):
    """Filters from one product up to the whole catalog, with the rows each passes."""
    table = metadata(engine)
    single = next(
        {"subCategory": [sub], "baseColour": [colour]}
        for (sub, colour), group in table.groupby(["subCategory", "baseColour"])
        if len(group) == 1
    )
    return [
        single,
        {"gender": ["Women"]},
        {"baseColour": ["Black", "Navy Blue"], "gender": ["Men"]},
        {"gender": sorted(table["gender"].unique())},  # every product passes
    ]


@pytest.mark.parametrize("case", range(4))
def test_filtered_search_equals_brute_force_over_the_passing_products(engine, fashion_dir, tmp_path, case):
    filters = filter_cases(engine)[case]
    keep = engine.reader.allowed_rows(filters).mask
    table = metadata(engine)
    expected = np.ones(len(table), bool)
    for key, values in filters.items():
        expected &= table[key].isin(values).to_numpy()
    assert keep.tolist() == expected.tolist()
    oracle = subset_index(engine.folder, keep, tmp_path / "subset")
    photo = fashion_dir / "images" / f"{engine.reader.items['id'].iloc[5]}.jpg"
    queries = [
        dict(text="black shoes for men"),
        dict(image=photo),
        dict(text="summer dress", image=photo, blend=0.3, not_text=["leather"]),
    ]
    for query in queries:
        ours = engine.search(**query, filters=filters, k=10)
        truth = oracle.search(**query, k=10)
        assert ids(ours) == ids(truth) and len(ours.hits) == min(10, oracle.reader.products_in(np.ones(oracle.count, bool)))
        assert [h.score for h in ours.hits] == pytest.approx([h.score for h in truth.hits], abs=1e-5)
        assert [h.matched for h in ours.hits] == [h.matched for h in truth.hits]
        assert ours.matching == int(table[expected]["gender"].size)  # one photo per product here


def test_filter_values_match_whatever_the_case(engine):
    upper = engine.search(text="shirt", filters={"gender": ["MEN"]}, k=5)
    assert ids(upper) == ids(engine.search(text="shirt", filters={"gender": "Men"}, k=5))
    assert all(hit.metadata["gender"] == "Men" for hit in upper.hits)


def test_fewer_matches_than_k_and_no_match_say_so(engine):
    few = engine.search(text="bag", filters=filter_cases(engine)[0], k=10)
    assert len(few.hits) == 1 and few.matching == 1
    none = engine.search(text="bag", filters={"gender": ["Men"], "baseColour": ["No Such Colour"]}, k=10)
    assert none.hits == [] and none.matching == 0
    assert engine.search(text="bag", k=3).matching is None


def test_unknown_filter_key_lists_the_available_keys(engine):
    with pytest.raises(QueryError, match=r"No filter key 'colour'.*baseColour"):
        engine.search(text="bag", filters={"colour": ["Red"]})


def test_filtered_vector_search_matches_brute_force_at_every_selectivity():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 32))
    vectors = centres[rng.integers(0, 40, 5000)] + 0.5 * rng.normal(size=(5000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index = VectorIndex.build(vectors, HnswParams(m=16, ef_construction=100, ef_search=256))
    queries = unit(rng.normal(size=(50, 32))).astype(np.float32)
    for share in (0.0002, 0.01, 0.1, 0.3, 0.4, 0.5, 0.9, 1.0):  # exact, over-fetched walk (0.3, 0.4), filter
        allowed = rng.random(5000) < share
        allowed[rng.integers(5000)] = True
        rows = np.flatnonzero(allowed)
        labels, scores = index.search(queries, 10, RowFilter(allowed))
        truth = [rows[np.argsort(-(vectors[rows] @ q))[:10]] for q in queries]
        assert np.all(allowed[labels]) and labels.shape == (50, min(10, len(rows)))
        recall = np.mean([len(set(found) & set(best)) / len(best) for found, best in zip(labels.tolist(), truth)])
        assert recall >= 0.99, (share, recall)
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, labels, axis=1), atol=1e-5)


def test_a_filter_far_from_the_query_still_finds_the_true_top_k():
    """Over-fetching finds none of these rows near the query: hnswlib's filter takes over."""
    rng = np.random.default_rng(5)
    vectors = unit(rng.normal(size=(4000, 16)) + 2.0 * np.eye(16)[rng.integers(0, 4, 4000)]).astype(np.float32)
    index = VectorIndex.build(vectors, HnswParams(m=16, ef_construction=100, ef_search=256))
    query = vectors[0]
    allowed = vectors @ query < np.quantile(vectors @ query, 0.4)
    rows = np.flatnonzero(allowed)
    labels, _ = index.search(query, 10, RowFilter(allowed))
    truth = rows[np.argsort(-(vectors[rows] @ query))[:10]]
    assert len(set(labels[0].tolist()) & set(truth.tolist())) >= 9


def test_hnsw_filter_that_runs_dry_falls_back_to_the_exact_scan():
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(3000, 16))).astype(np.float32)
    index = VectorIndex.build(vectors, HnswParams(m=4, ef_construction=10, ef_search=10))
    allowed = np.zeros(3000, bool)
    allowed[[5, 2999]] = True
    labels, _ = index.hnsw_search(vectors[:1], 2, allowed)
    assert sorted(labels[0].tolist()) == [5, 2999]


def test_not_words_move_the_query_away_by_the_documented_formula(engine):
    encoder = engine.encoder("clip-ViT-B-32")
    shoes, black, leather = encoder.encode_texts(["shoes", "black", "leather"])
    plain = engine.search(text="shoes", k=10)
    steered = engine.search(text="shoes", not_text=["black", "leather"], k=10)
    expected = unit(shoes - NOT_WEIGHT * (black + leather) / 2)
    np.testing.assert_allclose(steered.query_vector, expected, atol=1e-5)
    assert float(steered.query_vector @ black) < float(plain.query_vector @ black)
    assert ids(engine.search(text="shoes", not_text=["", "  "], k=10)) == ids(plain)


def test_like_and_unlike_steer_with_stored_vectors(engine):
    liked, disliked = engine.reader.id_list[10], engine.reader.id_list[20]
    plain = engine.search(text="a bag", k=10).query_vector
    like_vector, unlike_vector = engine.product_vector(liked), engine.product_vector(disliked)
    toward = engine.search(text="a bag", like=[liked], k=10).query_vector
    away = engine.search(text="a bag", unlike=[disliked], k=10).query_vector
    assert float(toward @ like_vector) > float(plain @ like_vector)
    assert float(away @ unlike_vector) < float(plain @ unlike_vector)
    both = engine.search(text="a bag", like=[liked], unlike=[disliked], k=10).query_vector
    np.testing.assert_allclose(both, steer(plain, liked=[like_vector], unliked=[unlike_vector]), atol=1e-5)
    assert disliked not in ids(engine.search(text="a bag", unlike=[disliked], k=299))
    only_likes = engine.search(like=[liked], k=5)
    assert only_likes.hits[0].id == liked and only_likes.mode == "image"
    with pytest.raises(QueryError, match="Type a description"):
        engine.search(unlike=[disliked])
    with pytest.raises(QueryError, match="No product with id"):
        engine.search(text="bag", like=["no-such-id"])


def test_steer_is_rocchio_and_refuses_to_cancel_out():
    q, a, b = np.eye(3, dtype=np.float32)
    np.testing.assert_allclose(steer(q, liked=[a], unliked=[b]), unit(q + 0.75 * a - 0.25 * b), atol=1e-6)
    np.testing.assert_allclose(steer(None, liked=[a, b]), unit(a + b), atol=1e-6)
    with pytest.raises(SteeringError):
        steer(q, liked=[-q / 0.75])
    with pytest.raises(SteeringError):
        steer(None, unliked=[a])


def test_facets_of_an_index_built_before_facets_come_from_its_items(engine, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(engine.folder, old)
    manifest = read_manifest(old)
    del manifest.catalog["facets"]
    write_manifest(old, manifest)
    reader = IndexReader(old)
    assert reader.manifest.facets == {} and reader.facets == engine.manifest.facets


def test_cli_filters_and_steers_and_keeps_metadata_in_json(fashion_index, capsys):
    args = ["--index", str(fashion_index), "--text", "shoes", "-k", "5", "--json",
            "--filter", "gender=Men", "--filter", "baseColour=Black", "--filter", "baseColour=Navy Blue",
            "--not", "leather", "--unlike", "10001"]
    assert search.main(args) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["metadata"]["gender"] == "Men" and h["metadata"]["baseColour"] in {"Black", "Navy Blue"} for h in hits)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filter", "colour=Red"], "Available keys: gender, masterCategory"),
        (["--filter", "gender"], "KEY=VALUE"),
        (["--like", "no-such-id"], "No product with id"),
    ],
)
def test_cli_bad_steering_exits_2_with_one_line(fashion_index, capsys, args, message):
    assert search.main(["--index", str(fashion_index), "--text", "shoes", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.strip().count("\n") == 0


def test_cli_says_when_no_product_matches(fashion_index, capsys):
    assert search.main(["--index", str(fashion_index), "--text", "shoes", "--filter", "gender=Nobody"]) == 0
    assert "no product matches the filters" in capsys.readouterr().out


def test_evaluate_within_a_filter_queries_and_ranks_only_the_passing_products(fashion_index, capsys):
    report = evaluate_index(fashion_index, queries=10_000, val_fraction=1.0, filters={"gender": ["Men"]})
    table = metadata(SearchEngine(fashion_index))
    men = int((table["gender"] == "Men").sum())
    assert report.products == men and report.queries <= men and report.filters == {"gender": ["Men"]}
    assert report.chance_recall[1] == pytest.approx(1 / men)
    assert evaluate_main(["--index", str(fashion_index), "--filter", "gender=Men", "--queries", "5"]) == 0
    assert "with gender=Men" in capsys.readouterr().out
    assert evaluate_main(["--index", str(fashion_index), "--filter", "colour=Red"]) == 2
    assert "Available keys" in capsys.readouterr().err


def test_a_catalog_without_metadata_gets_automatic_facets_with_confidences(tiny_models, fashion_dir, tmp_path):
    out = tmp_path / "photos-only"
    build_index(from_folder(fashion_dir / "images", name="photos"), out, models=[CLIP_KEY], limit=40, progress=False)
    engine = SearchEngine(out)
    facets = engine.manifest.facets
    assert set(facets) <= {"colour", "category"} and facets and all(f.automatic for f in facets.values())
    items = engine.reader.items
    confidences = [json.loads(c) if c else {} for c in items["tag_confidence"]]
    for record, confidence in zip(map(json.loads, items["metadata"]), confidences):
        assert set(record) == set(confidence) and all(MIN_CONFIDENCE <= v <= 1.0 for v in confidence.values())
    name, facet = next(iter(facets.items()))
    value = next(iter(facet.values))
    hits = engine.search(text="a shirt", filters={name: [value]}, k=40).hits
    assert len(hits) == facet.values[value] and all(hit.metadata[name] == value for hit in hits)
    plain = tmp_path / "no-tags"
    build_index(from_folder(fashion_dir / "images", name="photos"), plain, models=[CLIP_KEY], limit=8,
                progress=False, auto_tags=False)
    assert read_manifest(plain).facets == {}


def test_zero_shot_tags_take_the_closest_label_and_abstain_when_unsure(tmp_path):
    labels = np.eye(3, dtype=np.float32)
    photos = np.array([[1.0, 0, 0], unit(np.array([1.0, 1.0, 1.0]))], dtype=np.float32)
    best, confidence = zero_shot(photos, labels)
    assert best.tolist() == [0, -1] and confidence[0] > 0.99 and confidence[1] == pytest.approx(1 / 3)
    path = tmp_path / "vocabulary.json"
    path.write_text(json.dumps({"pattern": ["striped", "dotted", "striped"]}))
    assert read_vocabulary(path) == {"pattern": ["striped", "dotted"]}
    path.write_text(json.dumps({"pattern": ["striped"]}))
    with pytest.raises(VocabularyError, match="at least two labels"):
        read_vocabulary(path)
