"""Plain functions behind the web app: answering a chat message, rendering it safely, rate limits,
feedback and callback requests. No Gradio here, so all of it is testable without a browser.

Rendering rule: every piece of patient or content text that reaches the page goes through
`safe_markdown` or `html.escape`; the chat never shows raw HTML from an answer, a source or a question.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from chatbot.answer import Answer
from chatbot.feedback import EMAIL, FeedbackLog
from chatbot.wording import fill, render

log = logging.getLogger("chatbot.web")

MARKDOWN_IMAGE = re.compile(r"!\[")
SCRIPT_LINK = re.compile(r"\]\(\s*(?:javascript|data|vbscript|file):", re.I)


def safe_markdown(text: str) -> str:
    """Any text -> Markdown that shows as that text: HTML escaped, images and script links defused."""
    escaped = MARKDOWN_IMAGE.sub(r"!\\[", html.escape(text, quote=False))
    return SCRIPT_LINK.sub("](#", escaped)


def source_messages(answer: Answer, words: dict) -> list[dict]:
    """Each source as a collapsed chat message: "[n] page - section" with the quoted text inside."""
    return [
        {
            "role": "assistant",
            "content": safe_markdown(source.quote.strip()),
            "metadata": {
                "title": safe_markdown(f"{words['sources_heading']} [{source.n}] {source.title} - {source.section}"),
                "log": safe_markdown(
                    f"{source.path}, last reviewed on {source.reviewed_on}" if source.reviewed_on else source.path
                ),
                "status": "done",
            },
        }
        for source in answer.sources
    ]


def sources_text(answer: Answer) -> str:
    """The sources as plain text lines, for API clients."""
    return "\n".join(f"{s.label()} ({s.path})" for s in answer.sources)


def urgent_banner(text: str, title: str) -> str:
    """The red banner shown above the chat when an answer escalates."""
    return (
        f'<div class="urgent-banner" role="alert"><strong>{html.escape(title)}</strong><p>{html.escape(text)}</p></div>'
    )


class RateLimiter:
    """At most `per_minute` questions per session in any 60 seconds; thread-safe, bounded memory: only sessions
    that asked something within the window are kept (and never more than `max_sessions`)."""

    def __init__(self, per_minute: int, window_s: float = 60.0, max_sessions: int = 10_000):
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_sessions = max_sessions
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, session: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(session, None) or deque()
            while times and now - times[0] >= self.window_s:
                times.popleft()
            allowed = len(times) < self.per_minute
            if allowed:
                times.append(now)
            self._seen[session] = times
            while len(self._seen) > self.max_sessions:
                self._seen.popitem(last=False)
            # Least recently used first: drop the sessions whose last question is outside the window.
            while self._seen:
                oldest, last = next(iter(self._seen.items()))
                if last and now - last[-1] < self.window_s:
                    break
                del self._seen[oldest]
            return allowed

    def used(self, session: str, now: float | None = None) -> int:
        """How many of `session`'s questions fall in the current window (nothing is recorded)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sum(1 for t in self._seen.get(session, ()) if now - t < self.window_s)

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class Reply:
    """What the chat shows for one message. `answer` is None when the message was not answered
    (empty, too long, rate limited, engine failure); `text` is then a friendly notice."""

    text: str  # the answer (Markdown from the engine) or the notice, unescaped
    answer: Answer | None = None
    question_id: int | None = None
    notice: str = ""  # "", "empty", "too_long", "rate_limited", "unavailable"

    @property
    def escalated(self) -> bool:
        return bool(self.answer and self.answer.flags.escalated)


def chat_reply(
    engine,
    feedback_log: FeedbackLog | None,
    limiter: RateLimiter,
    message: str,
    history: list[tuple[str, str]],
    session: str,
    words: dict,
    choose: str | None = None,
) -> Reply:
    """Check a patient's message (length, rate), answer it, log it (redacted). Never raises. `choose`: the section
    (chunk id) of a clarification option the patient clicked."""
    message = (message or "").strip()
    if not message:
        return Reply(words["empty"], notice="empty")
    limit = engine.settings.max_question_chars
    if len(message) > limit:
        return Reply(fill(words["too_long"], {"length": len(message)}), notice="too_long")
    if not limiter.allow(session):
        return Reply(words["rate_limited"], notice="rate_limited")
    try:
        answer = engine.ask(message, history[-6:], choose=choose)
    except Exception as exc:  # noqa: BLE001 - a patient must get a message, never a stack trace
        log.error("answering failed: %s", exc.__class__.__name__)
        return Reply(render("unavailable", engine.settings), notice="unavailable")
    question_id = feedback_log.log_question(answer, session) if feedback_log else None
    return Reply(answer.text, answer, question_id)


def reply_messages(reply: Reply, words: dict) -> list[dict]:
    """The chat messages for an answer: the escaped answer (with an urgent heading when escalated),
    then one collapsed message per source."""
    body = safe_markdown(reply.text)
    if reply.escalated:
        body = f"**🚨 {safe_markdown(words['urgent_title'])}**\n\n{body}"
    return [{"role": "assistant", "content": body}] + (source_messages(reply.answer, words) if reply.answer else [])


def choices(answer: Answer | None) -> list[tuple[str, str | None]]:
    """The buttons under an answer: a clarification's options (label, section to quote) or up to three related
    questions (label, None: asked as a new question)."""
    if answer is None:
        return []
    if answer.options:
        return [(f"{o.n}. {o.title}: {o.section}", o.chunk_id) for o in answer.options]
    return [(q, None) for q in answer.related[:3]]


def stream_prefixes(text: str, words_per_step: int = 3, max_steps: int = 12):
    """Growing prefixes of an already-checked text, a few words at a time (for streaming display), in at most
    `max_steps` steps: a long answer streams in bigger pieces, so showing it never takes longer than a short one
    (a streaming answer holds one of the queue's workers until its last piece is shown)."""
    parts = re.split(r"(\s+)", text)
    words = (len(parts) + 1) // 2
    step = 2 * max(words_per_step, -(-words // max_steps))
    for end in range(step, len(parts), step):
        yield "".join(parts[:end])
    yield text


def record_feedback(feedback_log: FeedbackLog, question_id: int | None, liked: bool, comment: str = "") -> int | None:
    """A thumbs up/down (and optional comment) for one logged answer; the comment is redacted by the log."""
    if question_id is None:
        return None
    return feedback_log.add_feedback(question_id, liked, comment)


def conversation_summary(history: list[tuple[str, str]], sources: list[str], escalated: bool) -> str:
    """A short summary for the callback list: the patient's questions and the pages the answers came from."""
    questions = " | ".join(q[:200] for q, _ in history[-5:]) or "(no questions asked)"
    topics = "; ".join(dict.fromkeys(sources)) or "none"
    urgent = " URGENT: an answer advised urgent care." if escalated else ""
    return f"Questions: {questions}. Pages: {topics}.{urgent}"[:1500]


def looks_like_contact(contact: str) -> bool:
    return bool(EMAIL.search(contact)) or sum(c.isdigit() for c in contact) >= 8


def request_callback(
    feedback_log: FeedbackLog, name: str, contact: str, consent: bool, summary: str, words: dict
) -> tuple[bool, str]:
    """Put a consented callback request on the staff list. Returns (saved, message for the patient)."""
    if not consent:
        return False, words["callback_no_consent"]
    name, contact = (name or "").strip(), (contact or "").strip()
    if not name or not looks_like_contact(contact):
        return False, words["callback_missing"]
    saved = feedback_log.add_callback(name, contact, summary, consent=True)
    return (True, words["callback_done"]) if saved else (False, words["callback_failed"])
