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


MOVES_ON = re.compile(
    r"\b(after that|after this|after it|before that|before this|and then|then what|what next|next step|uske baad|"
    r"iske baad|is ke baad|us ke baad|uske pehle|iske pehle)\b|उसके बाद|इसके बाद|उससे पहले",
    re.I,
)


AFTER = re.compile(r"\b(after|baad)\b|बाद", re.I)
# A follow-up that moves on ("and after that?") asks what comes next in the patient's journey: SMP is the one
# procedure these pages are about, so "that" is the procedure.
NEXT_STEP = {True: "what should I do after SMP?", False: "what should I do before SMP?"}


def anchor(question: str, history: History) -> str | None:
    """The earlier question a follow-up stays on ("how long does it take?" after "will the colour fade?"), or
    None: not a follow-up, or one that moves on to what comes next ("and after that?")."""
    if not history or not is_follow_up(question) or MOVES_ON.search(question):
        return None
    for user, _bot in reversed(history):
        if topic_words(user) and not is_follow_up(user):
            return user
    return None


def standalone(question: str, history: History) -> str:
    """The question to retrieve with: the question itself, or after the last self-contained user question
    when it is a follow-up. 'how long does it take?' after 'what happens during SMP?' ->
    'what happens during SMP? how long does it take?'."""
    if not history or not is_follow_up(question):
        return question
    if MOVES_ON.search(question):
        return NEXT_STEP[bool(AFTER.search(question))]
    for user, _bot in reversed(history):
        if topic_words(user) and not is_follow_up(user):
            return f"{user.rstrip()} {question}"
    return question
