"""Where the question log and the audit log live: a SQLite file (the default, no set-up) or PostgreSQL.

CHATBOT_DATABASE_URL unset: each log is its own SQLite file in CHATBOT_DATA_DIR, as always.
CHATBOT_DATABASE_URL=postgresql://user:password@host:5432/dbname: both logs are tables in that database, shared
by every app replica. Callers write SQL once, SQLite style (`?` placeholders, `INTEGER PRIMARY KEY`, `REAL`);
`Connection` turns it into PostgreSQL's (`%s`, identity columns, `DOUBLE PRECISION`) when needed.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

log = logging.getLogger("chatbot.database")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
URL_HELP = (
    "use postgresql://user:password@host:5432/dbname (percent-encode special characters in the password), "
    "or, for CHATBOT_DATABASE_URL, leave it unset to keep the SQLite files in CHATBOT_DATA_DIR"
)


class DatabaseError(Exception):
    """A log database that cannot be used (a bad URL, a server out of reach, a log already imported); the
    message says what went wrong and what to do."""


class Unreachable(DatabaseError):
    """The PostgreSQL server did not accept a connection."""


# Failures worth retrying later (server down or restarting, disk full, locked or read-only file, failover).
TRANSIENT: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg.errors.ReadOnlySqlTransaction,
    Unreachable,
    OSError,
)
ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error, DatabaseError, OSError)


@dataclass(frozen=True)
class Database:
    """One log database: a SQLite file (`path`) or a PostgreSQL URL (`url`)."""

    path: Path | None = None
    url: str = ""

    @property
    def postgres(self) -> bool:
        return bool(self.url)

    @property
    def label(self) -> str:
        """Where the data lives, for messages: never the password."""
        if not self.postgres:
            return str(self.path)
        info = conninfo_to_dict(self.url)
        return f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def connect(self, timeout: float = 5) -> Connection:
        """Open a connection (waiting at most `timeout` s for a locked file or a connection); `with` it to commit
        (or roll back on an error) and close."""
        if self.postgres:
            try:
                raw = psycopg.connect(self.url, connect_timeout=max(1, round(timeout)), row_factory=dict_row)
            except psycopg.OperationalError as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                raise Unreachable(
                    f"PostgreSQL at {self.label} cannot be reached ({first_line}); check CHATBOT_DATABASE_URL "
                    "(host, port, user, password, database) and that the server is running"
                ) from None
            return Connection(raw, postgres=True)
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(self.path, timeout=timeout)
        raw.row_factory = sqlite3.Row
        return Connection(raw, postgres=False)


def database_for(url: str, default: Path) -> Database:
    """The database a log uses: `url` (CHATBOT_DATABASE_URL) when set, else the SQLite file `default`."""
    url = url.strip()
    if not url:
        return Database(path=Path(default))
    if not url.startswith(POSTGRES_SCHEMES):
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise DatabaseError(f"database URL {scheme!r}... is not understood; {URL_HELP}")
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise DatabaseError(f"database URL {url.split('@')[-1]!r} is malformed; {URL_HELP}") from None
    if not all(port.isdigit() for port in str(info.get("port", "5432")).split(",")):
        raise DatabaseError(f"database URL {url.split('@')[-1]!r} has a port that is not a number; {URL_HELP}")
    if not info.get("dbname"):
        raise DatabaseError(f"database URL {url.split('@')[-1]!r} names no database; {URL_HELP}")
    return Database(url=url)


class Connection:
    """An open connection that takes SQLite-style SQL on either engine."""

    def __init__(self, raw: Any, postgres: bool):
        self.raw = raw
        self.postgres = postgres

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if kind is None:
                self.raw.commit()
            else:
                self.raw.rollback()
        finally:
            self.raw.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        return self.raw.execute(self._sql(sql), params)

    def write(self, sql: str, params: tuple | list = ()) -> int:
        """Run one INSERT (returns the new row's id) or UPDATE/DELETE (returns how many rows it changed)."""
        insert = sql.lstrip().upper().startswith("INSERT")
        if insert and self.postgres:
            return self.execute(sql + " RETURNING id", params).fetchone()["id"]
        cursor = self.execute(sql, params)
        return cursor.lastrowid if insert else cursor.rowcount

    def write_many(self, sql: str, rows: list[tuple]) -> None:
        self.raw.cursor().executemany(self._sql(sql), rows)

    def rows(self, sql: str, params: tuple | list = ()) -> list[dict]:
        return [dict(row) for row in self.execute(sql, params)]

    def columns(self, table: str) -> list[str]:
        """The table's column names, in order."""
        cursor = self.raw.execute(f"SELECT * FROM {table} LIMIT 0")
        return [column[0] for column in cursor.description]

    def script(self, ddl: str) -> None:
        """Run `;`-separated CREATE statements written for SQLite; on PostgreSQL under a lock, so that replicas
        starting together do not race to create the same table."""
        if not self.postgres:
            self.raw.executescript(ddl)
            return
        self.raw.execute("SELECT pg_advisory_xact_lock(15015)")
        for statement in filter(str.strip, ddl.split(";")):
            self.raw.execute(postgres_ddl(statement))

    def reset_ids(self, table: str) -> None:
        """After rows were copied in with their ids: new rows get ids after the largest one (PostgreSQL)."""
        if self.postgres:
            self.raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table} HAVING MAX(id) > 0"
            )


def postgres_ddl(statement: str) -> str:
    """SQLite's auto-numbered id and REAL (8 bytes there; 4 in PostgreSQL) in PostgreSQL's words."""
    statement = re.sub(
        r"\bINTEGER PRIMARY KEY(?: AUTOINCREMENT)?", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", statement
    )
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)


def postgres_reason(exc: BaseException) -> str | None:
    """PostgreSQL's error code for a failure (never its message, which can quote the values); None if the
    failure is not PostgreSQL's."""
    if isinstance(exc, Unreachable):
        return str(exc)  # the server's or the network's words for a connection refused: no values written
    if not isinstance(exc, psycopg.Error):
        return None
    return f"PostgreSQL error {exc.sqlstate}" if exc.sqlstate else "PostgreSQL connection lost"


# ---------------------------------------------------------------- version pointers and the ingest lock

POINTERS_DDL = """CREATE TABLE IF NOT EXISTS store_pointers (
    store TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, changed INTEGER NOT NULL,
    PRIMARY KEY (store, name))"""
POINTER_TTL_S = 0.25  # a replica asks the database at most this often per pointer: a publish is seen within it


class SharedPointers:
    """The version pointers ('live', 'staging') and the ingest lock of one store in PostgreSQL, for replicas
    on several machines: a publish is one row update that every replica sees on its next question (at most
    POINTER_TTL_S later), and two ingests anywhere can never run together (a PostgreSQL advisory lock, released
    when its connection ends, so a killed ingest never leaves it held)."""

    def __init__(self, db: Database, store: str):
        self.db = db
        self.store = store
        self._seen: dict[str, tuple[float, str | None, int]] = {}
        self._ready = False

    def _connect(self) -> Connection:
        connection = self.db.connect()
        if not self._ready:
            connection.script(POINTERS_DDL)
            self._ready = True
        return connection

    def read(self, name: str) -> tuple[str | None, int]:
        """(version or None, change counter) of a pointer; cached for POINTER_TTL_S."""
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is not None and now - seen[0] < POINTER_TTL_S:
            return seen[1], seen[2]
        try:
            with self._connect() as db:
                sql = "SELECT version, changed FROM store_pointers WHERE store = ? AND name = ?"
                rows = db.rows(sql, (self.store, name))
        except ERRORS as exc:
            if seen is None:
                raise
            log.warning("version pointer %r: the database cannot be read (%s); still serving %s", name, exc, seen[1])
            return seen[1], seen[2]  # keep serving the version last seen until the database answers again
        version, changed = (rows[0]["version"], rows[0]["changed"]) if rows else (None, 0)
        self._seen[name] = (now, version, changed)
        return version, changed

    def write(self, name: str, version: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO store_pointers (store, name, version, changed) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (store, name) DO UPDATE SET version = excluded.version, "
                "changed = store_pointers.changed + 1",
                (self.store, name, version),
            )
        self._seen.pop(name, None)

    @contextmanager
    def lock(self) -> Iterator[bool]:
        """Yields whether this process got the store's ingest lock (held until the block ends)."""
        connection = self._connect()
        try:
            got = connection.execute("SELECT pg_try_advisory_lock(15016, hashtext(?)) AS got", (self.store,))
            held = bool(got.fetchone()["got"])
            connection.raw.commit()
            yield held
        finally:
            connection.raw.close()  # ends the session, and with it the lock


def shared_pointers(url: str, store: str) -> SharedPointers | None:
    """The store's pointers in PostgreSQL when CHATBOT_DATABASE_URL names one, else None (local files)."""
    if not url.strip():
        return None
    return SharedPointers(database_for(url, Path()), store)
