"""Automatic facets: zero-shot tags for a catalog without metadata, from its photos and the text tower.

Each facet of a vocabulary (colour, category) is a list of labels; every label becomes a
prompt ("a photo of a black product"), and each photo takes the label whose prompt is
closest, with the softmax over the facet's labels (at CLIP's logit scale) as its
confidence. Below MIN_CONFIDENCE a photo gets no tag for that facet: a shopper filtering
on "black" should not see a coin toss. The vocabulary can be replaced by a JSON file
(`{"colour": ["black", ...], "pattern": [...]}`): `python -m core.build_index --tag-vocabulary FILE`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOGIT_SCALE = 100.0  # CLIP's learned temperature, as its zero-shot classifier applies it
MIN_CONFIDENCE = 0.5
PROMPTS = {"colour": "a photo of a {} product", "category": "a photo of {}"}
DEFAULT_PROMPT = "a photo of {}"
DEFAULT_VOCABULARY: dict[str, list[str]] = {
    "colour": [
        "black", "white", "blue", "navy blue", "red", "green", "brown", "grey", "pink", "yellow",
        "purple", "orange", "beige", "silver", "gold", "maroon",
    ],
    "category": [
        "a t-shirt", "a shirt", "a top", "a dress", "a skirt", "jeans", "trousers", "shorts", "a jacket",
        "a sweater", "shoes", "sandals", "flip flops", "a watch", "a handbag", "a backpack", "a wallet",
        "a belt", "sunglasses", "jewellery", "socks", "a cap", "perfume", "lipstick", "nail polish",
    ],
}


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class Tags:
    """One facet's tags: a label (or None, below the confidence) and its confidence per photo."""

    facet: str
    labels: list[str | None]
    confidence: np.ndarray


def read_vocabulary(path: Path | str) -> dict[str, list[str]]:
    """A vocabulary file: a JSON object of facet name -> list of labels (at least two each)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VocabularyError(f"Cannot read the tag vocabulary {path}: {err}") from err
    if not isinstance(data, dict) or not data:
        raise VocabularyError(f"{path} must hold a JSON object of facet name -> list of labels.")
    vocabulary = {}
    for facet, labels in data.items():
        labels = list(dict.fromkeys(str(label).strip() for label in labels or [] if str(label).strip()))
        if len(labels) < 2:
            raise VocabularyError(f"{path}: facet '{facet}' needs at least two labels to choose between.")
        vocabulary[str(facet)] = labels
    return vocabulary


def prompts_for(facet: str, labels: Sequence[str]) -> list[str]:
    template = PROMPTS.get(facet, DEFAULT_PROMPT)
    return [template.format(label) for label in labels]


def zero_shot(
    image_vectors: np.ndarray, label_vectors: np.ndarray, min_confidence: float = MIN_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Per photo: the index of the closest label (-1 below `min_confidence`) and the softmax confidence."""
    logits = LOGIT_SCALE * (np.asarray(image_vectors, dtype=np.float32) @ np.asarray(label_vectors, np.float32).T)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    best = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(best)), best]
    return np.where(confidence >= min_confidence, best, -1), confidence


def tag_photos(
    image_vectors: np.ndarray,
    encode_texts: Callable[[list[str]], np.ndarray],
    vocabulary: Mapping[str, Sequence[str]] = DEFAULT_VOCABULARY,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[Tags]:
    """Tags for every facet of the vocabulary; labels are shown without their article ("a watch" -> "watch")."""
    tags = []
    for facet, labels in vocabulary.items():
        best, confidence = zero_shot(image_vectors, encode_texts(prompts_for(facet, labels)), min_confidence)
        names = [_display(label) for label in labels]
        tags.append(Tags(facet, [names[i] if i >= 0 else None for i in best.tolist()], confidence))
    return tags


def _display(label: str) -> str:
    for article in ("a ", "an "):
        if label.startswith(article):
            return label[len(article):]
    return label
