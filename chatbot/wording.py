"""The one loader of chatbot/prompts/ and the one home of the words patients see.

Everything a clinician reviews lives as data in chatbot/prompts/: the safety messages
(safety_messages.yaml), the page's words (ui.yaml), the LLM's instructions (llm_system.md), the triage
vocabularies and exemplars, the patient vocabulary. `load` reads any of them (parsed once), and `fill` is the
one way placeholders such as {clinic} or {contact} are filled in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml's loader when it is there: the same result, faster
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader

PROMPTS = Path(__file__).parent / "prompts"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
BOTH_LANGUAGES = ("crisis", "emergency", "symptom")  # Hinglish writers get these in Hindi and in English


@cache
def load(name: str) -> Any:
    """A file of prompts/, parsed by its suffix: .yaml (data), .jsonl (a list of rows), else text."""
    text = (PROMPTS / name).read_text(encoding="utf-8")
    if name.endswith(".yaml"):
        return yaml.load(text, Loader=SafeLoader)
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return text


def fill(text: str, values: Mapping[str, object]) -> str:
    """`text` with each {name} that `values` has replaced by its value; any other brace stays as it is."""
    return PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], text)


def clinic_values(settings: Any) -> dict[str, str]:
    """The placeholders every message may use."""
    return {
        "clinic": settings.clinic_name,
        "contact": settings.clinic_contact,
        "emergency_number": settings.emergency_number,
        "crisis_line": settings.crisis_line,
        "max_chars": str(settings.max_question_chars),
        "per_minute": str(settings.rate_limit_per_minute),
    }


# ---------------------------------------------------------------- safety messages


@lru_cache(maxsize=1)
def _messages() -> dict[str, dict[str, str]]:
    data = load("safety_messages.yaml")
    return {str(k): {lang: " ".join(str(v).split()) for lang, v in by_lang.items()} for k, by_lang in data.items()}


def load_messages(lang: str = "en") -> dict[str, str]:
    """Message key -> exact text patients see (with {placeholders}), from prompts/safety_messages.yaml."""
    return {key: by_lang.get(lang, by_lang["en"]) for key, by_lang in _messages().items()}


def render(key: str, settings: Any, lang: str = "en", **extra: str) -> str:
    """The safety message `key` in the patient's language (en, hi; hinglish: see BOTH_LANGUAGES) with the
    clinic's placeholders (and `extra` ones) filled in."""
    messages = _messages()
    if key not in messages:
        raise KeyError(f"safety_messages.yaml has no message {key!r}; known: {', '.join(sorted(messages))}")
    by_lang = messages[key]
    if lang == "hi":
        parts = [by_lang.get("hi") or by_lang["en"]]
    elif lang == "hinglish" and key in BOTH_LANGUAGES:
        parts = [by_lang["hi"], by_lang["en"]]
    else:
        parts = [by_lang["en"]]
    return fill("\n\n".join(p for p in parts if p), {**clinic_values(settings), **extra})


# ---------------------------------------------------------------- the page's words


def ui_words(settings: Any, lang: str = "en") -> dict:
    """prompts/ui.yaml in English (or, for lang 'hi', with its Hindi words), placeholders filled in."""
    data = load("ui.yaml")
    words = {**{k: v for k, v in data.items() if k != "hi"}, **(data.get("hi", {}) if lang == "hi" else {})}
    values = clinic_values(settings)

    def one(text: object) -> str:
        return " ".join(fill(str(text), values).split())

    return {k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in words.items()}
