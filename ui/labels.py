"""Words a shopper reads: facet names ("Colour", not "baseColour") and tags worth showing."""

from __future__ import annotations

import re

FACET_LABELS = {
    "baseColour": "Colour",
    "baseColor": "Colour",
    "masterCategory": "Category",
    "subCategory": "Type",
    "articleType": "Product type",
    "gender": "For",
    "usage": "Occasion",
}
# Values that mean "nothing recorded": never a tag.
BLANK_VALUES = frozenset({"", "na", "n/a", "nan", "none", "null", "-", "unknown", "other"})
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def facet_label(column: str) -> str:
    """A readable name for a metadata column: a known one, else its words spaced and capitalised."""
    if column in FACET_LABELS:
        return FACET_LABELS[column]
    words = _CAMEL.sub(" ", column).replace("_", " ").strip()
    return words[:1].upper() + words[1:].lower()


def is_blank(value: object) -> bool:
    return str(value).strip().casefold() in BLANK_VALUES
