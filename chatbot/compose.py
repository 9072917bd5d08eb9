"""The default answer, with no LLM: the best section of a clinic page, quoted word for word.

Sections are written to stand alone (loading.section_warnings keeps them so), so the unit of an answer is a
section: whole when it is short, else its opening paragraph and the blocks and bullets that match the question,
each list with its lead-in, in page order. A sentence is never taken out of its paragraph, so nothing that
refers back ("So ...", "That is ...") loses what it refers to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from chatbot.lexical import expand_query, tokens
from chatbot.retrieval import Hit

WHOLE_MAX_WORDS = 100  # a section this short is quoted whole
BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")


def blocks(text: str) -> list[list[str]]:
    """A section's text -> blocks (paragraphs, or a list with its lead-in line), each a list of lines."""
    return [
        [line.strip() for line in block.split("\n") if line.strip()] for block in text.split("\n\n") if block.strip()
    ]


def _weight(line: str, query: set[str], idf: Mapping[str, float]) -> float:
    return sum(idf.get(t, 1.0) for t in set(tokens(line)) & query)


def select(question: str, text: str, idf: Mapping[str, float]) -> list[list[str]]:
    """The part of a section that answers the question: the whole section when it is short; else the opening
    paragraph, the paragraphs that match, and of a long list its lead-in with the bullets that match."""
    parts = blocks(text)
    query = set(tokens(expand_query(question)))
    short = sum(len(line.split()) for block in parts for line in block) <= WHOLE_MAX_WORDS
    if short or not query & set(tokens(text)):  # nothing to choose by (e.g. a question in Hindi): all of it
        return parts
    chosen: list[list[str]] = []
    for i, block in enumerate(parts):
        bullets = [line for line in block if BULLET.match(line)]
        lead = [line for line in block if not BULLET.match(line)]
        if bullets:
            matching = [b for b in bullets if _weight(b, query, idf) > 0]
            if matching or _weight(" ".join(lead), query, idf) > 0:
                chosen.append(lead + (matching or bullets))
        elif i == 0 or _weight(" ".join(block), query, idf) > 0:
            chosen.append(block)
    return chosen or parts[:1]


def render(selections: list[tuple[Hit, list[list[str]]]]) -> str:
    """Quoted blocks with a [n] citation after each block; n is the position of its section in `selections`."""
    out = []
    for n, (_hit, parts) in enumerate(selections, start=1):
        for block in parts:
            out.append("\n".join(block) + f" [{n}]")
    return "\n\n".join(out)
