"""Answering: triage -> (follow-up rewrite) -> retrieval -> grounded answer with sources and flags.

Triage always runs first and its decision is final; the LLM, when configured, only words an answer
that the extractive path could give, and is checked before a patient sees it.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date

from langchain_core.language_models import BaseChatModel

from chatbot import compose, language, llm
from chatbot.conversation import History, anchor, standalone
from chatbot.embedding import Embedder
from chatbot.feedback import redact
from chatbot.lexical import tokens
from chatbot.retrieval import Hit, Index, LiveIndex, retrieve
from chatbot.safety import Triage, Triager
from chatbot.settings import Settings
from chatbot.store import StoreError
from chatbot.wording import fill, load, render

STAY_WITHIN = 3  # a follow-up stays on the earlier question's section when it is among its top sections
CLARIFY_MARGIN = 0.01  # two different sections this close (fused score): ask which one the patient means
# "Since SMP needs no anaesthesia, can I drive home?": the premise is a part of its own, so that the page that
# speaks to it (local anaesthesia) is quoted too, and its words are never echoed as "not covered".
PREMISE = re.compile(r"^\s*(?:since|as|because|given that|considering)\b([^,?]{6,}),\s*(.+)$", re.I)
DEVANAGARI_WORD = re.compile(r"[\u0900-\u0963\u0966-\u097f]+")  # a Hindi word, without the danda (।)
PART_BAR = 0.1  # a part of a question brings its own section only this far above the relevance floor
PART_SPLIT = re.compile(r"\s*(?:\?|;|\band also\b|\balso\b|\band\b|\baur\b|और|\bplus\b|\bas well as\b)\s*", re.I)


@dataclass(frozen=True)
class Source:
    n: int
    title: str
    section: str
    path: str
    url: str
    chunk_id: str
    score: float
    quote: str
    reviewed_on: str = ""

    def label(self) -> str:
        key = "source_label_reviewed" if self.reviewed_on else "source_label"
        return fill(load("ui.yaml")[key], asdict(self))


@dataclass
class Flags:
    deferral: bool = False
    escalated: bool = False
    out_of_scope: bool = False
    refused: bool = False
    watch: bool = False  # a symptom the pages do not answer: "contact the clinic today" and what to watch for
    clarify: bool = False  # two sections fit about equally: the patient is asked to choose
    partial: bool = False  # the pages answer only part of the question; the answer says which part they don't
    lang: str = "en"  # the patient's language: en, hinglish or hi


@dataclass(frozen=True)
class Option:
    """One choice of a clarification: answering it quotes that section."""

    n: int
    title: str
    section: str
    chunk_id: str


@dataclass
class Answer:
    question: str
    text: str
    mode: str  # extractive | llm | triage | not_covered | unavailable
    sources: list[Source] = field(default_factory=list)
    flags: Flags = field(default_factory=Flags)
    triage: Triage | None = None
    hits: list[Hit] = field(default_factory=list)
    query: str = ""
    why: str = ""  # one line for staff: why the bot answered, declined or escalated
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str | None = None
    options: list[Option] = field(default_factory=list)  # clarification choices
    related: list[str] = field(default_factory=list)  # follow-up questions from neighbouring sections
    uncovered: str = ""  # what the pages do not cover, when they answer only part of the question

    @property
    def latency_ms(self) -> float:
        return round(sum(self.timings_ms.values()), 2)

    def to_json(self) -> dict:
        """The `ask --json` shape."""
        return {
            "question": self.question,
            "answer": self.text,
            "sources": [
                {k: getattr(s, k) for k in ("title", "section", "path", "url", "chunk_id", "score")}
                for s in self.sources
            ],
            "mode": self.mode,
            "flags": asdict(self.flags),
            "lang": self.flags.lang,
            "options": [asdict(o) for o in self.options],
            "related": self.related,
            "latency_ms": self.latency_ms,
        }


_STORE_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store")
TRIAGE_ONLY = ("emergency", "crisis", "symptom", "injection", "offtopic", "greeting", "thanks")


class Engine:
    """Everything a question needs, loaded once: the model, the index, the triage rules, the optional LLM."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        chat_model: BaseChatModel | None = None,
        pointer: str = "live",
        triager: Triager | None = None,
    ):
        """`triager`: share one between engines (it embeds its example sentences when built)."""
        self.settings = settings
        self.embedder = embedder
        self.index = LiveIndex(settings, pointer)
        self.triager = triager or Triager(embedder.encode)
        self.chat_model = chat_model
        self.deferral = render("deferral", settings)  # English: what the LLM must keep
        self.system = llm.system_prompt(settings.clinic_name, self.deferral)
        self.today: date | None = None  # fixed in tests; None means the real date
        self._related_cache: dict[tuple, list[str]] = {}

    def ask(self, question: str, history: History | None = None, choose: str | None = None) -> Answer:
        """Answer one patient message. `choose`: the chunk id of a clarification option the patient picked."""
        question = " ".join(question.split())[: self.settings.max_question_chars]
        history = history or []
        clock = _Clock()
        lang = conversation_language(question, history)
        query = standalone(question, history)
        vec = self.embedder.query_vector(language.to_latin(query))
        own = vec if query == question else self.embedder.query_vector(language.to_latin(question))
        clock.lap("embed")
        verdict = self.triager.triage(question, own)
        clock.lap("triage")
        if verdict.category in TRIAGE_ONLY and not verdict.soft:
            return self._triage_answer(question, verdict, clock, lang)
        try:
            index, hits = self._retrieve(query, vec)
        except Exception as exc:  # noqa: BLE001 - a damaged store or a down/slow Chroma server: no stack trace
            why = (
                f"index unavailable: {exc}" if isinstance(exc, StoreError) else f"store error: {exc.__class__.__name__}"
            )
            return Answer(
                question,
                render("unavailable", self.settings),
                "unavailable",
                triage=verdict,
                why=why,
                timings_ms=clock.laps,
            )
        if not self.settings.serve_overdue:
            today = (self.today or date.today()).isoformat()
            hits = [h for h in hits if not (h.chunk.review_due and h.chunk.review_due < today)]
        settled = bool(choose)  # no clarification: the patient chose, or a follow-up stays on its section
        earlier = anchor(question, history)
        if earlier:  # a follow-up stays on the earlier question's section when that is among its own top sections
            before = retrieve(index, earlier, self.embedder.query_vector(language.to_latin(earlier)), 1)
            if before and before[0].chunk_id in {h.chunk_id for h in hits[:STAY_WITHIN]}:
                hits = before + [h for h in hits if h.chunk_id != before[0].chunk_id]
                settled = True
        if choose and choose in index.chunks:
            hits = [h for h in hits if h.chunk_id == choose] or [_chosen(index, choose)]
        clock.lap("retrieve")
        answer = self._grounded(question, query, verdict, hits, index, clock, lang, bool(choose), settled)
        answer.index_version = index.version
        if verdict.soft:  # urgent by meaning only: the urgent message first, then the answer
            answer.text = f"{render(verdict.category, self.settings, lang)}\n\n{answer.text}"
            answer.flags.escalated = True
            answer.why = f"triage: {verdict.reason}; then {answer.why}"
        return answer

    def _retrieve(self, query: str, vec) -> tuple[Index, list[Hit]]:
        """Embedded Chroma answers in-process; a Chroma server gets a time limit (its client has none)."""

        def work() -> tuple[Index, list[Hit]]:
            index = self.index.get()
            return index, retrieve(index, query, vec, self.settings.top_k)

        if not self.settings.chroma_host:
            return work()
        return _STORE_POOL.submit(work).result(timeout=self.settings.store_timeout_s)

    def _triage_answer(self, question: str, verdict: Triage, clock: _Clock, lang: str) -> Answer:
        flags = Flags(
            escalated=verdict.category in ("emergency", "crisis"),
            out_of_scope=verdict.category == "offtopic",
            refused=verdict.category == "injection",
            watch=verdict.category == "symptom",
            lang=lang,
        )
        text = render(verdict.category, self.settings, lang)
        if verdict.subtype == "with_emergency":  # crisis first, then what to do about the emergency
            text = f"{text}\n\n{render('emergency', self.settings, lang)}"
        if verdict.category == "symptom":
            flags.deferral = True
            text = f"{text}\n\n{render('deferral', self.settings, lang)}"
        return Answer(
            question,
            text,
            "watch" if verdict.category == "symptom" else "triage",
            flags=flags,
            triage=verdict,
            query=question,
            why=f"triage: {verdict.category} {verdict.subtype} ({verdict.reason})".strip(),
            timings_ms=clock.laps,
        )

    def fixed_lines(self) -> list[str]:
        """The lines every grounded answer carries whatever the question (the deferral, in both languages)."""
        return [render(key, self.settings, lang) for key in ("deferral", "content_lead") for lang in ("en", "hi")]

    def _grounded(
        self,
        question: str,
        query: str,
        verdict: Triage,
        hits: list[Hit],
        index: Index,
        clock: _Clock,
        lang: str,
        chosen: bool = False,
        settled: bool = False,
    ) -> Answer:
        deferral = render("deferral", self.settings, lang)  # the lines around the quote in the patient's language
        preface = ""
        if verdict.category == "medical_advice":
            preface = render(f"medical_advice_{verdict.subtype}", self.settings, lang)
        base = dict(question=question, triage=verdict, hits=hits, query=query, timings_ms=clock.laps)
        sections, uncovered = [hits[0]] if hits else [], ""
        if hits and not chosen:  # the patient's own words: a follow-up's rewrite is not a question of two parts
            sections, uncovered = self._parts(question, hits, index)
        if not any(h.fused >= self.settings.relevance_floor for h in sections):
            best = f"{hits[0].fused:.2f}" if hits else "none"
            return Answer(
                text=f"{preface or render('not_covered', self.settings, lang)}\n\n{deferral}",
                mode="not_covered",
                flags=Flags(deferral=True, lang=lang),
                why=f"below the relevance floor {self.settings.relevance_floor} (best {best})",
                **base,
            )
        if not chosen:
            plain = verdict.category == "question" and not settled
            if plain and len(sections) == 1 and not uncovered and _close(hits, self.settings.relevance_floor):
                return self._clarify(hits[:2], lang, base)
            if not uncovered:
                uncovered = _topics(index, premise.group(2) if (premise := PREMISE.match(query)) else query)
        selections = [(hit, compose.select(query, hit.text, index.idf)) for hit in sections]
        body = compose.render(selections)
        mode = "extractive"
        why = f"answered from {len(sections)} section(s); best score {hits[0].fused:.2f}"
        if hits[0].matched:
            why += f"; matched the patient question '{hits[0].matched}'"
        used = sections + [h for h in hits if h not in sections]
        if self.chat_model is not None:
            draft = llm.generate(self.chat_model, query, used, self.system, self.settings.llm_timeout_s)
            issues = ["no answer in time"] if draft is None else llm.problems(draft, used, self.deferral, self.system)
            if not issues:
                body = draft.replace(self.deferral, "").strip()
                mode = "llm"
                why += "; worded by the LLM, checked"
            else:
                why += f"; LLM answer rejected ({issues[0]}), extractive used"
            clock.lap("llm")
        clock.lap("compose")
        if mode == "llm":
            used_numbers = {int(n) for n in llm.CITATION.findall(body)}
            keep = [i for i in range(len(used)) if i + 1 in used_numbers]
            body = _renumber(body, keep)
            sections = [used[i] for i in keep]
        sources = [_source(n + 1, hit) for n, hit in enumerate(sections)]
        partial = render("partial", self.settings, lang, topics=uncovered) if uncovered else ""
        lead = "" if partial else render("content_lead", self.settings, lang)
        parts = [p for p in (preface, partial, lead, body, deferral) if p]
        return Answer(
            text="\n\n".join(parts),
            mode=mode,
            sources=sources,
            flags=Flags(deferral=True, partial=bool(uncovered), lang=lang),
            why=why,
            related=self._related(index, sections[0].chunk_id if sections else hits[0].chunk_id, lang),
            uncovered=uncovered,
            **base,
        )

    def _parts(self, query: str, hits: list[Hit], index: Index) -> tuple[list[Hit], str]:
        """The question's best section, and for a question with parts ("who does it and how long does it take?",
        "Since <premise>, <question>") the best section of another part when it differs (at most two sections),
        and what the parts no section covers ask about."""
        premise = PREMISE.match(query)
        asked = premise.group(2) if premise else query
        parts = [premise.group(1)] if premise else []
        parts += [p for p in PART_SPLIT.split(asked) if len(tokens(p)) >= 2]
        if len(parts) < 2:
            return [hits[0]], ""
        vectors = self.embedder.encode([language.to_latin(p) for p in parts])
        found: list[Hit] = [hits[0]] if hits[0].fused >= self.settings.relevance_floor else []
        missing = []
        for i, (part, vec) in enumerate(zip(parts, vectors, strict=True)):
            if i > 0 and _topics(index, part):  # this part names what no page has: its best section is a guess
                missing.append(part)
                continue
            best = retrieve(index, part, vec, 1)
            bar = self.settings.relevance_floor + (0.0 if premise and i == 0 else PART_BAR)  # a premise: always
            if best and best[0].fused >= bar:
                if all(best[0].chunk_id != h.chunk_id for h in found):
                    found.append(best[0])
            elif not (premise and i == 0):
                missing.append(part)
        if not found:
            return [hits[0]], ""
        return found[:2], _topics(index, " ".join(missing)) if missing else ""

    def _clarify(self, hits: list[Hit], lang: str, base: dict) -> Answer:
        options = [Option(n, h.title, h.section, h.chunk_id) for n, h in enumerate(hits, start=1)]
        lines = [render("clarify", self.settings, lang)] + [f"{o.n}. {o.title}: {o.section}" for o in options]
        return Answer(
            text="\n".join(lines) + "\n\n" + render("deferral", self.settings, lang),
            mode="clarify",
            flags=Flags(clarify=True, deferral=True, lang=lang),
            options=options,
            why=f"two sections score within {CLARIFY_MARGIN}: {hits[0].fused:.3f} and {hits[1].fused:.3f}",
            **base,
        )

    def _related(self, index: Index, chunk_id: str, lang: str) -> list[str]:
        """Up to three follow-up questions: one patient question from each neighbouring section, in the
        patient's language where the section has one (worked out once per index version)."""
        key = (index.version, chunk_id, lang)
        if key not in self._related_cache:
            found = []
            for neighbour in index.neighbours(chunk_id):
                questions = index.questions.get(neighbour, [])
                asked = [q for q in questions if self.triager.triage(q).category == "question"]  # no reports
                mine = [q for q in asked if language.detect(q) == lang] or asked
                if mine:
                    found.append(mine[0])
            self._related_cache[key] = found
        return list(self._related_cache[key])


def conversation_language(question: str, history: History) -> str:
    """The language of this message; a short follow-up without a language of its own ("ok", "2", "and after?")
    keeps the conversation's."""
    lang = language.detect(question)
    if lang == "en" and history and len(question.split()) <= 3:
        return language.detect(history[-1][0])
    return lang


def _topics(index: Index, text: str) -> str:
    """The words of `text` no clinic page or patient question has ('swimming', 'हेलमेट'), as the pages' gap to
    name, written as the patient wrote them; only plain words (never numbers, doses, names or contact details),
    and only one or two: more unknown words mean an unusual spelling."""
    text = redact(text)
    generic = language.generic_words()
    unknown = [
        w for w in index.lexical.unknown_words(text) if w.isalpha() and w not in generic and not _known_stem(index, w)
    ]
    if not 0 < len(set(unknown)) <= 2:
        return ""
    written = {language.to_latin(w).lower(): w for w in DEVANAGARI_WORD.findall(text)}
    return ", ".join(dict.fromkeys(written.get(w, w) for w in unknown))


def _known_stem(index: Index, word: str) -> bool:
    """A Hindi conjunctive form ('rakhakar', 'jhukakar': having kept, having bent) whose stem the pages have."""
    stems = [word[: -len(end)] for end in ("akar", "kar") if word.endswith(end) and len(word) - len(end) >= 4]
    return any(not index.lexical.unknown_words(stem) for stem in stems)


def _close(hits: list[Hit], floor: float) -> bool:
    """Two different sections score about the same: guessing would be a coin toss."""
    return (
        len(hits) > 1
        and hits[1].fused >= floor
        and hits[0].fused - hits[1].fused <= CLARIFY_MARGIN
        and hits[0].chunk_id != hits[1].chunk_id
    )


def _chosen(index: Index, chunk_id: str) -> Hit:
    return Hit(index.chunks[chunk_id], 0.0, 0.0, 1.0)


def _source(n: int, hit: Hit) -> Source:
    return Source(
        n,
        hit.title,
        hit.section,
        hit.source,
        hit.chunk.url,
        hit.chunk_id,
        hit.fused,
        hit.text,
        hit.chunk.reviewed_on,
    )


def _renumber(body: str, cited: list[int]) -> str:
    """LLM citations refer to positions in `used`; renumber them 1..n in the order of `cited`."""
    mapping = {i + 1: n + 1 for n, i in enumerate(cited)}
    return llm.CITATION.sub(lambda m: f"[{mapping.get(int(m.group(1)), m.group(1))}]", body)


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + (now - self._last) * 1000, 2)
        self._last = now
