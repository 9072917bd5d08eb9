"""Audit log: who staged, approved, published or rolled back what and when, with page hashes (SQLite)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

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
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._db() as db:
            db.execute(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def record(self, actor: str, action: str, version: str | None, **details: object) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO audit (at, actor, action, version, details) VALUES (?, ?, ?, ?, ?)",
                (time.strftime("%Y-%m-%dT%H:%M:%S"), actor, action, version, json.dumps(details, sort_keys=True)),
            )

    def events(self, limit: int = 200) -> list[Event]:
        with self._db() as db:
            rows = db.execute(
                "SELECT at, actor, action, version, details FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Event(at, actor, action, version, json.loads(details)) for at, actor, action, version, details in rows]
