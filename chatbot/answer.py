"""Answering: triage -> (follow-up rewrite) -> retrieval -> grounded answer with sources and flags.

Triage always runs first and its decision is final; the LLM, when configured, only words an answer
that the extractive path could give, and is checked before a patient sees it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date

from langchain_core.language_models import BaseChatModel

from chatbot import compose, llm
from chatbot.conversation import History, standalone
from chatbot.embedding import Embedder
from chatbot.retrieval import Hit, Index, LiveIndex, is_covered, retrieve
from chatbot.safety import Triage, Triager, render
from chatbot.settings import Settings
from chatbot.store import StoreError


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
        reviewed = f", last reviewed on {self.reviewed_on}" if self.reviewed_on else ""
        return f"[{self.n}] {self.title} - {self.section} (clinic content{reviewed})"


@dataclass
class Flags:
    deferral: bool = False
    escalated: bool = False
    out_of_scope: bool = False
    refused: bool = False


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
            "latency_ms": self.latency_ms,
        }


_STORE_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store")
TRIAGE_ONLY = ("emergency", "crisis", "injection", "offtopic", "greeting", "thanks")


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
        self.deferral = render("deferral", settings)
        self.system = llm.system_prompt(settings.clinic_name, self.deferral)
        self.today: date | None = None  # fixed in tests; None means the real date

    def ask(self, question: str, history: History | None = None) -> Answer:
        question = " ".join(question.split())[: self.settings.max_question_chars]
        history = history or []
        clock = _Clock()
        query = standalone(question, history)
        vec = self.embedder.query_vector(query)
        clock.lap("embed")
        verdict = self.triager.triage(question, vec if query == question else self.embedder.query_vector(question))
        clock.lap("triage")
        if verdict.category in TRIAGE_ONLY:
            return self._triage_answer(question, verdict, clock)
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
            hits = [h for h in hits if not (h.metadata.get("review_due") and h.metadata["review_due"] < today)]
        clock.lap("retrieve")
        answer = self._grounded(question, query, verdict, hits, index.idf, clock)
        answer.index_version = index.version
        return answer

    def _retrieve(self, query: str, vec) -> tuple[Index, list[Hit]]:
        """Embedded Chroma answers in-process; a Chroma server gets a time limit (its client has none)."""

        def work() -> tuple[Index, list[Hit]]:
            index = self.index.get()
            return index, retrieve(index, query, vec, self.settings.top_k)

        if not self.settings.chroma_host:
            return work()
        return _STORE_POOL.submit(work).result(timeout=self.settings.store_timeout_s)

    def _triage_answer(self, question: str, verdict: Triage, clock: _Clock) -> Answer:
        flags = Flags(
            escalated=verdict.category in ("emergency", "crisis"),
            out_of_scope=verdict.category == "offtopic",
            refused=verdict.category == "injection",
        )
        text = render(verdict.category, self.settings)
        return Answer(
            question,
            text,
            "triage",
            flags=flags,
            triage=verdict,
            query=question,
            why=f"triage: {verdict.category} {verdict.subtype} ({verdict.reason})".strip(),
            timings_ms=clock.laps,
        )

    def _grounded(
        self, question: str, query: str, verdict: Triage, hits: list[Hit], idf: dict[str, float], clock: _Clock
    ) -> Answer:
        preface = ""
        if verdict.category == "medical_advice":
            preface = render(f"medical_advice_{verdict.subtype}", self.settings)
        if not is_covered(hits, self.settings.relevance_floor):
            text = f"{preface or render('not_covered', self.settings)}\n\n{self.deferral}"
            best = f"{hits[0].fused:.2f}" if hits else "none"
            return Answer(
                question,
                text,
                "not_covered",
                flags=Flags(deferral=True),
                triage=verdict,
                hits=hits,
                query=query,
                why=f"below the relevance floor {self.settings.relevance_floor} (best {best})",
                timings_ms=clock.laps,
            )
        body, cited = compose.render(query, hits, idf)
        mode = "extractive"
        why = f"answered from {len(cited)} source(s); best score {hits[0].fused:.2f}"
        if self.chat_model is not None:
            used = [hits[i] for i in cited] + [h for i, h in enumerate(hits) if i not in cited]
            draft = llm.generate(self.chat_model, query, used, self.system, self.settings.llm_timeout_s)
            issues = ["no answer in time"] if draft is None else llm.problems(draft, used, self.deferral, self.system)
            if not issues:
                body = draft.replace(self.deferral, "").strip()
                cited, hits, mode = list(range(len(used))), used, "llm"
                why += "; worded by the LLM, checked"
            else:
                why += f"; LLM answer rejected ({issues[0]}), extractive used"
            clock.lap("llm")
        clock.lap("compose")
        if mode == "llm":
            used_numbers = {int(n) for n in llm.CITATION.findall(body)}
            cited = [i for i in cited if i + 1 in used_numbers]
            body = _renumber(body, cited)
        sources = [
            Source(
                n + 1,
                hits[i].title,
                hits[i].section,
                hits[i].metadata["source"],
                hits[i].metadata.get("url", ""),
                hits[i].chunk_id,
                hits[i].fused,
                hits[i].text,
                hits[i].metadata.get("reviewed_on", ""),
            )
            for n, i in enumerate(cited)
        ]
        parts = [p for p in (preface, body, self.deferral) if p]
        return Answer(
            question, "\n\n".join(parts), mode, sources, Flags(deferral=True), verdict, hits, query, why, clock.laps
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
