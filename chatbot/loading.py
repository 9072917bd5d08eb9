"""Loading: content files (.md, .html, .txt) -> validated Pages, or ContentErrors that say what to do."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml
from bs4 import BeautifulSoup

try:  # libyaml's parser: ~10x faster front matter on large corpora, same results
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader

from chatbot.wording import PROMPTS, load

SUPPORTED = (".md", ".markdown", ".html", ".htm", ".txt")
CHECKS = PROMPTS / "content_checks.yaml"
DANGEROUS_BLOCK = re.compile(
    r"<\s*(script|style|iframe|object|embed|form|svg|template)\b.*?(</\s*\1\s*>|$)", re.I | re.S
)
ANY_TAG = re.compile(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)\b[^>]*>")
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
DROP_TAGS = ("script", "style", "nav", "header", "footer", "aside", "form", "noscript", "iframe", "svg", "button")


@dataclass(frozen=True)
class Page:
    """One clinic page, normalised to Markdown. `path` is relative to the content folder."""

    path: str
    title: str
    text: str
    sha256: str
    meta: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # what was removed from the page and why, for the editor
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # section heading -> patient questions

    @property
    def url(self) -> str:
        return self.meta.get("url", "")


@dataclass(frozen=True)
class ContentError:
    """A file that cannot be ingested: `path: problem; fix`."""

    path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}; {self.fix}"


class InvalidContent(Exception):
    def __init__(self, error: ContentError):
        super().__init__(str(error))
        self.error = error


def content_files(content_dir: Path) -> list[Path]:
    """Every file an editor put in the content folder (hidden files and README excluded), sorted."""
    found = []
    for root, dirs, files in os.walk(content_dir):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for name in files:
            path = os.path.join(root, name)
            if not name.startswith((".", "_")) and name.rsplit(".", 1)[0].upper() != "README" and os.path.isfile(path):
                found.append(path)
    return [Path(name) for name in sorted(found)]


@dataclass
class Scan:
    """A content folder compared with what is already indexed."""

    pages: list[Page]  # new or changed pages, parsed and checked
    unchanged: list[str]  # pages whose bytes equal the indexed version: not parsed again
    errors: list[ContentError]


def scan_folder(content_dir: Path, max_bytes: int, known: Mapping[str, str] | None = None) -> Scan:
    """Load every page in `content_dir`, except those whose sha256 is `known[path]` already; bad files come
    back as errors, never half-loaded pages."""
    if not content_dir.is_dir():
        raise FileNotFoundError(f"{content_dir}: content folder not found; create it or set CHATBOT_CONTENT_DIR")
    known = known or {}
    scan = Scan([], [], [])
    prefix = os.path.join(content_dir, "")
    for path in content_files(content_dir):
        rel = str(path)[len(prefix) :].replace(os.sep, "/")  # content_files' paths all start with prefix
        raw = path.read_bytes()
        if rel in known and hashlib.sha256(raw).hexdigest() == known[rel]:
            scan.unchanged.append(rel)
            continue
        try:
            scan.pages.append(load_page(rel, raw, max_bytes))
        except InvalidContent as exc:
            scan.errors.append(exc.error)
    return scan


def load_folder(content_dir: Path, max_bytes: int) -> tuple[list[Page], list[ContentError]]:
    """Load and check every page in `content_dir`."""
    scan = scan_folder(content_dir, max_bytes)
    return scan.pages, scan.errors


def rules_fingerprint(chunk_chars: int) -> str:
    """Changes when the loading or chunking rules change, so that every page is read and chunked again."""
    digest = hashlib.sha256(f"{chunk_chars}".encode())
    for path in (Path(__file__), Path(__file__).with_name("chunking.py"), CHECKS):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_page(rel: str, raw: bytes, max_bytes: int) -> Page:
    """Validate and parse one file's bytes. Raises InvalidContent with a fix the editor can act on."""

    def fail(problem: str, fix: str) -> InvalidContent:
        return InvalidContent(ContentError(rel, problem, fix))

    suffix = Path(rel).suffix.lower()
    if suffix not in SUPPORTED:
        raise fail(f"unsupported file type '{suffix or 'none'}'", "save the page as .md, .html or .txt")
    if len(raw) > max_bytes:
        raise fail(f"file is {len(raw):,} bytes, over the {max_bytes:,}-byte limit", "split it into smaller pages")
    if b"\x00" in raw[:8192]:
        raise fail("file looks binary, not text", "export the page as plain Markdown, HTML or text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not valid UTF-8 (byte {exc.start})", "re-save the file with UTF-8 encoding") from None
    if not text.strip():
        raise fail("file is empty", "add the page text or delete the file")
    text = text.replace("\r\n", "\n").replace("\r", "\n")

    questions: dict[str, tuple[str, ...]] = {}
    if suffix in (".html", ".htm"):
        title, body, meta = _from_html(text)
    elif suffix == ".txt":
        title, body, meta = _from_txt(text)
    else:
        data, body = _split_front_matter(text, fail)
        questions = _questions(data.pop("questions", None), body, fail)
        meta = {str(k): "" if v is None else str(v) for k, v in data.items()}
        title, body = _markdown_title(body, meta.get("title", ""))
    if not title:
        raise fail("no title found", "add a '# Title' line (or 'title:' in the front matter)")
    if not body.strip():
        raise fail("page has a title but no text", "add the page text under the title")
    for key in ("reviewed_on", "review_due"):
        if meta.get(key) and not _is_date(meta[key]):
            raise fail(f"front matter '{key}: {meta[key]}' is not a date", f"write it as {key}: 2026-11-20")
    body, warnings = neutralise(body)
    warnings += section_warnings(body)
    digest = hashlib.sha256(raw).hexdigest()
    return Page(rel, title.strip(), body.strip() + "\n", digest, meta, tuple(warnings), questions)


SECTION = re.compile(r"^##\s+(.+?)\s*#*\s*$", re.M)
SECTION_MAX_WORDS = 120  # the chatbot quotes a whole section: longer ones make long answers
REFERS_BACK = re.compile(r"^(?:so|that|this|these|those|but|however|then|it|they|also|such|thus|hence)\b", re.I)


def section_warnings(body: str) -> list[str]:
    """Sections the chatbot cannot quote well: too long, or opening with a word that refers back ('So ...')."""
    found = []
    parts = SECTION.split(body)
    for heading, text in zip(parts[1::2], parts[2::2], strict=True):
        words = len(text.split())
        if words > SECTION_MAX_WORDS:
            found.append(
                f"section '{heading}' is {words} words; the chatbot quotes whole sections, so keep each under "
                f"{SECTION_MAX_WORDS} words (split it under two headings)"
            )
        first = text.strip().split("\n", 1)[0].lstrip("-* ")
        if REFERS_BACK.match(first):
            found.append(
                f"section '{heading}' starts with '{first.split()[0]}', which refers back to something the patient "
                "will not see; start each section so that it stands alone"
            )
    return found


def _questions(data: object, body: str, fail) -> dict[str, tuple[str, ...]]:
    """Front matter `questions:` -> {section heading: patient questions}; every heading must be one of the page's."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise fail(
            "front matter 'questions' is not a list per section",
            "write it as 'questions:' then one "
            "'  Section heading:' line per section with '    - a question' lines under it",
        )
    headings = set(SECTION.findall(body))
    found: dict[str, tuple[str, ...]] = {}
    for heading, items in data.items():
        if str(heading) not in headings:
            raise fail(
                f"front matter 'questions' names a section '{heading}' the page does not have",
                "copy the '## ' heading exactly, or remove those questions",
            )
        if not isinstance(items, list) or not all(isinstance(q, str) and q.strip() for q in items):
            raise fail(
                f"front matter questions for '{heading}' are not a list of questions",
                "write one '    - a question' line per question",
            )
        found[str(heading)] = tuple(" ".join(q.split()) for q in items)
    return found


@lru_cache(maxsize=1)
def _instruction_pattern() -> re.Pattern:
    """Every instruction pattern of prompts/content_checks.yaml in one expression (one pass per line)."""
    patterns = load("content_checks.yaml")["instruction_patterns"]
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I)


def neutralise(body: str) -> tuple[str, list[str]]:
    """Remove what must never reach a patient from a page: markup (scripts, iframes, forms, any tag),
    images, and lines that give the chatbot instructions. Returns the clean text and one warning per kind."""
    warnings = []
    for match in DANGEROUS_BLOCK.finditer(body):
        warnings.append(f"<{match.group(1).lower()}> removed: pages must not carry scripts, frames or forms")
    body = DANGEROUS_BLOCK.sub("", body)
    tags = sorted({m.group(1).lower() for m in ANY_TAG.finditer(body)})
    if tags:
        warnings.append(f"HTML tags removed ({', '.join(tags)}): write plain Markdown")
        body = ANY_TAG.sub("", body)
    if MARKDOWN_IMAGE.search(body):
        warnings.append("images removed: the chatbot shows text only")
        body = MARKDOWN_IMAGE.sub("", body)
    kept = []
    for number, line in enumerate(body.split("\n"), start=1):
        if _instruction_pattern().search(line):
            warnings.append(
                f"line {number} reads as an instruction to the chatbot, not patient information; "
                "it was left out: rewrite it as information for patients"
            )
        else:
            kept.append(line)
    return "\n".join(kept), warnings


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
        return True
    except ValueError:
        return False


def _split_front_matter(text: str, fail) -> tuple[dict, str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end == -1:
        raise fail("front matter is not closed", "end it with a line containing only '---'")
    try:
        data = yaml.load(text[4:end], Loader=SafeLoader) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 2})" if line is not None else ""
        raise fail(f"front matter is not valid YAML{where}", "write each field as 'key: value'") from None
    if not isinstance(data, dict):
        raise fail("front matter is not a list of 'key: value' fields", "write each field as 'key: value'")
    return data, text[end + 4 :].lstrip("-").lstrip("\n")


def _markdown_title(body: str, title: str) -> tuple[str, str]:
    """Use the first '# ' line as the title (front matter wins) and drop it from the body."""
    match = re.search(r"^# +(.+?)\s*#*\s*$", body, flags=re.M)
    if match:
        title = title or match.group(1)
        body = body[: match.start()] + body[match.end() :]
    return title, body


def _from_txt(text: str) -> tuple[str, str, dict[str, str]]:
    """A plain-text page: first line is the title; '•'/'*' lines become bullets."""
    lines = text.strip().split("\n")
    body = [re.sub(r"^\s*[•*·]\s*", "- ", line) for line in lines[1:]]
    return lines[0].strip(), "\n".join(body), {}


def _from_html(text: str) -> tuple[str, str, dict[str, str]]:
    """A saved web page: keep the main text and headings as Markdown; drop navigation, scripts and styles."""
    soup = BeautifulSoup(text, "html.parser")
    meta: dict[str, str] = {}
    canonical = soup.find("link", rel="canonical")
    if canonical and canonical.get("href"):
        meta["url"] = str(canonical["href"])
    head_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(DROP_TAGS):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    lines: list[str] = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "p", "li", "td"]):
        words = el.get_text(" ", strip=True)
        if not words or el.find_parent(["li", "td"]) is not None:
            continue
        if el.name.startswith("h"):
            lines += ["", "#" * int(el.name[1]) + " " + words, ""]
        elif el.name == "li":
            lines.append("- " + words)
        else:
            lines += ["", words, ""]
    title, body = _markdown_title("\n".join(lines), "")
    meta["title"] = title or head_title
    return title or head_title, re.sub(r"\n{3,}", "\n\n", body), meta
