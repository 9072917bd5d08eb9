"""Where the question log and the audit log live: a SQLite file (the default, no set-up) or PostgreSQL.

CHATBOT_DATABASE_URL unset: each log is its own SQLite file in CHATBOT_DATA_DIR, as always.
CHATBOT_DATABASE_URL=postgresql://user:password@host:5432/dbname: both logs are tables in that database, shared
by every app replica. Callers write SQL once, SQLite style (`?` placeholders, `INTEGER PRIMARY KEY`, `REAL`);
`Connection` turns it into PostgreSQL's (`%s`, identity columns, `DOUBLE PRECISION`) when needed.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

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
