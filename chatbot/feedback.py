"""The question and feedback log that the staff console reads: a SQLite file, or PostgreSQL with
CHATBOT_DATABASE_URL (chatbot/database.py), shared by every app replica.

Patient text is redacted (phone numbers, e-mails, names a patient typed) before anything is written.
The one exception is the callback list: a patient who ticks the consent box asks the clinic to keep
their name, contact details and a short summary of the conversation so that staff can call back.
A failing write (disk full, locked or read-only file, database server down) is logged without patient text and
never breaks the chat: the row waits in memory (at most PENDING_MAX rows, already redacted) and is written with
the next write that succeeds, so a disk that fills up and is then cleared loses no log rows (unless the app stops
in between).
"""

from __future__ import annotations

import csv
import logging
import re
import sqlite3
import threading
import time
from collections import Counter, defaultdict, deque
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.database import (
    ERRORS,
    TRANSIENT,
    URL_HELP,
    Connection,
    DatabaseError,
    database_for,
    postgres_reason,
)
from chatbot.lexical import tokens

if TYPE_CHECKING:
    from chatbot.settings import Settings

log = logging.getLogger("chatbot.feedback")

DAY = 86_400
UNANSWERED_MODES = ("not_covered", "unavailable")
LOW_CONFIDENCE = 0.35  # a fused score under this is shown to staff as "low confidence"
PENDING_MAX = 1000  # log writes kept in memory while the database cannot be written (disk full, locked)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# + or a digit, then digits with spaces, dashes, dots or brackets between: 10+ digits (8+ after a '+').
PHONE = re.compile(r"(?<![\w+])(\+\s?)?\(?\d[\d\s().-]{6,}\d(?!\w)")
NAME_CUE = re.compile(
    r"\b(my\s+name\s+is|my\s+name's|name\s*:|mera\s+naam|mera\s+name|call\s+me|this\s+is|i\s+am|i'm|im)\s+"
    r"([A-Za-z][A-Za-z.'-]*)((?:\s+[A-Za-z][A-Za-z.'-]*)?)",
    re.I,
)
HINGLISH_NAME = re.compile(
    r"\b(main|mai|mein)\s+([A-Za-z][A-Za-z.'-]*)((?:\s+[A-Za-z][A-Za-z.'-]*)?)(?=\s+(?:hoon|hu|hun|hoo)\b)", re.I
)
# "Regards, Meera Iyer", "my wife Sunita Rao": only capitalised words after these cues count as a name.
SIGNED_NAME = re.compile(
    r"\b((?i:regards|thanks|thank\s+you|cheers|sincerely|my\s+(?:wife|husband|son|daughter|mother|father|mom|dad"
    r"|brother|sister|friend|partner)))([,:]?\s+)([A-Z][a-z'.-]+)((?:\s+[A-Z][a-z'.-]+)?)"
)
HERE_NAME = re.compile(r"^(\s*)([A-Z][a-z'-]+)((?:\s+[A-Z][a-z'-]+)?)(\s+here\b)")  # "Rahul here, ..."
STRONG_CUES = ("my name", "name", "mera", "call me", "main", "mai", "mein")
NOT_NAMES = frozenset(
    """a an the not so very too just also still really here there back now new sure ok okay fine good well
    able unable afraid scared worried nervous concerned curious confused interested sorry happy glad sad
    bald balding male female man woman boy girl guy lady mother father mom dad wife husband son daughter
    patient doctor student from in on at of to for with about after before over under into going
    diabetic pregnant allergic sick ill unwell healthy young old years year months weeks days age aged
    indian asking looking planning thinking trying hoping wondering having getting taking using losing
    suffering feeling facing considering since still always never currently already almost totally
    thik theek pareshan bimar khush ready hu hoon hun hai hain koi kya yeh ye wo woh bhi smp it that this there
    what when where which who why how your my his her their our done finished free busy available
    because if but and or""".split()
)


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    needed = 8 if match.group(1) else 10
    return "[phone]" if needed <= digits <= 15 else match.group(0)


def _name(match: re.Match[str]) -> str:
    cue, first, second = match.group(1), match.group(2), match.group(3)
    lowered = cue.lower()
    if first.lower() in NOT_NAMES:
        return match.group(0)
    capital = first[0].isupper()
    if lowered.startswith("this") and not capital:
        return match.group(0)  # "this is normal?" is not a name
    plain_word = first.lower().endswith(("ing", "ed", "ful", "ous", "ive", "ly", "ish"))
    if not lowered.startswith(STRONG_CUES) and plain_word and not capital:
        return match.group(0)  # "i am bleeding", "i'm worried"
    spacing = match.group(0)[len(cue) : match.start(2) - match.start(0)]
    surname = second.strip()
    if surname and surname.lower() not in NOT_NAMES and (surname[0].isupper() or lowered.startswith(STRONG_CUES)):
        second = ""
    return f"{cue}{spacing}[name]{second}"


def redact(text: str) -> str:
    """Remove e-mails, phone numbers and names a patient typed ("my name is Ravi", "main Ravi hoon")."""
    text = EMAIL.sub("[email]", text)
    text = PHONE.sub(_phone, text)
    text = NAME_CUE.sub(_name, text)
    text = SIGNED_NAME.sub(
        lambda m: m.group(0) if m.group(3).lower() in NOT_NAMES else f"{m.group(1)}{m.group(2)}[name]", text
    )
    text = HERE_NAME.sub(
        lambda m: m.group(0) if m.group(2).lower() in NOT_NAMES else f"{m.group(1)}[name]{m.group(4)}", text
    )
    return HINGLISH_NAME.sub(_name, text)


SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, session TEXT, question TEXT, mode TEXT, category TEXT,
    escalated INTEGER, out_of_scope INTEGER, refused INTEGER, best_score REAL, top_page TEXT, top_section TEXT,
    sources TEXT, why TEXT, latency_ms REAL, index_version TEXT);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, question_id INTEGER, rating TEXT, comment TEXT);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, name TEXT, contact TEXT, summary TEXT, consent INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS questions_ts ON questions(ts);
"""


class FeedbackLog:
    """Append-only log of questions, ratings and callback requests, with retention in days."""

    def __init__(self, path: Path, retention_days: int = 90, database_url: str = ""):
        """The SQLite file `path`, or with `database_url` (postgresql://...) that database instead."""
        self.path = Path(path)
        self.db = database_for(database_url, self.path)
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._last_purge = 0.0
        self._pending: deque[tuple[str, tuple]] = deque()
        self.dropped = 0  # writes lost because more than PENDING_MAX were waiting
        self._ready = False
        try:
            self._ensure_schema()
        except ERRORS as exc:
            log.error(
                "feedback log %s cannot be opened (%s: %s); writes wait in memory until it can (check "
                "CHATBOT_DATABASE_URL or CHATBOT_DATA_DIR)",
                self.db.label,
                exc.__class__.__name__,
                _reason(exc),
            )
        self.purge()

    @classmethod
    def open(cls, settings: Settings) -> FeedbackLog:
        """The app's log: CHATBOT_DATABASE_URL when set, else chatbot.sqlite3 in CHATBOT_DATA_DIR."""
        return cls(Path(settings.data_dir) / "chatbot.sqlite3", settings.retention_days, settings.database_url)

    def _ensure_schema(self) -> None:
        if not self._ready:
            with self._connect() as db:
                db.script(SCHEMA)
            self._ready = True

    @property
    def pending(self) -> int:
        """How many writes are waiting in memory for the database to accept them again."""
        return len(self._pending)

    def _connect(self) -> Connection:
        return self.db.connect()

    def _write(self, sql: str, params: tuple) -> int | None:
        """Run one INSERT/UPDATE, after any writes still waiting from earlier failures. On a failure the write
        waits in memory too, the error class (never the values) is logged and None is returned."""
        with self._lock:
            try:
                self._ensure_schema()
                with self._connect() as db:
                    for waiting in self._pending:
                        db.write(*waiting)
                    rowid = db.write(sql, params)
            except TRANSIENT as exc:  # full, locked, read-only, unreachable: retry later
                if len(self._pending) >= PENDING_MAX:
                    self._pending.popleft()
                    self.dropped += 1
                self._pending.append((sql, params))
                log.error(
                    "feedback log write failed (%s: %s); %d write(s) wait in memory; the chat goes on",
                    exc.__class__.__name__,
                    _reason(exc),
                    len(self._pending),
                )
                return None
            except ERRORS as exc:  # a write that can never succeed: do not let it block the others
                log.error("feedback log write refused (%s); dropped", exc.__class__.__name__)
                return None
            if self._pending:
                log.warning("feedback log: %d delayed write(s) saved", len(self._pending))
                self._pending.clear()
            return rowid

    def _read(self, sql: str, params: tuple = ()) -> list[dict]:
        try:
            with self._connect() as db:
                return db.rows(sql, params)
        except ERRORS as exc:
            log.error("feedback log read failed (%s)", exc.__class__.__name__)
            return []

    # -- writing --------------------------------------------------------------------------
    def log_question(self, answer, session: str = "") -> int | None:
        """Store one answered question (redacted); `answer` is a chatbot.answer.Answer."""
        if time.time() - self._last_purge > DAY:
            self.purge()
        best = answer.hits[0] if answer.hits else None
        sources = "; ".join(f"{s.path}#{s.section}" for s in answer.sources)
        return self._write(
            "INSERT INTO questions (ts, session, question, mode, category, escalated, out_of_scope, refused, "
            "best_score, top_page, top_section, sources, why, latency_ms, index_version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                session[:16],
                redact(answer.question),
                answer.mode,
                answer.triage.category if answer.triage else "",
                int(answer.flags.escalated),
                int(answer.flags.out_of_scope),
                int(answer.flags.refused),
                best.fused if best else None,
                best.source if best else "",
                best.section if best else "",
                sources,
                redact(answer.why),
                answer.latency_ms,
                answer.index_version or "",
            ),
        )

    def add_feedback(self, question_id: int | None, liked: bool, comment: str = "") -> int | None:
        return self._write(
            "INSERT INTO feedback (ts, question_id, rating, comment) VALUES (?, ?, ?, ?)",
            (time.time(), question_id, "up" if liked else "down", redact(comment.strip())[:1000]),
        )

    def set_comment(self, feedback_id: int, comment: str) -> bool:
        done = self._write(
            "UPDATE feedback SET comment = ? WHERE id = ?", (redact(comment.strip())[:1000], feedback_id)
        )
        return done is not None

    def add_callback(self, name: str, contact: str, summary: str, consent: bool) -> int | None:
        """The one unredacted record, kept only with the patient's explicit consent."""
        if not consent:
            raise ValueError("a callback request needs the patient's consent")
        return self._write(
            "INSERT INTO callbacks (ts, name, contact, summary, consent) VALUES (?, ?, ?, ?, 1)",
            (time.time(), name.strip()[:100], contact.strip()[:100], summary[:1500]),
        )

    def purge(self, now: float | None = None) -> int:
        """Delete every row older than the retention period; returns how many went."""
        cutoff = (now or time.time()) - self.retention_days * DAY
        removed = 0
        try:
            with self._lock, self._connect() as db:
                for table in ("questions", "feedback", "callbacks"):
                    removed += db.write(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
        except ERRORS as exc:
            log.error("feedback log purge failed (%s)", exc.__class__.__name__)
        self._last_purge = time.time()
        return removed

    # -- reading (staff console) ----------------------------------------------------------
    def questions(self, limit: int = 500) -> list[dict]:
        return self._read("SELECT * FROM questions ORDER BY id DESC LIMIT ?", (limit,))

    def feedback(self, limit: int = 500) -> list[dict]:
        return self._read(
            "SELECT f.id, f.ts, f.rating, f.comment, q.question, q.mode, q.top_page FROM feedback f "
            "LEFT JOIN questions q ON q.id = f.question_id ORDER BY f.id DESC LIMIT ?",
            (limit,),
        )

    def callbacks(self, limit: int = 500) -> list[dict]:
        return self._read("SELECT * FROM callbacks ORDER BY id DESC LIMIT ?", (limit,))

    def unanswered(self, limit: int = 1000) -> list[dict]:
        """Declined (not covered, off-topic), low-confidence or thumbs-down questions, newest first."""
        return self._read(
            "SELECT q.*, (SELECT COUNT(*) FROM feedback f WHERE f.question_id = q.id AND f.rating = 'down') AS downs "
            "FROM questions q WHERE q.mode IN ('not_covered', 'unavailable') OR q.out_of_scope = 1 "
            "OR (q.mode IN ('extractive', 'llm') AND q.best_score < ?) "
            "OR q.id IN (SELECT question_id FROM feedback WHERE rating = 'down') ORDER BY q.id DESC LIMIT ?",
            (LOW_CONFIDENCE, limit),
        )


def _reason(exc: BaseException) -> str:
    """SQLite's, PostgreSQL's or the OS's reason for a failure, without any value that was being written."""
    if isinstance(exc, OSError):
        return exc.strerror or "OS error"
    if postgres := postgres_reason(exc):
        return postgres
    text = str(exc)
    return text if text in KNOWN_SQLITE_ERRORS else "database error"


KNOWN_SQLITE_ERRORS = frozenset(
    {
        "database or disk is full",
        "database is locked",
        "attempt to write a readonly database",
        "unable to open database file",
        "disk I/O error",
        "no such table: questions",
        "no such table: feedback",
        "no such table: callbacks",
    }
)


def reason(row: dict) -> str:
    """Why a question counts as unanswered, in a word or two."""
    if row.get("downs"):
        return "thumbs down"
    if row.get("out_of_scope"):
        return "off-topic"
    if row.get("mode") in UNANSWERED_MODES:
        return row["mode"].replace("_", " ")
    return "low confidence"


GENERIC = frozenset(tokens("smp scalp micropigmentation procedure treatment after before get much long want know tell"))


def keywords(question: str, n: int = 2) -> str:
    """The question's main words, stemmed and sorted: 'Can I colour my hair after SMP?' -> 'colour hair'."""
    found = [
        t
        for t in tokens(question.replace("[name]", "").replace("[phone]", "").replace("[email]", ""))
        if t not in GENERIC and len(t) > 2
    ]
    return " ".join(sorted(dict.fromkeys(found[: n + 1]))[:n]) or "(no keywords)"


def group_unanswered(rows: list[dict]) -> list[dict]:
    """Group unanswered questions by their main words (stemmed), biggest gap first, with the nearest pages."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[keywords(row.get("question") or "")].append(row)
    result = []
    for words_, members in groups.items():
        reasons = Counter(reason(r) for r in members)
        pages = Counter(r.get("top_page") or "(none)" for r in members)
        result.append(
            {
                "count": len(members),
                "keywords": words_,
                "nearest page": ", ".join(p for p, _ in pages.most_common(2)),
                "why": ", ".join(f"{k} x{v}" for k, v in reasons.most_common()),
                "examples": " | ".join(dict.fromkeys(r["question"] for r in members[:3])),
            }
        )
    return sorted(result, key=lambda g: (-g["count"], g["keywords"]))


def write_csv(rows: list[dict], path: Path) -> Path:
    """Rows -> CSV (header from the first row's keys). Cells that start like a formula are quoted for Excel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(v) for k, v in row.items()})
    return path


def _cell(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


LOG_TABLES = ("questions", "feedback", "callbacks", "audit")


def migrate_log(sources: list[Path], url: str) -> dict[str, int]:
    """Copy the questions, feedback, callbacks and audit rows of SQLite log files into the database at `url`,
    with their ids (a rating keeps pointing at its question), in one transaction; returns rows copied per table.
    It only fills empty tables, so a log can never be imported twice: otherwise DatabaseError, nothing copied."""
    from chatbot.audit import SCHEMA as AUDIT_SCHEMA

    target = database_for(url, Path())
    if not target.postgres:
        raise DatabaseError(f"--to needs a database URL; {URL_HELP}")
    found: dict[str, tuple[list[str], list[tuple]]] = {}
    for source in sources:
        for table, content in _read_log(source).items():
            if table in found:
                raise DatabaseError(f"table {table!r} is in more than one --from file ({source} too); give each once")
            found[table] = content
    if not found:
        raise DatabaseError(f"no log tables ({', '.join(LOG_TABLES)}) in {', '.join(map(str, sources))}")
    to_copy = {table: content for table, content in found.items() if content[1]}
    try:
        with target.connect() as db:
            db.script(SCHEMA)
            db.script(AUDIT_SCHEMA)  # the lock taken here is held until commit: two migrations never overlap
            full = {table: db.rows(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] for table in to_copy}
            if any(full.values()):
                listed = ", ".join(f"{table} ({n} rows)" for table, n in full.items() if n)
                raise DatabaseError(
                    f"{target.label} already has rows in {listed}: nothing was copied. migrate-log fills empty "
                    "tables only, so that a log is never imported twice; run it before the app writes to "
                    "PostgreSQL, or empty those tables first"
                )
            for table, (columns, rows) in to_copy.items():
                keep = [c for c in columns if c in db.columns(table)]
                picks = [columns.index(c) for c in keep]
                db.write_many(
                    f"INSERT INTO {table} ({', '.join(keep)}) VALUES ({', '.join('?' * len(keep))})",
                    [tuple(row[i] for i in picks) for row in rows],
                )
                db.reset_ids(table)
    except DatabaseError:
        raise
    except ERRORS as exc:
        raise DatabaseError(
            f"copying into {target.label} failed ({exc.__class__.__name__}: {_reason(exc)}); nothing was copied"
        ) from None
    return {table: len(rows) for table, (_, rows) in found.items()}


def _read_log(source: Path) -> dict[str, tuple[list[str], list[tuple]]]:
    """The log tables of one SQLite file, opened read-only: {table: (columns, rows)}."""
    if not source.is_file():
        raise DatabaseError(
            f"{source}: no such file; give a SQLite log such as var/chatbot.sqlite3 or var/audit.sqlite"
        )
    content: dict[str, tuple[list[str], list[tuple]]] = {}
    try:
        with closing(sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in (t for t in LOG_TABLES if t in names):
                cursor = db.execute(f"SELECT * FROM {table} ORDER BY id")
                content[table] = ([column[0] for column in cursor.description], cursor.fetchall())
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{source} cannot be read as a SQLite log ({exc}); give the log file itself") from None
    return content
