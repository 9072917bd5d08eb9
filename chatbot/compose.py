"""The default answer, with no LLM: the most relevant sentences and bullets of the retrieved chunks,
quoted word for word (facts are never altered), in page order, with numbered citations."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatbot.lexical import expand_query, tokens
from chatbot.retrieval import Hit

MAX_UNITS = 5
MAX_CHUNKS = 3
NUMERIC_QUESTION = re.compile(r"\b(how long|how many|how much|when|kab|kitn|days?|hours?|weeks?|month|time)\b", re.I)
HAS_NUMBER = re.compile(r"\d")


@dataclass(frozen=True)
class Unit:
    """A sentence or a bullet of one chunk."""

    hit_rank: int
    position: int
    text: str
    bullet: bool
    lead: str  # the line that introduces a bullet list ("After SMP, follow these two rules:")


def units(hit_rank: int, text: str) -> list[Unit]:
    """Split a chunk into sentences and bullets, remembering each list's lead-in line."""
    found: list[Unit] = []
    for block in text.split("\n\n"):
        lead = ""
        for line in block.split("\n"):
            line = line.strip()
            if not line:
                continue
            if re.match(r"^(?:[-*+•]|\d+[.)])\s+", line):
                item = re.sub(r"^(?:[-*+•]|\d+[.)])\s+", "", line)
                found.append(Unit(hit_rank, len(found), item, True, lead))
                continue
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", line):
                if sentence.endswith(":"):
                    lead = sentence
                else:
                    found.append(Unit(hit_rank, len(found), sentence, False, ""))
    return found


def _score(unit: Unit, query: set[str], numeric: bool, hit: Hit) -> float:
    own = set(tokens(unit.text))
    overlap = len(own & query) / (1 + len(own) ** 0.5)
    bonus = 0.15 if numeric and HAS_NUMBER.search(unit.text) else 0.0
    return overlap + bonus + hit.fused


def _same(a: str, b: str) -> bool:
    ta, tb = set(tokens(a)), set(tokens(b))
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) > 0.8


def select(question: str, hits: list[Hit]) -> list[Unit]:
    """Pick up to MAX_UNITS units from the top chunks: the best overall, always something from the top chunk."""
    query = set(tokens(expand_query(question)))
    numeric = bool(NUMERIC_QUESTION.search(question))
    pool = [(u, _score(u, query, numeric, hits[i])) for i in range(min(MAX_CHUNKS, len(hits))) for u in units(i, hits[i].text)]
    if not pool:
        return []
    top_score = max(s for _, s in pool)
    ranked = sorted(pool, key=lambda pair: -pair[1])
    chosen: list[Unit] = []
    for unit, score in ranked:
        related = unit.hit_rank == 0 or score >= 0.6 * top_score
        if related and not any(_same(unit.text, c.text) for c in chosen):
            chosen.append(unit)
        if len(chosen) == MAX_UNITS:
            break
    if not any(u.hit_rank == 0 for u in chosen):
        chosen[-1:] = [next(u for u, _ in ranked if u.hit_rank == 0)]
    return sorted(chosen, key=lambda u: (u.hit_rank, u.position))


def render(question: str, hits: list[Hit]) -> tuple[str, list[int]]:
    """Answer text with [n] citations, and the hit indexes cited (n = position in that list + 1)."""
    chosen = select(question, hits)
    cited: list[int] = []
    lines: list[str] = []
    shown_leads: set[str] = set()
    for unit in chosen:
        if unit.hit_rank not in cited:
            cited.append(unit.hit_rank)
        mark = f"[{cited.index(unit.hit_rank) + 1}]"
        if unit.bullet:
            if unit.lead and unit.lead not in shown_leads:
                shown_leads.add(unit.lead)
                lines.append(unit.lead)
            lines.append(f"- {unit.text} {mark}")
        else:
            lines.append(f"{unit.text} {mark}")
    text, previous = "", ""
    for line in lines:  # prose runs together; a list and its lead-in stand on their own lines
        edge = line.startswith("- ") or line.endswith(":") or previous.startswith("- ") or previous.endswith(":")
        text = f"{text}{chr(10) if edge else ' '}{line}" if text else line
        previous = line
    return text, cited
