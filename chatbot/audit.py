"""Audit log: who staged, approved, published or rolled back what and when, with page hashes (a SQLite file,
or PostgreSQL with CHATBOT_DATABASE_URL: chatbot/database.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.database import Connection, database_for

if TYPE_CHECKING:
    from chatbot.settings import Settings

SCHEMA = """CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    version TEXT,
    details TEXT NOT NULL
)"""


@dataclass(frozen=True)
class Event:
    at: str
    actor: str
    action: str
    version: str | None
    details: dict


class AuditLog:
    def __init__(self, path: Path, database_url: str = ""):
        """The SQLite file `path`, or with `database_url` (postgresql://...) that database instead."""
        self.path = path
        self.db = database_for(database_url, path)
        with self._db() as db:
            db.script(SCHEMA)

    @classmethod
    def open(cls, settings: Settings) -> AuditLog:
        """The app's audit log: CHATBOT_DATABASE_URL when set, else audit.sqlite in CHATBOT_DATA_DIR."""
        return cls(Path(settings.data_dir) / "audit.sqlite", settings.database_url)

    def _db(self) -> Connection:
        return self.db.connect(timeout=10)

    def record(self, actor: str, action: str, version: str | None, **details: object) -> None:
        with self._db() as db:
            db.write(
                "INSERT INTO audit (at, actor, action, version, details) VALUES (?, ?, ?, ?, ?)",
                (time.strftime("%Y-%m-%dT%H:%M:%S"), actor, action, version, json.dumps(details, sort_keys=True)),
            )

    def events(self, limit: int = 200) -> list[Event]:
        with self._db() as db:
            rows = db.rows("SELECT at, actor, action, version, details FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [Event(r["at"], r["actor"], r["action"], r["version"], json.loads(r["details"])) for r in rows]
