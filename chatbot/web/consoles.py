"""What both consoles share: their style, who is signed in and with which role, and the lifecycle views
(what patients see, what is staged, which pages are overdue for review)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

import gradio as gr

from chatbot.lifecycle import overdue_pages, status
from chatbot.settings import Settings
from chatbot.store import StoreError
from chatbot.web.chat import safe_markdown

CSS = """.gradio-container { max-width: 1200px !important; }
.gate-diff del { background: #fde2e2; color: #8a1c1c; }
.gate-diff ins { background: #dff5e1; color: #145a24; text-decoration: none; }
.gate-diff td { vertical-align: top; width: 50%; }"""
OVERDUE_HEADERS = ["page", "title", "review due", "in"]


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


# ------------------------------------------------------------------ shared by both consoles


def role_of(settings: Settings, username: str | None) -> str:
    """'clinician', 'editor', or '' for anyone not in CHATBOT_STAFF_USERS."""
    return settings.staff_users.get(username or "", ("", ""))[1]


def username(request: gr.Request | None) -> str:
    return (getattr(request, "username", None) or "") if request is not None else ""


def signed_in(settings: Settings) -> Callable[[gr.Request], str]:
    def who(request: gr.Request) -> str:
        user = username(request) or "?"
        return f"Signed in as **{safe_markdown(user)}** ({role_of(settings, user) or '?'}). [Log out](logout)"

    return who


def status_line(settings: Settings) -> str:
    """One line on what patients see and what is staged."""
    state = status(settings)
    if "error" in state:
        return f"The index cannot be read: {state['error']}"
    live, staging = state["live"], state["staging"]
    if live is None and staging is None:
        return "Nothing is indexed yet: re-index to stage the content; a clinician then publishes it."
    if live is None:
        return f"Patients see no content yet (nothing is live); staging is {staging}, waiting for a clinician."
    if staging is None or staging == live:
        return f"Patients still see live version {live}; staging is {live} too: nothing is waiting to be published."
    return (
        f"Patients still see live version {live}; staging is {staging}, "
        "waiting for a clinician to check and publish it."
    )


def serving_overdue(settings: Settings) -> str:
    if settings.serve_overdue:
        return "Overdue pages are still served to patients (setting CHATBOT_SERVE_OVERDUE=1, the default)."
    return "Overdue pages are NOT served to patients (setting CHATBOT_SERVE_OVERDUE=0): those questions are declined."


def overdue_view(settings: Settings, today: date | None = None) -> tuple[str, list[list]]:
    """(warning line, rows [page, title, review due, in]) for pages past review_due in live and staging."""
    try:
        found: dict[str, list] = {}
        state = status(settings)
        pointers = ["live"] + (["staging"] if state.get("staging") not in (None, state.get("live")) else [])
        for pointer in pointers:
            for page in overdue_pages(settings, pointer, today):
                row = found.setdefault(page.path, [page.path, page.title, page.review_due, []])
                row[3].append(pointer)
    except (StoreError, ValueError) as exc:
        return f"Review dates cannot be read: {exc}", []
    rows = sorted(([*row[:3], " and ".join(row[3])] for row in found.values()), key=lambda r: (r[2], r[0]))
    if not rows:
        return f"No page is past its review date. {serving_overdue(settings)}", []
    line = (
        f"**Warning: {len(rows)} page(s) are past their review date.** {serving_overdue(settings)} "
        "Ask a clinician to review them and update `reviewed_on` and `review_due` in the page."
    )
    return line, rows
