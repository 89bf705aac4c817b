"""Facets: metadata columns with few distinct values, and the filters a query puts on them.

A column becomes a facet when it has at most MAX_FACET_VALUES distinct values and at
least one value repeats (a column unique per product is an identifier, not a facet).
Counts are products, not photos. Filters match values case-insensitively: the values of
one key are ORed, different keys are ANDed. Pure functions: rows in, counts or masks out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

MAX_FACET_VALUES = 200
# A facet value gets its own HNSW graph, built with the index, when it covers at least GRAPH_MIN_ROWS
# rows and at most GRAPH_MAX_SHARE of them: rarer values are scanned exactly as fast, and commoner ones
# are found by a walk of the whole graph that fetches a few times K (bench/filtered_search.py).
GRAPH_MIN_ROWS = 2048
GRAPH_MAX_SHARE = 0.5

Filters = Mapping[str, Sequence[str]]


class FilterError(ValueError):
    """A filter on a key the catalog does not have; the message lists the keys it has."""


@dataclass(frozen=True)
class Facet:
    """One facet of a catalog: its values with their product counts (most common first).

    `automatic` facets were tagged at build time from the photos (zero-shot), not read from metadata."""

    name: str
    values: dict[str, int]
    automatic: bool = False

    def to_dict(self) -> dict:
        return {"values": dict(self.values), "automatic": self.automatic}

    @classmethod
    def from_dict(cls, name: str, data: Mapping) -> Facet:
        return cls(name, {str(k): int(v) for k, v in data["values"].items()}, bool(data.get("automatic", False)))


def compute_facets(
    product_ids: Sequence[str], records: Sequence[Mapping[str, str]], max_values: int = MAX_FACET_VALUES
) -> dict[str, Facet]:
    """The facets of a catalog given each photo's product id and metadata, in column order of first appearance."""
    products: dict[str, dict[str, set[str]]] = {}
    for product, record in zip(product_ids, records):
        for key, value in record.items():
            value = str(value).strip()
            if value:
                products.setdefault(key, {}).setdefault(value, set()).add(product)
    facets = {}
    for key, by_value in products.items():
        counts = {value: len(ids) for value, ids in by_value.items()}
        if len(counts) > max_values or sum(counts.values()) <= len(counts):
            continue
        ordered = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
        facets[key] = Facet(key, dict(ordered))
    return facets


@dataclass(frozen=True, eq=False)
class RowFilter:
    """The rows a filter passes (a mask over the index's rows) and the terms that chose them.

    The terms let an index walk the graphs of those facet values instead of the whole graph."""

    mask: np.ndarray
    terms: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @cached_property
    def rows(self) -> np.ndarray:
        return np.flatnonzero(self.mask)

    @property
    def count(self) -> int:
        return len(self.rows)


def filter_columns(records: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
    """Each metadata key's casefolded value per row (empty where a row lacks it): what filters compare."""
    keys = dict.fromkeys(key for record in records for key in record)
    return {key: np.array([str(r.get(key, "")).strip().casefold() for r in records], dtype=object) for key in keys}


def graph_values(columns: Mapping[str, np.ndarray], keys: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
    """Facet key -> casefolded value -> its rows, for the values common enough to get a graph of their own."""
    chosen: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        column = columns.get(key)
        if column is None or not len(column):
            continue
        values, codes = np.unique(column, return_inverse=True)
        for code, value in enumerate(values.tolist()):
            rows = np.flatnonzero(codes == code)
            if value and GRAPH_MIN_ROWS <= len(rows) <= GRAPH_MAX_SHARE * len(column):
                chosen.setdefault(key, {})[value] = rows
    return chosen


def normalise_filters(filters: Filters | None, available: Iterable[str]) -> dict[str, frozenset[str]]:
    """Filters as key -> casefolded values, without empty keys; an unknown key is a FilterError."""
    available = list(available)
    clean: dict[str, frozenset[str]] = {}
    for key, values in (filters or {}).items():
        if isinstance(values, str):
            values = [values]
        values = frozenset(str(v).strip().casefold() for v in values if str(v).strip())
        if not values:
            continue
        if key not in available:
            keys = ", ".join(available) if available else "none: this catalog has no metadata"
            raise FilterError(f"No filter key '{key}' in this catalog. Available keys: {keys}.")
        clean[key] = values
    return clean


def filter_mask(columns: Mapping[str, np.ndarray], filters: Mapping[str, frozenset[str]], count: int) -> np.ndarray:
    """Rows that pass every key (AND) with any of its values (OR); `columns` hold casefolded values per row."""
    mask = np.ones(count, dtype=bool)
    for key, values in filters.items():
        mask &= np.isin(columns[key], list(values))
    return mask


def describe_filters(filters: Filters) -> str:
    """`baseColour=Black or Navy Blue, gender=Men`: how a message names a filter."""
    return ", ".join(f"{key}={' or '.join(values) if not isinstance(values, str) else values}" for key, values in filters.items())


def parse_filter_args(pairs: Sequence[str]) -> dict[str, list[str]]:
    """`KEY=VALUE` strings (a CLI's repeated --filter) as filters; a pair without `=` is a FilterError."""
    filters: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise FilterError(f"--filter takes KEY=VALUE (e.g. baseColour=Black), not '{pair}'")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters
