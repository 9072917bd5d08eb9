"""Chunking: a Page -> Chunks that follow its headings.

`Chunk` is the one chunk type from here to the answer: chunks.jsonl, Chroma and the lexical index store it as
a row {"id", "text", "metadata"} (`to_row`, `from_row`), and nothing else reads that metadata by key.
A chunk never mixes two sections; a bullet list stays whole where it fits; every chunk
carries its page title, heading path, source path, URL, position and a content-derived id.
A section's patient questions (front matter `questions:`) become extra chunks of kind "question" that
point at the section's first chunk (`parent`): they are embedded and indexed, never quoted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, fields, replace

from chatbot.language import to_latin
from chatbot.loading import Page

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
INTRO_MAX = 400
BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")


@dataclass
class Section:
    path: list[str]
    blocks: list[str]
    preface: str = ""  # the page's short lead ("This page explains ..."), kept for retrieval, not quoted


def chunk_id(page_path: str, heading_path: str, text: str) -> str:
    """Stable id: the same page, section and text always give the same id."""
    return hashlib.sha256(f"{page_path}\n{heading_path}\n{text}".encode()).hexdigest()[:32]


def _list_edge(previous: str, line: str) -> bool:
    """A list starts (not right after its 'lead-in:' line) or ends here: the two sides are separate blocks."""
    if BULLET.match(line) and not BULLET.match(previous):
        return not previous.endswith(":")
    return bool(BULLET.match(previous)) and not BULLET.match(line) and not line.startswith(" ")


def sections(markdown: str) -> list[Section]:
    """Split Markdown into sections by heading; each section is a list of blocks (paragraphs or whole lists)."""
    result = [Section([], [])]
    stack: list[tuple[int, str]] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            result[-1].blocks.append("\n".join(block).strip())
            block.clear()

    for line in markdown.split("\n"):
        heading = HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            stack = [(lvl, name) for lvl, name in stack if lvl < level] + [(level, heading.group(2))]
            result.append(Section([name for _, name in stack], []))
        elif not line.strip():
            flush()
        elif block and _list_edge(block[-1], line):
            flush()
            block.append(line.rstrip())
        else:
            block.append(line.rstrip())
    flush()
    result = [s for s in result if s.blocks]
    # A short page lead ("This page explains ...") is a preface to the first section, not a section of its own.
    if len(result) > 1 and not result[0].path and sum(map(len, result[0].blocks)) <= INTRO_MAX:
        lead = result.pop(0)
        result[0].preface = " ".join(lead.blocks)
    return result


def _split_long(block: str, limit: int) -> list[str]:
    """A block over the limit is split between bullets, else between sentences."""
    if len(block) <= limit:
        return [block]
    lines = block.split("\n")
    units = lines if len(lines) > 1 else re.split(r"(?<=[.!?])\s+", block)
    parts, current = [], ""
    for unit in units:
        joiner = "\n" if len(lines) > 1 else " "
        if current and len(current) + len(unit) + 1 > limit:
            parts.append(current)
            current = unit
        else:
            current = f"{current}{joiner}{unit}" if current else unit
    return parts + [current] if current else parts


@dataclass(frozen=True)
class Chunk:
    """A section chunk, or a patient question (kind "question") that points at its section chunk (`parent`)."""

    id: str
    text: str
    source: str  # the page's path under content/
    title: str  # the page's title
    section: str  # the section's own heading
    heading_path: str  # "Aftercare > The first 48 hours"
    url: str = ""
    position: int = 0  # order on the page
    page_sha256: str = ""
    reviewed_on: str = ""
    review_due: str = ""
    kind: str = "section"
    preface: str = ""  # the page's short lead, on its first chunk only: for retrieval, never quoted
    parent: str = ""  # a question's section chunk

    @property
    def is_question(self) -> bool:
        return self.kind == "question"

    @property
    def section_id(self) -> str:
        """The section chunk this chunk stands for: itself, or a question's parent."""
        return self.parent if self.is_question else self.id

    def metadata(self) -> dict:
        """What Chroma and chunks.jsonl keep beside id and text (a section chunk has no `parent` key)."""
        meta = asdict(self)
        del meta["id"], meta["text"]
        if not self.is_question:
            del meta["parent"]
        return meta

    def to_row(self) -> dict:
        return {"id": self.id, "text": self.text, "metadata": self.metadata()}

    @classmethod
    def from_row(cls, row: dict) -> Chunk:
        meta = row["metadata"]
        return cls(row["id"], row["text"], **{name: meta[name] for name in METADATA if name in meta})

    def embedding_text(self) -> str:
        """What is embedded and indexed lexically: page title, heading path (and the page's lead) give a section
        its context; a patient question is embedded as it is, in Latin letters (so Hindi meets Hindi and
        Hinglish)."""
        if self.is_question:
            return to_latin(self.text)
        preface = f" {self.preface}" if self.preface else ""
        return f"{self.title}. {self.heading_path or self.section}.{preface}\n{self.text}"


METADATA = tuple(f.name for f in fields(Chunk))[2:]


def chunk_page(page: Page, max_chars: int = 1000) -> list[Chunk]:
    """Turn a page into chunks; blocks of one section are packed together up to `max_chars`."""
    docs: list[Chunk] = []
    for section in sections(page.text):
        heading_path = " > ".join(section.path)
        first = len(docs)
        pieces: list[str] = []
        current = ""
        for block in section.blocks:
            for part in _split_long(block, max_chars):
                if current and len(current) + len(part) + 2 > max_chars:
                    pieces.append(current)
                    current = part
                else:
                    current = f"{current}\n\n{part}" if current else part
        if current:
            pieces.append(current)
        for text in pieces:
            docs.append(
                Chunk(
                    id=chunk_id(page.path, heading_path, text),
                    text=text,
                    source=page.path,
                    title=page.title,
                    section=section.path[-1] if section.path else page.title,
                    heading_path=heading_path,
                    url=page.url,
                    position=len(docs),
                    page_sha256=page.sha256,
                    reviewed_on=page.meta.get("reviewed_on", ""),
                    review_due=page.meta.get("review_due", ""),
                    preface=section.preface if not docs[first:] else "",
                )
            )
        name = section.path[-1] if section.path else ""
        if docs[first:] and page.questions.get(name):
            docs += _question_chunks(docs[first], page.questions[name])
    return docs


def _question_chunks(parent: Chunk, questions: tuple[str, ...]) -> list[Chunk]:
    """One chunk per patient question, pointing at the section chunk that answers it."""
    return [
        replace(
            parent,
            id=chunk_id(parent.source, parent.heading_path, "question: " + q),
            text=q,
            kind="question",
            parent=parent.id,
            preface="",
        )
        for q in questions
    ]
