"""Where a model's copied string occurs in the text it was copied from."""

from __future__ import annotations

import re


def find_occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """(start, end) of every place ``needle`` occurs in ``text`` as whole words.

    Exact-case occurrences win; without any, case and runs of whitespace are ignored
    (models re-case and re-space what they copy). A needle never matches inside a word,
    so "US" is not found in "bus".
    """
    words = needle.split()
    if not words:
        return []
    body = r"\s+".join(re.escape(word) for word in words)
    head = r"(?<!\w)" if re.match(r"\w", words[0]) else ""
    tail = r"(?!\w)" if re.search(r"\w$", words[-1]) else ""
    for flags in (0, re.IGNORECASE):
        spans = [m.span() for m in re.finditer(head + body + tail, text, flags)]
        if spans:
            return spans
    return []
