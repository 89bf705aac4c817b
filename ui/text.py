"""Catalog text shown as text: captions and metadata come from files anyone can write."""

from __future__ import annotations

import re

# Everything Streamlit's Markdown gives a meaning to: CommonMark/GFM punctuation, HTML, LaTeX
# ($), emoji and colour directives (:), so a caption can never become a link, an image or markup.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'])")
_WHITESPACE = re.compile(r"\s+")


def plain(text: str, max_chars: int | None = None) -> str:
    """One line of text, shortened with an ellipsis, every Markdown/HTML character escaped."""
    line = _WHITESPACE.sub(" ", str(text)).strip()
    if max_chars is not None and len(line) > max_chars:
        line = line[: max_chars - 1].rstrip() + "…"
    return _MARKDOWN_SPECIALS.sub(r"\\\1", line)


def code(text: str) -> str:
    """A Markdown code span; backslash escapes do not work inside one, so backticks are replaced."""
    return "`" + _WHITESPACE.sub(" ", str(text)).replace("`", "'") + "`"
