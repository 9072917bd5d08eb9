"""The default answer, with no LLM: the most relevant sentences and bullets of the retrieved chunks,
quoted word for word (facts are never altered), in page order, with numbered citations."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from chatbot.lexical import expand_query, tokens
from chatbot.retrieval import Hit

MAX_UNITS = 5
MAX_CHUNKS = 3
MAX_LIST = 8
CHUNK_PRIOR = (1.0, 0.75, 0.6)  # a unit of the best chunk counts more than one of the third
KEEP_RATIO = 0.35  # units scoring under 35% of the best unit are left out
NUMBER_BONUS = 0.5  # 'how long / how much' questions want the sentence with the number
BULLET = re.compile(r"^(?:[-*+•]|\d+[.)])\s+")
NUMERIC_QUESTION = re.compile(r"\b(how long|how many|how much|when|kab|kitn|days?|hours?|weeks?|month|time)\b", re.I)
LIST_QUESTION = re.compile(
    r"\b(what|which) (are|factors|conditions|things|steps|medicines|rules|situations)\b|\b(list|factors|conditions|"
    r"indications|advantages|benefits|aftercare|instructions|rules)\b|\bwho (is|can|should)\b",
    re.I,
)
META = re.compile(r"\bthis page\b", re.I)  # "This page explains ..." says nothing to a patient


@dataclass(frozen=True)
class Unit:
    """A sentence or a bullet of one chunk."""

    hit_rank: int
    position: int
    text: str
    bullet: bool
    lead: str  # the sentence that introduces a bullet list ("The clinic lists these situations:")


def units(hit_rank: int, text: str) -> list[Unit]:
    """Split a chunk into sentences and bullets; each bullet remembers the sentence that leads its list."""
    found: list[Unit] = []
    for block in text.split("\n\n"):
        lead = ""
        for line in filter(None, (raw.strip() for raw in block.split("\n"))):
            if BULLET.match(line):
                found.append(Unit(hit_rank, len(found), BULLET.sub("", line), True, lead))
                continue
            for sentence in re.split(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(])", line):
                if sentence.endswith(":"):
                    lead = sentence
                elif not META.search(sentence):
                    found.append(Unit(hit_rank, len(found), sentence, False, ""))
    return found


def _relevance(unit: Unit, query: set[str], idf: Mapping[str, float], numeric: bool) -> float:
    own = set(tokens(unit.text + " " + unit.lead))
    weight = sum(idf.get(t, 1.0) for t in own & query) / math.sqrt(1 + len(own))
    if numeric and re.search(r"\d", unit.text):
        weight += NUMBER_BONUS
    return weight * CHUNK_PRIOR[unit.hit_rank]


def _same(a: str, b: str) -> bool:
    ta, tb = set(tokens(a)), set(tokens(b))
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) > 0.8


def _list_of(unit: Unit, pool: list[Unit]) -> list[Unit]:
    return [u for u in pool if u.bullet and u.hit_rank == unit.hit_rank and u.lead == unit.lead]


def select(question: str, hits: list[Hit], idf: Mapping[str, float]) -> list[Unit]:
    """Pick what answers the question: the best units (a short list whole), else the start of the best chunk."""
    query = set(tokens(expand_query(question)))
    numeric = bool(NUMERIC_QUESTION.search(question))
    pool = [u for i in range(min(MAX_CHUNKS, len(hits))) for u in units(i, hits[i].text)]
    if not pool:
        return []
    scored = sorted(((u, _relevance(u, query, idf, numeric)) for u in pool), key=lambda p: -p[1])
    best_unit, best = scored[0]
    if best <= 0:  # matched in meaning only (e.g. a Hinglish question): the opening of the best chunk
        return [u for u in pool if u.hit_rank == 0][:3]
    chosen: list[Unit] = []
    top_list = [u for u in pool if u.hit_rank == 0 and u.bullet]
    if LIST_QUESTION.search(question) and top_list:
        lists = {u.lead for u in top_list}
        if len(lists) == 1 and len(top_list) <= MAX_LIST:
            chosen += top_list
    if best_unit.bullet and len(_list_of(best_unit, pool)) <= MAX_LIST:
        chosen += [u for u in _list_of(best_unit, pool) if u not in chosen]
    budget = MAX_UNITS + (len(chosen) - 1 if chosen else 0)  # a whole list counts as one unit
    for unit, score in scored:
        if len(chosen) >= budget or score < KEEP_RATIO * best:
            break
        if unit not in chosen and not any(_same(unit.text, c.text) for c in chosen):
            chosen.append(unit)
    return sorted(chosen, key=lambda u: (u.hit_rank, u.position))


def render(question: str, hits: list[Hit], idf: Mapping[str, float]) -> tuple[str, list[int]]:
    """Answer text with [n] citations, and the hit indexes cited (n = position in that list + 1)."""
    cited: list[int] = []
    lines: list[str] = []
    shown_leads: set[str] = set()
    for unit in select(question, hits, idf):
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
