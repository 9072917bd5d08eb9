"""Teach from the unanswered: a question patients asked becomes content, through the same lifecycle as any edit.

    attach_question(settings, get_embedder, "ana", "aftercare.md", "The first 24 to 48 hours", "can i swim?")

adds the question (redacted) to that section's front-matter `questions:`, checks the page as an ingest would,
writes it atomically and stages it (`lifecycle.stage`, audited): patients see it only after the safety gate and a
clinician's publish. `needs_content` records, for the editors, a question the pages should answer but don't.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from chatbot.feedback import redact
from chatbot.indexing import IngestReport
from chatbot.lifecycle import LifecycleError, audit_log, stage
from chatbot.loading import InvalidContent, content_files, load_page
from chatbot.settings import Settings


def sections(settings: Settings) -> list[tuple[str, str]]:
    """(page, section heading) of every Markdown page in the content folder, in page order."""
    found = []
    for path in content_files(settings.content_dir):
        if path.suffix.lower() in (".md", ".markdown"):
            rel = path.relative_to(settings.content_dir).as_posix()
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [(rel, line[3:].strip()) for line in text.split("\n") if line.startswith("## ")]
    return found


def with_question(raw: str, section: str, question: str) -> str:
    """The page text with `question` added under `section` in its front matter (created if missing)."""
    front, body = {}, raw
    if raw.startswith("---\n") and (end := raw.find("\n---", 4)) != -1:
        front = yaml.safe_load(raw[4:end]) or {}
        body = raw[end + 4 :].lstrip("-").lstrip("\n")
    listed = front.setdefault("questions", {}).setdefault(section, [])
    if question not in listed:
        listed.append(question)
    return "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=4096) + "---\n" + body


def attach_question(
    settings: Settings, get_embedder, actor: str, page: str, section: str, question: str
) -> IngestReport:
    """Add a patient question to a section and stage the page. Raises LifecycleError with what to do."""
    question = " ".join(redact(question or "").split())
    if not question:
        raise LifecycleError("the question is empty; copy it from the unanswered list")
    if (page, section) not in sections(settings):
        raise LifecycleError(f"'{page}' has no section '{section}'; pick one from the list")
    path = settings.content_dir / page
    raw = with_question(path.read_text(encoding="utf-8"), section, question)
    try:
        load_page(page, raw.encode("utf-8"), settings.max_file_bytes)  # the checks an ingest makes, first
    except InvalidContent as exc:
        raise LifecycleError(f"not attached: {exc.error}") from None
    _write(path, raw)
    audit_log(settings).record(actor, "attach_question", None, page=page, section=section)
    return stage(settings, get_embedder, actor, skip_invalid=True)


def needs_content(settings: Settings, actor: str, question: str) -> None:
    """Note for the editors that the pages should answer this (redacted) question."""
    audit_log(settings).record(actor, "needs_content", None, question=" ".join(redact(question or "").split()))


def content_requests(settings: Settings, limit: int = 200) -> list[list[str]]:
    """[when, who, question] of every 'needs new content' note, newest first."""
    return [
        [e.at, e.actor, e.details.get("question", "")]
        for e in audit_log(settings).events(limit)
        if e.action == "needs_content"
    ]


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".teach-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
