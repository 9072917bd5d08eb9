"""The symptom model of the triage: concepts x modifiers, in English, Hinglish and Hindi (prompts/symptoms.yaml).

    assess("khoon ruk nahi raha") -> Finding("emergency", "bleeding", "bleeding + persistent")
    assess("thoda sa dard hai day 2") -> Finding("symptom", "pain", "pain")
    assess("what are the signs of infection?") -> Finding("question", "fever_chills", "asked in general")

Pure functions over compiled data: well under a millisecond a message. The caller passes the message twice:
`latin` (folded, misspellings corrected, Devanagari spelt in Latin letters) and `native` (as written).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from chatbot.language import has_devanagari
from chatbot.wording import load

INFLECTED_FROM = 6  # letters: a Hinglish term's word this long matches with any ending
GAPS = {"..": 3, "...": 8}  # a term's `..` and `...`: up to this many other words between, in the same clause
WINDOW = 60  # characters: a modifier counts for a concept when it is this close to one of the concept's words
_NUKTA = str.maketrans({"\u093c": None, "\u0901": "\u0902"})  # nukta dropped, chandrabindu read as anusvara
_DEVA_LETTER = "\u0900-\u097f"


@dataclass(frozen=True)
class Finding:
    level: str  # crisis | emergency | symptom | question | none
    concept: str = ""  # the concept's group ("infection"), or "crisis"
    why: str = ""  # the concept and modifier that decided it ("pus_discharge", "bleeding + persistent")


def native_form(text: str) -> str:
    """As written, for the Devanagari terms: NFC, lower case, nukta dots ignored, spaces tidied."""
    return " ".join(unicodedata.normalize("NFC", text).lower().translate(_NUKTA).split())


LATIN_START = r"\b"  # every Latin term starts at a word boundary
NATIVE_START = rf"(?<![{_DEVA_LETTER}])"  # and every Devanagari one after a non-Devanagari character
MESSAGE_START = r"^\s*"  # a leading term: where the message starts


@lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    return {str(k).lower(): str(v).lower() for k, v in (load("symptoms.yaml").get("spellings") or {}).items()}


def respell(text: str) -> str:
    """Chat spellings of Hinglish words written one way ('nhi' -> 'nahi', 'rha' -> 'raha', 'bht' -> 'bahut'), in
    messages and in terms alike, so that a term needs writing in one spelling only (symptoms.yaml `spellings`)."""
    table = _spellings()
    return re.sub(r"[a-z]+", lambda m: table.get(m.group(), m.group()), text) if table else text


def _latin_regex(term: str, inflected: bool = False) -> tuple[str, str] | None:
    """The term's regular expression after `LATIN_START`, and its longest literal word; None for an empty term.
    `inflected` (Hinglish terms): a word of INFLECTED_FROM letters or more takes any ending, as Hindi verbs and
    nouns do ('nuksaan pahuch' matches 'nuksaan pahuchane', 'pahuchaya'); in a term of several words a shorter
    one ending in a vowel takes any vowel ending ('pas bhara' matches 'pas bhar', 'pas bhari')."""
    parts, words = [], []
    several = len(term.split()) > 1  # a single word keeps its vowel ending: 'gola' (a lump) is not 'goli' (a pill)
    for word in respell(term.lower()).split():
        if word in GAPS:
            parts.append(rf"(?:[^\s.,;!?]+\s+){{0,{GAPS[word]}}}?")
            continue
        stem = word.rstrip("*")
        open_end = word.endswith("*") or (inflected and len(stem) >= INFLECTED_FROM)
        if inflected and several and not open_end and len(stem) >= 4 and stem[-1] in "aeio":  # bhara = bhari
            stem = stem.rstrip("aeio")
            parts.append(re.escape(stem) + r"[aeiou]{0,2}\b\s+")
        else:
            parts.append(re.escape(stem) + (r"\w*" if open_end else r"\b") + r"\s+")
        words.append(stem)
    return ("".join(parts)[: -len(r"\s+")], max(words, key=len, default="")) if parts else None


def _native_regex(term: str) -> tuple[str, str]:
    """The term's regular expression after `NATIVE_START`, and its longest literal word ("" when it has none)."""
    parts, words = [], []
    for word in native_form(term).split():
        if word in GAPS:
            parts.append(rf"(?:[^\s.,;!?\u0964]+\s+){{0,{GAPS[word]}}}?")
            continue
        words.append(word)
        whole = len([c for c in word if not unicodedata.combining(c)]) <= 2  # short words: whole words only
        end = rf"(?![{_DEVA_LETTER}])" if whole else ""
        parts.append(re.escape(word) + end + r"\s+")
    return "".join(parts)[: -len(r"\s+")], max(words, key=len, default="")


@dataclass(frozen=True)
class Alternatives:
    """One list of terms as one regular expression, built for speed (the matches are those of trying each term in
    turn at each position): the common start is written once, so that each term is tried only where the start
    holds and is rejected by its first letter; and a text that contains none of the terms' longest literal words
    (`words`) is not searched at all."""

    regex: re.Pattern
    words: tuple[str, ...] | None  # None: a term without a literal word, always search

    @classmethod
    def of(cls, start: str, compiled: list[tuple[str, str] | None]) -> Alternatives | None:
        """`compiled`: (regex after `start`, longest literal word) per term, from `_latin_regex`/`_native_regex`."""
        if not compiled:
            return None
        kept = [term for term in compiled if term is not None]
        if not kept:
            return cls(re.compile(""), None)  # only empty terms: matches everywhere
        words = sorted({word for _, word in kept}, key=len)
        # a word that contains a shorter one adds nothing to the pre-check: 'painful' is found when 'pain' is
        needed = tuple(w for i, w in enumerate(words) if not any(v in w for v in words[:i]))
        pattern = re.compile(start + "(?:" + "|".join(f"(?:{regex})" for regex, _ in kept) + ")")
        return cls(pattern, None if "" in words else needed)

    def possible(self, text: str) -> bool:
        return self.words is None or any(word in text for word in self.words)

    def matches(self, text: str) -> list[re.Match]:
        return list(self.regex.finditer(text)) if self.possible(text) else []

    def search(self, text: str) -> re.Match | None:
        return self.regex.search(text) if self.possible(text) else None


@dataclass(frozen=True)
class Terms:
    """One list of terms, compiled: `latin` for English and Hinglish words, `native` for Devanagari."""

    latin: Alternatives | None
    native: Alternatives | None

    @classmethod
    def of(cls, entry: dict, leading: bool = False) -> Terms:
        """`leading`: the terms count only where the message starts ('Is that painful?' asks; '..., is that
        normal?' after a description reports)."""
        latin = [_latin_regex(str(t)) for t in entry.get("en", []) or []]
        latin += [_latin_regex(str(t), inflected=True) for t in entry.get("hinglish", []) or []]
        native = [_native_regex(str(t)) for t in entry.get("hi", []) or []]
        starts = (MESSAGE_START, MESSAGE_START) if leading else (LATIN_START, NATIVE_START)
        return cls(Alternatives.of(starts[0], latin), Alternatives.of(starts[1], native))

    @classmethod
    def listed(cls, terms: list) -> Terms | None:
        """One list mixing scripts (an `except:` list): Devanagari terms are matched as written, the rest in Latin."""
        terms = [str(t) for t in terms or []]
        if not terms:
            return None
        return cls.of(
            {"en": [t for t in terms if not has_devanagari(t)], "hi": [t for t in terms if has_devanagari(t)]}
        )

    def spans(self, latin: str, native: str) -> list[tuple[str, int, int]]:
        found = []
        for name, pattern, text in (("latin", self.latin, latin), ("native", self.native, native)):
            if pattern is not None:
                found += [(name, m.start(), m.end()) for m in pattern.matches(text)]
        return found

    @staticmethod
    def near(mine: list[tuple[str, int, int]], spans: list[tuple[str, int, int]]) -> bool:
        """Whether one of `mine` (a modifier's spans) is within WINDOW characters of one of `spans` (a concept's)."""
        return any(f == g and b - WINDOW <= s2 <= e + WINDOW for f, b, e in spans for g, s2, _ in mine)

    def any(self, latin: str, native: str) -> bool:
        return bool(
            (self.latin is not None and self.latin.search(latin))
            or (self.native is not None and self.native.search(native))
        )


@dataclass(frozen=True)
class Concept:
    name: str
    group: str  # what staff see: infection, bleeding, allergy, swelling, breathing, severe_pain, ...
    level: str  # red_flag | watch | mild
    terms: Terms
    escalate_with: tuple[str, ...]
    exceptions: Terms | None


class Model:
    """prompts/symptoms.yaml compiled once."""

    def __init__(self, data: dict):
        neg = data["negators"]
        self.neg_before = {respell(native_form(str(w))) for w in neg["before"]}
        self.neg_after = {respell(native_form(str(w))) for w in neg["after"]}
        self.neg_filler = {respell(native_form(str(w))) for w in neg["after_filler"]}
        self.stopping = {respell(native_form(str(w))) for w in neg["not_when_near"]}
        self.reporting = Terms.of(data["reporting"])
        self.informational = Terms.of(data["informational"])
        self.leading = Terms.of(data["informational_leading"], leading=True)
        self.not_happening = Terms.of(data["not_happening"])
        self.modifiers = {name: Terms.of(entry) for name, entry in data["modifiers"].items()}
        self.improving = Terms.of(data["improving"])
        self.crisis = Terms.of(data["crisis"])
        self.not_crisis = Terms.listed(data["crisis"].get("except"))
        self.concepts = []
        for name, entry in data["concepts"].items():
            unknown = [m for m in entry.get("escalate_with", []) if m not in self.modifiers]
            if unknown:
                raise ValueError(f"symptoms.yaml: concept {name} escalates with unknown modifier {unknown[0]!r}")
            self.concepts.append(
                Concept(
                    name,
                    str(entry.get("group", name)),
                    str(entry["level"]),
                    Terms.of(entry),
                    tuple(entry.get("escalate_with", [])),
                    Terms.listed(entry.get("except")),
                )
            )

    def _negated(self, text: str, start: int, end: int) -> bool:
        """'no fever', 'not swollen', 'bukhar nahi hai': a negator just before (same clause) or just after the
        symptom word; not 'khoon ruk nahi raha' (a negator with a 'stop' word is about stopping)."""
        before = re.split(r"[,.;:!?]", text[:start])[-1].split()[-3:]
        after = re.split(r"[,.;:!?]", text[end:])[0].split()[:3]
        if any(w.strip("'\"") in self.stopping for w in before[-2:] + after):
            return False
        if any(w.strip("'\"") in self.neg_before for w in before):
            return True
        if after and after[0] in self.neg_filler:
            after = after[1:]
        return bool(after) and after[0] in self.neg_after

    def assess(self, latin: str, native: str) -> Finding:
        latin = respell(latin)
        crisis = self.crisis.any(latin, native) and not (self.not_crisis and self.not_crisis.any(latin, native))
        reported = self.reporting.any(latin, native)
        asked = self.informational.any(latin, native) or self.leading.any(latin, native)
        general = asked and not reported or self.not_happening.any(latin, native)
        urgent: Finding | None = None
        symptom: Finding | None = None
        found: dict[str, list[tuple[str, int, int]]] = {}  # a modifier's spans, found once per message

        def negated(span: tuple[str, int, int]) -> bool:
            return self._negated(latin if span[0] == "latin" else native, span[1], span[2])

        def modifier(name: str, terms: Terms) -> list[tuple[str, int, int]]:
            if name not in found:
                found[name] = [sp for sp in terms.spans(latin, native) if not negated(sp)]
            return found[name]

        for concept in self.concepts:
            spans = [sp for sp in concept.terms.spans(latin, native) if not negated(sp)]
            if concept.exceptions is not None:
                excepted = concept.exceptions.spans(latin, native)
                spans = [sp for sp in spans if not any(sp[0] == f and b <= sp[1] < e for f, b, e in excepted)]
            if not spans:
                continue
            if concept.level == "red_flag":
                urgent = urgent or Finding("emergency", concept.group, concept.name)
                continue
            boosts = [m for m in concept.escalate_with if Terms.near(modifier(m, self.modifiers[m]), spans)]
            if Terms.near(modifier("improving", self.improving), spans):  # "less every day": not getting worse
                boosts = [m for m in boosts if m not in ("worsening", "spreading", "persistent")]
            if boosts:
                urgent = urgent or Finding("emergency", concept.group, f"{concept.name} + {boosts[0]}")
            elif concept.level != "sign":  # a `sign` ('a spot', 'daag') alone is not a symptom
                symptom = symptom or Finding("symptom", concept.group, concept.name)
        if crisis:  # first, with the emergency too when one is reported ("I want to die, the bleeding won't stop")
            also = urgent is not None and not general
            return Finding(
                "crisis", "with_emergency" if also else "crisis", "despair or thoughts of not living or of self-harm"
            )
        if urgent is not None:
            return Finding("question", urgent.concept, f"{urgent.why}, asked in general") if general else urgent
        if symptom is not None:
            return Finding("question", symptom.concept, f"{symptom.why}, asked in general") if general else symptom
        return Finding("none")


@lru_cache(maxsize=1)
def model() -> Model:
    return Model(load("symptoms.yaml"))
