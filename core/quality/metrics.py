"""Retrieval quality by exact search: ranks, Recall@k, MRR, label precision, and their chance levels.

Everything here is brute force over unit vectors, so the numbers measure the encoders and
never an approximate index. Results are counted per product, not per photo: a product with
several photos scores with its best one, and ties count against the target (a model that
maps everything to one vector scores chance, not perfect).
"""

from __future__ import annotations

import numpy as np

QUERY_CHUNK = 256


def product_scores(queries: np.ndarray, gallery: np.ndarray, products: np.ndarray) -> np.ndarray:
    """Cosine of each query with each product: the best of that product's gallery rows.

    `products` holds a product number in 0..P-1 per gallery row; the result is (queries, P).
    """
    order = np.argsort(products, kind="stable")
    sorted_products = products[order]
    starts = np.flatnonzero(np.r_[True, sorted_products[1:] != sorted_products[:-1]])
    if not np.array_equal(sorted_products[starts], np.arange(len(starts))):
        raise ValueError("product numbers must run 0..P-1 without gaps")
    scores = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32)[order].T
    return np.maximum.reduceat(scores, starts, axis=1)


def target_ranks(queries: np.ndarray, gallery: np.ndarray, products: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target product among all products (ties count against it)."""
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), QUERY_CHUNK):
        scores = product_scores(queries[start : start + QUERY_CHUNK], gallery, products)
        chunk_targets = targets[start : start + QUERY_CHUNK]
        target_scores = scores[np.arange(len(scores)), chunk_targets]
        ranks[start : start + QUERY_CHUNK] = (scores >= target_scores[:, None]).sum(axis=1)
    return ranks


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Share of queries whose target is within the first k results."""
    return float(np.mean(ranks <= k)) if len(ranks) else 0.0


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / ranks)) if len(ranks) else 0.0


def chance_recall_at(k: int, products: int) -> float:
    """Recall@k of a ranking drawn at random among `products` candidates."""
    return min(1.0, k / products) if products else 0.0


def chance_mrr(products: int) -> float:
    """Expected 1/rank for a uniformly random rank in 1..products."""
    return float(np.sum(1.0 / np.arange(1, products + 1)) / products) if products else 0.0


def label_precision_at(
    query_vectors: np.ndarray,
    query_products: np.ndarray,
    gallery: np.ndarray,
    products: np.ndarray,
    labels: np.ndarray,
    k: int = 10,
) -> tuple[float, float]:
    """Image -> image precision@k by label, and its chance level.

    For each query image the k best other products are taken; precision is the share of
    them whose label (one per product, "" for none) equals the query product's label.
    Chance for a query is (products with its label - 1) / (products - 1).
    """
    count = len(labels)
    if count < 2 or not len(query_vectors):
        return 0.0, 0.0
    k = min(k, count - 1)
    precisions, chances = [], []
    label_counts = {label: int(n) for label, n in zip(*np.unique(labels, return_counts=True))}
    for start in range(0, len(query_vectors), QUERY_CHUNK):
        scores = product_scores(query_vectors[start : start + QUERY_CHUNK], gallery, products)
        own = query_products[start : start + QUERY_CHUNK]
        scores[np.arange(len(scores)), own] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        own_labels = labels[own]
        precisions.append((labels[top] == own_labels[:, None]).mean(axis=1))
        chances.append(np.array([(label_counts[label] - 1) / (count - 1) for label in own_labels]))
    return float(np.concatenate(precisions).mean()), float(np.concatenate(chances).mean())
