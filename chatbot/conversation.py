"""Multi-turn: rewrite a follow-up ("how long does it take?", "and after that?") into a question
that stands on its own, from the conversation so far, before retrieval."""

from __future__ import annotations

import re

from chatbot.lexical import STOPWORDS, words

# Words that carry no topic of their own in a follow-up.
VAGUE = frozenset(
    """it that this those them they its one about also else more ok okay so then next after before long much
    many take takes need needed painful hurt safe cost price done happen happens what how why when where who
    which tell me please yes no thanks again same""".split()
)
FOLLOW_UP_START = re.compile(r"^\s*(and|also|what about|how about|but|so|then|after that|aur|phir|or)\b", re.I)
REFERENCE = re.compile(r"\b(it|that|this|those|them|they|its|wo|woh|ye|yeh)\b", re.I)

History = list[tuple[str, str]]


def topic_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and w not in VAGUE and len(w) > 2]


def is_follow_up(question: str) -> bool:
    """Elliptical or referring back: few words of its own and a pronoun, or an 'and ...' opening."""
    own = topic_words(question)
    short = len(question.split()) <= 5 and len(own) <= 1  # "how many days before?": one word of its own
    return bool(FOLLOW_UP_START.match(question)) or (len(own) <= 2 and bool(REFERENCE.search(question))) or short


def standalone(question: str, history: History) -> str:
    """The question to retrieve with: the question itself, or after the last self-contained user question
    when it is a follow-up. 'how long does it take?' after 'what happens during SMP?' ->
    'what happens during SMP? how long does it take?'."""
    if not history or not is_follow_up(question):
        return question
    for user, _bot in reversed(history):
        if topic_words(user) and not is_follow_up(user):
            return f"{user.rstrip()} {question}"
    return question
