"""Safety triage: runs on every patient message before retrieval; its decision is never bypassed.

Three signals, all driven by clinician-reviewable data in chatbot/prompts/:
1. The symptom model (symptoms.yaml, chatbot/symptoms.py): crisis, emergencies (a red flag, or a symptom with a
   modifier such as "won't stop"), and symptoms the pages do not answer (the safety net, category "symptom").
2. Rules (triage.yaml): the message is normalised (hidden text revealed, accents and zero-width characters
   removed, repeated letters shortened, misspelt key words corrected), then regular expressions are tried for
   injection > medical_advice > offtopic > greeting/thanks. The more urgent of 1 and 2 decides:
   crisis > emergency > injection > medical_advice > offtopic > symptom > greeting/thanks > question.
   Base64-looking tokens are decoded and triaged too; Cyrillic/Greek look-alike letters are mapped to Latin and
   Devanagari to Hinglish spelling; a message that asks for decoding is also read reversed and in ROT13.
3. Meaning (optional): when the caller passes the message's normalised embedding, its cosine similarity to the
   reviewed example messages (triage.yaml and triage_exemplars.jsonl) can raise a plain question or a symptom
   (never lower anything); crisis or emergency found this way only is "soft": the urgent message, then the answer.

The words patients then see live in prompts/safety_messages.yaml (see `chatbot.wording.render`).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from chatbot import symptoms
from chatbot.language import to_latin
from chatbot.wording import load

CATEGORIES = (
    "crisis",
    "emergency",
    "injection",
    "medical_advice",
    "symptom",
    "offtopic",
    "greeting",
    "thanks",
    "question",
)
RANK = {
    "crisis": 0,
    "emergency": 1,
    "injection": 2,
    "medical_advice": 3,
    "offtopic": 4,
    "symptom": 5,
    "greeting": 6,
    "thanks": 6,
}
SEMANTIC_CATEGORIES = ("crisis", "emergency", "injection", "medical_advice", "offtopic")
URGENT = ("crisis", "emergency")
# prompts/triage_exemplars.jsonl labels -> triage categories ("symptom" and "question" only compete, never raise)
EXEMPLAR_LABELS = {"emergency": "emergency", "crisis": "crisis", "benign_symptom": "symptom", "question": "question"}
PLACEHOLDERS = ("clinic", "contact", "emergency_number", "crisis_line")

_COMMENTS = (
    re.compile(r"<!--(.*?)(?:-->|$)", re.S),  # HTML comment (also an unterminated one)
    re.compile(r"^\s*\[[^\]\n]*\]:\s*(?:#|<>)\s*[(\"'](.*?)[)\"']\s*$", re.M),  # Markdown [//]: # (comment)
)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u201c": '"', "\u201d": '"'})
_REPEATS = re.compile(r"([a-z])\1{2,}")
_WORD = re.compile(r"[a-z]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_LEET = str.maketrans("013457@$", "oieastas")
_MIXED = re.compile(r"\b(?=\w*[a-z])(?=\w*[0-9@$])[a-z0-9@$]+\b")
_GROUP = re.compile(r"@(\w+)")
# Cyrillic and Greek letters that look like Latin ones ('іgnore аll'): mapped to Latin before matching.
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁһӏкмнтвАВЕКМНОРСТХІЈЅαβεικνορτυχΑΒΕΗΙΚΜΝΟΡΤΥΧΖ",
    "aeopcyxijsdhlkmhtbABEKMHOPCTXIJSabeikvoptuxABEHIKMNOPTYXZ",
)
# where a long message is cut into sentences: after . ! ?, at a danda or a line break, at ", and" / ", par"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*।\s*|\n+|(?<=\w),\s+(?:and|but|par|lekin|aur|पर|लेकिन)\s+")
LONG_MESSAGE_WORDS = 20  # from this many words, each sentence is also weighed on its own (see _sentence_vectors)
MAX_SENTENCES = 12
_BACKWARDS = re.compile(r"\b(?:backwards?|reversed?|rot ?-?13|decode|decipher|decrypt|cipher|caesar)\b", re.I)


@dataclass(frozen=True)
class Triage:
    category: str  # one of CATEGORIES
    subtype: str = ""  # e.g. emergency "bleeding", injection "override", medical_advice "dose", offtopic topic
    reason: str = ""  # one short line for clinic staff: which rule/phrase matched
    soft: bool = False  # raised by meaning only: the urgent message comes first, then the usual answer


@dataclass(frozen=True)
class Rule:
    category: str
    subtype: str
    why: str
    regex: re.Pattern[str]
    strong: bool = False  # offtopic only: yields to a core domain word alone ('best treatment for a toothache')
    unless: re.Pattern[str] | None = None  # the rule does not fire when this also matches
    needs: re.Pattern[str] | None = None  # speed only: the rule is tried only when this matches too

    @cached_property
    def case_sensitive(self) -> bool:
        return "(?-i:" in self.regex.pattern


# ---------------------------------------------------------------- text clean-up


def reveal_hidden(text: str) -> str:
    """Unicode-normalise, drop zero-width/format characters, map look-alike and Devanagari letters to Latin,
    and unwrap HTML/Markdown comments (keep their text)."""
    return _unwrap(_visible(text))


def _visible(text: str) -> str:
    """The message as written, for the Devanagari words of the symptom model: format characters dropped."""
    if text.isascii():  # no format characters, and NFKC changes nothing
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")


def _unwrap(visible: str) -> str:
    """`reveal_hidden` of a `_visible` text: look-alike and Devanagari letters to Latin, comments unwrapped."""
    text = to_latin(visible.translate(_CONFUSABLES))
    for pattern in _COMMENTS:
        text = pattern.sub(lambda m: f" {m.group(1)} ", text)
    return text


def fold(text: str) -> str:
    """Lower-case, strip accents, straighten quotes, shorten letter runs ('painnnn' -> 'painn'), tidy spaces."""
    if not text.isascii():  # ASCII has no accents to strip
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().translate(_QUOTES)
    return " ".join(_REPEATS.sub(r"\1\1", text).split())


def undouble(word: str) -> str:
    """'bleeding' -> 'bleding', 'painn' -> 'pain': letters never repeat."""
    return re.sub(r"(.)\1+", r"\1", word)


def unleet(text: str) -> str:
    """'ign0re prev1ous' -> 'ignore previous' (only inside words that mix letters and digits)."""
    return _MIXED.sub(lambda m: m.group().translate(_LEET), text)


def decode_base64(text: str) -> list[str]:
    """Readable text hidden in Base64-looking tokens of 16+ characters."""
    found = []
    for token in _BASE64.findall(text):
        padded = token.rstrip("=") + "=" * (-len(token.rstrip("=")) % 4)
        altchars = b"-_" if ("-" in token or "_" in token) else None
        try:
            decoded = base64.b64decode(padded, altchars=altchars, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        printable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
        if decoded and printable / len(decoded) > 0.9 and re.search(r"[A-Za-z]{2}", decoded):
            found.append(decoded)
    return found


class Speller:
    """Corrects misspelt key words ('bleding' -> 'bleeding'); real look-alike words are left alone."""

    def __init__(self, vocab: Iterable[str], real_words: Iterable[str], cutoff: float = 0.85):
        self.vocab = frozenset(vocab)
        self.real = frozenset(real_words)
        self.cutoff = cutoff
        self.by_undoubled = {undouble(v): v for v in sorted(self.vocab, key=len)}
        self.fix = lru_cache(maxsize=8192)(self._fix)

    def _fix(self, word: str) -> str:
        if word in self.vocab or word in self.real:
            return word
        if undouble(word) in self.by_undoubled:
            return self.by_undoubled[undouble(word)]
        if len(word) < 5:
            return word
        for i in range(len(word) - 1):  # one swapped pair of letters: 'ignroe' -> 'ignore'
            swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            if swapped in self.vocab:
                return swapped
        near = [v for v in self.vocab if len(v) >= 5 and v[0] == word[0] and abs(len(v) - len(word)) <= 2]
        scored = [(difflib.SequenceMatcher(None, word, v).ratio(), v) for v in near]
        best = max(scored, default=(0.0, word))
        return best[1] if best[0] >= self.cutoff else word

    def correct(self, text: str) -> str:
        return _WORD.sub(lambda m: self.fix(m.group()), text)


# ---------------------------------------------------------------- rules file


def _expand(pattern: str, groups: dict[str, str]) -> str:
    """Replace @name with the named word group (groups may use other groups)."""
    unknown = [name for name in _GROUP.findall(pattern) if name not in groups]
    if unknown:
        raise ValueError(f"triage.yaml: unknown word group @{unknown[0]} in pattern {pattern!r}")
    expanded = _GROUP.sub(lambda m: f"(?:{groups[m.group(1)]})", pattern)
    return expanded if expanded == pattern else _expand(expanded, groups)


def _compile(pattern: str, groups: dict[str, str]) -> re.Pattern[str]:
    expanded = _expand(pattern, groups)
    try:
        return re.compile(expanded, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"triage.yaml: pattern {pattern!r} is not a valid regular expression ({exc})") from None


def _rules(section: dict[str, Any], category: str, groups: dict[str, str]) -> list[Rule]:
    return [
        Rule(
            category=category,
            subtype=str(item.get("subtype", "")),
            why=str(item.get("why", item.get("subtype", category))),
            regex=_compile(item["pattern"], groups),
            strong=bool(item.get("strong", False)),
            unless=_compile(item["unless"], groups) if item.get("unless") else None,
            needs=_compile(item["needs"], groups) if item.get("needs") else None,
        )
        for item in section["rules"]
    ]


def _reason(rule: Rule, match: re.Match[str]) -> str:
    words = " ".join(match.group(0).split())
    words = words if len(words) <= 60 else words[:57] + "..."
    label = f"{rule.category}/{rule.subtype}" if rule.subtype else rule.category
    return f"{label}: {rule.why} (matched '{words}')"


# ---------------------------------------------------------------- triage


class Triager:
    """Classifies one patient message; build once, call `triage` per message (thread-safe, read-only)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray] | None = None):
        data = load("triage.yaml")
        groups = {str(k): str(v) for k, v in data["groups"].items()}
        self.speller = Speller(data["typo_words"], data.get("real_words", []))
        self.rules = {c: _rules(data[c], c, groups) for c in ("injection", "medical_advice")}
        self.offtopic_rules = _rules(data["offtopic"], "offtopic", groups)
        self.domain = _compile(data["offtopic"]["domain"], groups)
        self.core_domain = _compile(data["offtopic"]["core_domain"], groups)
        self.greeting = _compile(data["greeting"], groups)
        self.thanks = _compile(data["thanks"], groups)
        self.filler = _compile(data["filler"], groups)
        semantic = data["semantic"]
        self.threshold = {str(k): float(v) for k, v in semantic["threshold"].items()}
        self.margin = {str(k): float(v) for k, v in semantic["margin"].items()}
        self.sentence_extra = float(semantic.get("sentence_extra", 0.0))
        self.labels: list[tuple[str, str]] = []
        texts: list[str] = []
        for category, by_subtype in semantic["exemplars"].items():
            for subtype, examples in by_subtype.items():
                self.labels += [(category, str(subtype or ""))] * len(examples)
                texts += [str(e) for e in examples]
        for row in load("triage_exemplars.jsonl"):  # reviewed examples per class, in three languages
            self.labels.append((EXEMPLAR_LABELS[row["label"]], str(row.get("concept", ""))))
            texts.append(to_latin(row["text"]))  # embedded as questions are: Devanagari in Latin letters
        self.embed = embed
        self.exemplars: np.ndarray | None = None
        if embed is not None:
            self.exemplars = _embedded(embed, tuple(texts))
        categories = np.array([c for c, _ in self.labels])
        calm = ~np.isin(categories, URGENT)  # crisis and emergency compete with these, not with each other
        # per category: the rows of its examples, and the rows of the examples it must be clearly closer than
        self.members = {c: np.flatnonzero(categories == c) for c in SEMANTIC_CATEGORIES if (categories == c).any()}
        self.rivals = {c: np.flatnonzero(calm if c in URGENT else categories != c) for c in self.members}

    # -- public

    def triage(self, text: str, query_vec: np.ndarray | None = None) -> Triage:
        """The category of one message; `query_vec` is its normalised embedding (reused, never computed here)."""
        visible = _visible(text or "")
        revealed = _unwrap(visible)
        clean = self.normalise(revealed)
        result, finding = self._classify(clean, revealed, visible)
        for hidden in self._hidden_payloads(revealed):
            found, _ = self._classify(self.normalise(hidden), hidden, hidden)
            if found.category in RANK and RANK[found.category] < RANK.get(result.category, 9):
                result = Triage(found.category, found.subtype, f"in Base64 text: {found.reason}")
        if RANK.get(result.category, 9) > RANK["injection"]:
            for label, variant in self._rewritten(revealed):
                found = self._first(self.rules["injection"], list(dict.fromkeys([variant, unleet(variant)])), variant)
                if found is not None:
                    result = Triage(found.category, found.subtype, f"in {label} text: {found.reason}")
                    break
        if query_vec is not None and self.exemplars is not None:
            general = finding.level == "question"
            result = self._with_meaning(clean, result, query_vec, general=general)
            for sentence_vec in self._sentence_vectors(visible, result):
                result = self._with_meaning(clean, result, sentence_vec, general=general, extra=self.sentence_extra)
        return result

    def normalise(self, text: str) -> str:
        return self.speller.correct(fold(text))

    def on_topic(self, text: str) -> bool:
        """True when the message has a hair/scalp/skin/SMP/clinic/procedure word (triage.yaml offtopic.domain)."""
        return self.domain.search(self.normalise(reveal_hidden(text or ""))) is not None

    # -- rules

    def _classify(self, clean: str, revealed: str, visible: str) -> tuple[Triage, symptoms.Finding]:
        """The rules and the symptom model together: the more urgent of the two decides."""
        result = self._by_rules(clean, revealed)
        finding = symptoms.model().assess(clean, symptoms.native_form(visible))
        level = finding.level
        if level in ("crisis", "emergency", "symptom") and RANK[level] < RANK.get(result.category, 9):
            result = Triage(level, finding.concept, f"{level}: symptom model ({finding.why})")
        return result, finding

    def _by_rules(self, clean: str, revealed: str) -> Triage:
        checks = (
            lambda: self._first(self.rules["injection"], list(dict.fromkeys([clean, unleet(clean)])), revealed),
            lambda: self._first(self.rules["medical_advice"], [clean]),
            lambda: self._offtopic(clean),
            lambda: self._small_talk(clean),
        )
        for check in checks:
            found = check()
            if found is not None:
                return found
        return Triage("question", reason="no safety rule matched")

    def _first(self, rules: list[Rule], texts: list[str], original: str = "") -> Triage | None:
        """The first rule that matches one of `texts` (or, for case-sensitive rules, the original text)."""
        needed: dict[str, bool] = {}
        for rule in rules:
            for text in [original] if rule.case_sensitive else texts:
                if rule.needs is not None:
                    key = rule.needs.pattern + "\0" + text
                    if key not in needed:
                        needed[key] = rule.needs.search(text) is not None
                    if not needed[key]:
                        continue
                match = rule.regex.search(text)
                if match and not (rule.unless and rule.unless.search(text)):
                    return Triage(rule.category, rule.subtype, _reason(rule, match))
        return None

    def _offtopic(self, clean: str) -> Triage | None:
        """Off-topic rules, unless a domain word appears; `strong` rules yield only to a core domain word
        ('best treatment for a toothache' is off-topic although 'treatment' is a domain word)."""
        if self.core_domain.search(clean):
            return None
        weak_domain = self.domain.search(clean) is not None
        return self._first([r for r in self.offtopic_rules if r.strong or not weak_domain], [clean])

    def _small_talk(self, clean: str) -> Triage | None:
        greets, thanks = self.greeting.search(clean), self.thanks.search(clean)
        if not (greets or thanks):
            return None
        rest = self.filler.sub(" ", self.thanks.sub(" ", self.greeting.sub(" ", clean)))
        if re.search(r"[a-z0-9]", rest):
            return None  # a greeting plus a real question is a question
        match = thanks or greets
        category = "thanks" if thanks else "greeting"
        return Triage(category, reason=f"{category}: only greeting/thanks words (matched '{match.group(0)}')")

    @staticmethod
    def _rewritten(revealed: str) -> list[tuple[str, str]]:
        """The message read backwards and in ROT13, when it asks for decoding: instructions hidden that way."""
        if not _BACKWARDS.search(revealed):
            return []
        return [("reversed", fold(revealed[::-1])), ("ROT13", fold(codecs.decode(revealed, "rot13")))]

    def _hidden_payloads(self, revealed: str, depth: int = 2) -> list[str]:
        found = []
        for decoded in decode_base64(revealed):
            found.append(decoded)
            if depth > 1:
                found += self._hidden_payloads(decoded, depth - 1)
        return found

    # -- meaning

    def _sentence_vectors(self, visible: str, result: Triage) -> Iterable[np.ndarray]:
        """A long message's sentences, embedded together (one batch): in a rambling message the one sentence that
        says "I don't see the point anymore" or "pus is coming out" is diluted in the whole message's vector.
        Only for messages the whole-message reading left below crisis, and only long ones, so a plain question
        costs nothing more."""
        if self.embed is None or RANK.get(result.category, 9) <= RANK["crisis"]:
            return []
        sentences = [s for s in (p.strip() for p in _SENTENCE_END.split(visible)) if len(s.split()) >= 3]
        if len(sentences) < 2 or len(visible.split()) < LONG_MESSAGE_WORDS:
            return []
        return np.asarray(self.embed([to_latin(s) for s in sentences[:MAX_SENTENCES]]), dtype=np.float32)

    def _with_meaning(
        self, clean: str, result: Triage, query_vec: np.ndarray, general: bool = False, extra: float = 0.0
    ) -> Triage:
        """Raise the category when the message is clearly closest to another category's examples; `extra` raises
        the thresholds (one sentence of a long message says less than a whole message)."""
        assert self.exemplars is not None
        soft_emergency = result.soft and result.category == "emergency"  # may still be raised to crisis
        if result.category not in ("question", "symptom") and not soft_emergency:  # a rule's decision stands
            return result
        # einsum, not `@`: BLAS would share out this small product between threads, which right after the
        # embedder's forward pass wait for its threads (~20 ms instead of ~0.2 ms on a busy 2-core machine)
        scores = np.einsum("ij,j->i", self.exemplars, np.asarray(query_vec, dtype=np.float32).reshape(-1))
        current = RANK.get(result.category, 9)
        for category in SEMANTIC_CATEGORIES:
            if RANK[category] >= current:
                break
            mine = self.members.get(category)
            if mine is None:
                continue
            best = int(mine[np.argmax(scores[mine])])
            score = float(scores[best])
            rivals = self.rivals[category]
            nearest_other = float(scores[rivals].max()) if rivals.size else 0.0
            too_far = score < self.threshold.get(category, 1.0) + extra
            if too_far or score - nearest_other < self.margin.get(category, 0.0):
                continue
            if category == "emergency" and general:
                continue
            if category == "offtopic" and self.domain.search(clean):
                continue
            reason = f"{category}: meaning close to a reviewed example (similarity {score:.2f})"
            return Triage(category, self.labels[best][1], reason, soft=category in URGENT)
        return result


def _embedded(embed: Callable[[list[str]], np.ndarray], texts: tuple[str, ...]) -> np.ndarray:
    """The exemplars' vectors; an embedder's bound method keeps them on the embedder, so the engines that share
    it embed the exemplars once."""
    owner = getattr(embed, "__self__", None)
    cache = owner.__dict__.setdefault("_triage_exemplars", {}) if owner is not None else {}
    key = hash(texts)
    if key not in cache:
        vectors = np.asarray(embed(list(texts)), dtype=np.float32)
        if vectors.shape[0] != len(texts):
            raise ValueError(f"embed returned {vectors.shape[0]} vectors for {len(texts)} exemplar sentences")
        cache[key] = vectors
    return cache[key]
