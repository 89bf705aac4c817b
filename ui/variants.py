"""Variants: products that share a name (or the column named at build time) show as one card.

The grouping is read from the index once per catalog (through engine.reader); the search page
fetches a few more hits than it shows and keeps the best of each group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from core.search import Hit, SearchEngine

# Fetched per shown card: enough for a page whose top hits are all variants of a few products.
OVERFETCH = 3
MAX_FETCH = 1000  # core.search.MAX_K


@dataclass(frozen=True)
class Card:
    """One product card: its best-ranked hit and how many products of the catalog it stands for."""

    hit: Hit
    variants: int


@dataclass(frozen=True)
class Variants:
    """Each row's group, and the products of each group."""

    group_of_row: list[str]
    products: dict[str, tuple[str, ...]]

    def siblings(self, product_ids: Sequence[str], rows: Sequence[int]) -> list[str]:
        """Every product that shares a group with one of these rows (themselves included)."""
        found = dict.fromkeys(product_ids)
        for row in rows:
            found.update(dict.fromkeys(self.products.get(self.group_of_row[row], ())))
        return list(found)


def group_key(value: str, product_id: str) -> str:
    """Same text, same group (case and spacing aside); a blank value groups a product with itself only."""
    text = " ".join(str(value).split()).casefold()
    return f"={text}" if text else f"#{product_id}"


@st.cache_resource(max_entries=8, show_spinner=False)
def variants_of(folder: str, built_at: str, _engine: SearchEngine) -> Variants:
    """Read once per index build: the grouping column is the one the manifest names."""
    table = _engine.reader.metadata_table()
    column = _engine.manifest.variants_column
    values = table[column] if column in table else table["caption"]
    groups = [group_key(value, product) for value, product in zip(values.tolist(), table["id"].tolist())]
    products: dict[str, dict[str, None]] = {}
    for group, product in zip(groups, table["id"].tolist()):
        products.setdefault(group, {})[product] = None
    return Variants(groups, {group: tuple(ids) for group, ids in products.items()})


def for_engine(engine: SearchEngine) -> Variants:
    return variants_of(str(engine.folder), engine.manifest.version, engine)


def fetch_size(k: int) -> int:
    return min(MAX_FETCH, k * OVERFETCH)


def cards(hits: Sequence[Hit], variants: Variants, k: int) -> list[Card]:
    """The best hit of each group, in rank order, at most k."""
    shown: dict[str, Hit] = {}
    for hit in hits:
        shown.setdefault(variants.group_of_row[hit.row], hit)
        if len(shown) == k:
            break
    return [Card(hit, len(variants.products[group])) for group, hit in shown.items()]
