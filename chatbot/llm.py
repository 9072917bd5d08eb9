"""Optional LLM mode: any LangChain chat model, grounded in the retrieved chunks, and checked before a
patient sees it. Anything that fails the check, errors or is too slow falls back to the extractive answer."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from chatbot.lexical import STOPWORDS, tokens, words
from chatbot.retrieval import Hit
from chatbot.settings import Settings
from chatbot.wording import fill, load

CANARY = "CANARY-SMP-5d1e9a"  # must never appear in an answer: proves the instructions did not leak
NUMBER = re.compile(r"\d+(?:[.,]\d+)?(?:\s*-\s*\d+)?")
CITATION = re.compile(r"\[(\d+)\]")
FORBIDDEN = re.compile(
    r"\b(\d+\s*(mg|mcg|ml|tablets?|pills?|capsules?|units?)\b"
    r"|you are (a |an )?(good |ideal |perfect |suitable )?candidate"
    r"|you (definitely )?have (alopecia|cancer|melanoma|an infection)|guarantee)",
    re.I,
)
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llm")


def build_chat_model(settings: Settings) -> BaseChatModel | None:
    """CHATBOT_LLM=none | ollama:<model> | openai:<model> (with OPENAI_BASE_URL for vLLM and friends)."""
    if settings.llm == "none":
        return None
    provider, _, model = settings.llm.partition(":")
    if provider == "ollama":
        from langchain_ollama import ChatOllama

        return ChatOllama(model=model, base_url=settings.ollama_base_url, temperature=0)
    if provider == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=model, base_url=settings.openai_base_url, temperature=0, timeout=settings.llm_timeout_s, max_retries=0
        )
    raise ValueError(f"CHATBOT_LLM={settings.llm!r}: unknown provider {provider!r}; use ollama: or openai:")


def system_prompt(clinic: str, deferral: str) -> str:
    return fill(load("llm_system.md"), {"clinic": clinic, "deferral": deferral, "canary": CANARY})


def sources_block(hits: list[Hit]) -> str:
    return "\n\n".join(f"[{i + 1}] {h.title} - {h.section}\n{h.text}" for i, h in enumerate(hits))


def generate(model: BaseChatModel, question: str, hits: list[Hit], system: str, timeout_s: float) -> str | None:
    """Ask the model; None on error or timeout (the caller falls back)."""
    messages = [
        SystemMessage(system),
        HumanMessage(f"Sources:\n\n{sources_block(hits)}\n\nPatient question: {question}"),
    ]
    future = _pool.submit(model.invoke, messages)
    try:
        reply = future.result(timeout=timeout_s)
    except FutureTimeout:
        future.cancel()
        return None
    except Exception:  # noqa: BLE001 - any model failure means: use the extractive answer
        return None
    content = reply.content if isinstance(reply.content, str) else str(reply.content)
    return content.strip() or None


def problems(answer: str, hits: list[Hit], deferral: str, system: str) -> list[str]:
    """Why an LLM answer must not reach a patient; an empty list means it may."""
    found = []
    cited = {int(n) for n in CITATION.findall(answer)}
    if not cited:
        found.append("cites no source")
    if any(n < 1 or n > len(hits) for n in cited):
        found.append("cites a source that does not exist")
    if deferral.rstrip(".") not in answer:
        found.append("drops the deferral to the dermatologist")
    if CANARY in answer or any(line.strip() and line.strip() in answer for line in system.splitlines()[2:9]):
        found.append("reveals its instructions")
    if FORBIDDEN.search(answer):
        found.append("gives a dose, a verdict or a guarantee")
    body = CITATION.sub("", answer.replace(deferral, ""))
    source_text = " ".join(h.text for h in hits)
    source_numbers = {n.replace(" ", "") for n in NUMBER.findall(source_text)}
    for number in NUMBER.findall(body):
        if number.replace(" ", "") not in source_numbers:
            found.append(f"states a number the sources do not contain: {number}")
    known = set(tokens(source_text + " " + " ".join(f"{h.title} {h.section}" for h in hits)))
    for sentence in re.split(r"(?<=[.!?])\s+", body):
        content = [t for t in tokens(sentence) if t not in STOPWORDS and len(t) > 2]
        if len(content) >= 4 and sum(t in known for t in content) / len(content) < 0.6:
            found.append(f"makes a claim the sources do not support: {' '.join(words(sentence)[:8])}...")
    return found
