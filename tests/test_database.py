"""CHATBOT_DATABASE_URL: the question log and the audit log on a real PostgreSQL server (tests/conftest.py starts
one), shared by replicas; the migrate-log command; and the default, a SQLite file, with no set-up."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from chatbot.audit import AuditLog
from chatbot.database import DatabaseError
from chatbot.feedback import FeedbackLog, group_unanswered
from chatbot.settings import ROOT, Settings
from chatbot.store import StoreBusy, VersionStore

SECRETS = ("Ravi", "9876543210", "ravi@example.com")


@pytest.fixture
def database_url(postgres_server: str) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    name = f"log_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + "/" + name


def stored_text(url: str) -> str:
    """Every value of the question and feedback tables as PostgreSQL holds them, in one string."""
    with psycopg.connect(url) as db:
        rows = [row for table in ("questions", "feedback") for row in db.execute(f"SELECT * FROM {table}")]
    return " ".join(str(value) for row in rows for value in row)


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatbot", "migrate-log", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_questions_feedback_and_callbacks_round_trip_redacted(tmp_path, engine, database_url):
    log = FeedbackLog(tmp_path / "unused.sqlite3", database_url=database_url)
    answer = engine.ask("My name is Ravi Kumar, call 9876543210: how much does SMP cost?")
    qid = log.log_question(answer, session="abc")
    fid = log.add_feedback(qid, liked=False, comment="I am Ravi, mail ravi@example.com")
    assert qid and fid and log.set_comment(fid, "I am Ravi again, 9876543210")
    assert not any(secret in stored_text(database_url) for secret in SECRETS)
    row = log.questions()[0]
    assert row["question"].startswith("My name is [name], call [phone]") and row["mode"] == answer.mode
    assert row["top_page"] == "cost.md" and row["best_score"] > 0 and row["ts"] == pytest.approx(time.time(), abs=60)
    assert log.feedback()[0]["comment"] == "I am [name] again, [phone]"
    assert log.feedback()[0]["question"] == row["question"]
    with pytest.raises(ValueError):
        log.add_callback("Ravi Kumar", "+91 98765 43210", "Questions: cost", consent=False)
    assert log.add_callback("Ravi Kumar", "+91 98765 43210", "Questions: cost", consent=True)
    callback = log.callbacks()[0]
    assert (callback["name"], callback["contact"], callback["consent"]) == ("Ravi Kumar", "+91 98765 43210", 1)
    assert not (tmp_path / "unused.sqlite3").exists()


def test_unanswered_questions_and_retention(tmp_path, engine, database_url):
    log = FeedbackLog(tmp_path / "unused.sqlite3", retention_days=30, database_url=database_url)
    for question in ("Do you do Botox?", "do you do botox", "what is the weather today"):
        log.log_question(engine.ask(question))
    answered = log.log_question(engine.ask("How long should I avoid washing my scalp after SMP?"))
    log.add_feedback(answered, liked=False, comment="100% unclear")
    groups = group_unanswered(log.unanswered())
    assert (groups[0]["count"], groups[0]["keywords"], groups[0]["why"]) == (2, "botox", "not covered x2")
    assert {g["why"] for g in groups[1:]} == {"off-topic x1", "thumbs down x1"}
    assert log.feedback()[0]["comment"] == "100% unclear"  # a % in a value is no placeholder
    log.add_callback("A", "a@example.com", "s", consent=True)
    with psycopg.connect(database_url) as db:
        for table in ("questions", "feedback", "callbacks"):
            db.execute(f"UPDATE {table} SET ts = %s", (time.time() - 31 * 86_400,))
    FeedbackLog(tmp_path / "unused.sqlite3", retention_days=30, database_url=database_url)  # a restart purges
    assert not log.questions() and not log.feedback() and not log.callbacks()
    log.log_question(engine.ask("what is smp"))
    assert log.purge(now=time.time() + 29 * 86_400) == 0
    assert log.purge(now=time.time() + 31 * 86_400) == 1


def test_two_replicas_on_one_database_see_each_others_rows(tmp_path, engine, database_url):
    first = FeedbackLog(tmp_path / "a.sqlite3", database_url=database_url)
    second = FeedbackLog(tmp_path / "b.sqlite3", database_url=database_url)
    qid = first.log_question(engine.ask("does smp hurt"))
    other = second.log_question(engine.ask("how long does smp last"))
    assert qid != other
    second.add_feedback(qid, liked=True)
    first.add_callback("Anita", "anita@example.com", "Questions: pain", consent=True)
    assert [r["id"] for r in first.questions()] == [r["id"] for r in second.questions()] == [other, qid]
    assert first.feedback()[0]["question"] == "does smp hurt"
    assert second.callbacks()[0]["name"] == "Anita"


def test_a_write_while_the_database_is_missing_waits_in_memory(tmp_path, engine, postgres_server, caplog):
    name = f"later_{uuid.uuid4().hex[:8]}"
    url = postgres_server.rsplit("/", 1)[0] + "/" + name
    with caplog.at_level(logging.ERROR, logger="chatbot.feedback"):
        log = FeedbackLog(tmp_path / "unused.sqlite3", database_url=url)  # the database is not there yet
        assert log.log_question(engine.ask("My name is Ravi, does SMP hurt?")) is None
        assert log.add_feedback(None, liked=False, comment="I am Ravi, no") is None
        assert log.pending == 2 and log.questions() == []
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "Ravi" not in messages and "hurt" not in messages and "chatbot-test-pw" not in messages
    assert (
        f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/{name}" in messages
        and "cannot be reached" in messages
        and "does not exist" in messages
    )
    with psycopg.connect(postgres_server, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    assert log.add_callback("A", "a@example.com", "s", consent=True)  # the next write saves the waiting ones
    assert log.pending == 0 and log.questions()[0]["question"] == "My name is [name], does SMP hurt?"
    assert log.feedback()[0]["comment"] == "I am [name], no"


def test_the_audit_log_on_postgres(tmp_path, database_url):
    audit = AuditLog(tmp_path / "audit.sqlite", database_url=database_url)
    audit.record("dr-a", "publish", "v000002", pages={"cost.md": "abc"})
    audit.record("dr-b", "rollback", "v000001", rolled_back_from="v000002")
    replica = AuditLog.open(Settings.from_env(env={"CHATBOT_DATABASE_URL": database_url}, data_dir=tmp_path))
    events = replica.events()
    assert [(e.actor, e.action, e.version) for e in events] == [
        ("dr-b", "rollback", "v000001"),
        ("dr-a", "publish", "v000002"),
    ]
    assert events[1].details == {"pages": {"cost.md": "abc"}} and len(replica.events(limit=1)) == 1
    assert not list(tmp_path.iterdir())


def test_a_bad_url_is_refused_with_what_to_write(tmp_path):
    for url in ("mysql://u:p@db/log", "postgresql://u:p@db:5432", "postgresql://u:p@db:port/x"):
        with pytest.raises(DatabaseError, match="postgresql://user:password@host:5432/dbname") as refused:
            FeedbackLog(tmp_path / "log.sqlite3", database_url=url)
        assert ":p@" not in str(refused.value)
        with pytest.raises(DatabaseError):
            AuditLog(tmp_path / "audit.sqlite", database_url=url)


def test_migrate_log_copies_a_sqlite_log_once(tmp_path, engine, database_url):
    log, audit = FeedbackLog(tmp_path / "chatbot.sqlite3"), AuditLog(tmp_path / "audit.sqlite")
    first = log.log_question(engine.ask("does smp hurt"))
    second = log.log_question(engine.ask("Do you do Botox?"))
    log.add_feedback(second, liked=False, comment="not what I asked")
    log.add_callback("Ravi Kumar", "+91 98765 43210", "Questions: cost", consent=True)
    audit.record("dr-a", "publish", "v000001", pages={"cost.md": "abc"})
    sources = [str(tmp_path / "chatbot.sqlite3"), str(tmp_path / "audit.sqlite")]
    done = migrate("--from", *sources, "--to", database_url)
    assert done.returncode == 0, done.stderr
    assert "2 questions" in done.stdout and "1 feedback" in done.stdout and "1 audit" in done.stdout
    moved = FeedbackLog(tmp_path / "unused.sqlite3", database_url=database_url)
    assert [r["id"] for r in moved.questions()] == [second, first] and moved.questions() == log.questions()
    assert moved.feedback()[0]["question"] == "Do you do Botox?" and moved.callbacks() == log.callbacks()
    assert moved.log_question(engine.ask("what is smp")) == second + 1  # new ids follow the copied ones
    assert [e.action for e in AuditLog(tmp_path / "unused.sqlite", database_url=database_url).events()] == ["publish"]

    again = migrate("--from", *sources, "--to", database_url)
    assert again.returncode == 1 and "nothing was copied" in again.stderr and "already has rows" in again.stderr
    assert "chatbot-test-pw" not in again.stderr and len(moved.questions()) == 3
    missing = migrate("--from", str(tmp_path / "nope.sqlite3"), "--to", database_url)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    down = migrate("--from", *sources, "--to", database_url.rsplit("/", 1)[0] + "/absent")
    assert down.returncode == 1 and "cannot be reached" in down.stderr and "chatbot-test-pw" not in down.stderr


def test_without_a_url_the_logs_are_sqlite_files_in_the_data_dir(tmp_path):
    settings = Settings.from_env(env={"CHATBOT_DATA_DIR": str(tmp_path)})
    assert settings.database_url == ""
    log, audit = FeedbackLog.open(settings), AuditLog.open(settings)
    assert log.add_callback("A", "a@example.com", "s", consent=True)
    audit.record("dr-a", "publish", "v000001")
    assert (log.db.path, audit.db.path) == (tmp_path / "chatbot.sqlite3", tmp_path / "audit.sqlite")
    with sqlite3.connect(tmp_path / "chatbot.sqlite3") as db:
        assert db.execute("SELECT name FROM callbacks").fetchall() == [("A",)]
    with sqlite3.connect(tmp_path / "audit.sqlite") as db:
        assert db.execute("SELECT actor FROM audit").fetchall() == [("dr-a",)]


# ---------------------------------------------------------------- version pointers and the ingest lock


def replica_stores(tmp_path, database_url: str) -> tuple[VersionStore, VersionStore]:
    """Two machines' views of one store: the version files on a shared volume (here, one folder reached through
    two paths), the pointers and the lock in the database; neither sees the other's local pointer files."""
    shared = tmp_path / "shared-versions"
    shared.mkdir()
    stores = []
    for host in ("host-a", "host-b"):
        root = tmp_path / host
        root.mkdir()
        (root / "versions").symlink_to(shared)
        stores.append(VersionStore(Settings(store_dir=root, database_url=database_url)))
    return stores[0], stores[1]


def complete_version(store: VersionStore, name: str) -> None:
    (store.versions / name).mkdir(parents=True)
    store.mark_complete(name)


def test_a_publish_on_one_machine_is_seen_by_a_replica_on_another_within_a_second(tmp_path, database_url):
    a, b = replica_stores(tmp_path, database_url)
    complete_version(a, "v000001")
    complete_version(a, "v000002")
    assert a.pointer("live") is None and b.pointer("live") is None
    a.set_pointer("v000001", "live")
    stamp = b.pointer_mtime("live")
    time.sleep(0.3)  # longer than the replica's pointer cache
    assert b.pointer("live") == "v000001" and not (b.root / "live").exists()
    started = time.monotonic()
    a.set_pointer("v000002", "live")
    while b.pointer("live") != "v000002":
        assert time.monotonic() - started < 1.0, "the replica did not see the publish within 1 s"
        time.sleep(0.02)
    assert b.pointer_mtime("live") != stamp
    assert b.pointer("staging") is None


def test_two_ingests_on_two_machines_never_run_together_and_a_killed_one_frees_the_lock(tmp_path, database_url):
    a, b = replica_stores(tmp_path, database_url)
    busy = pytest.raises(StoreBusy, match="another ingest is running.*on another machine")
    with a.ingest_lock(), busy, b.ingest_lock():
        pass
    with b.ingest_lock():  # released when the first ingest ended
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(a.root), database_url], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy), b.ingest_lock():
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the server ends the killed session, and with it the lock
        try:
            with b.ingest_lock():
                break
        except StoreBusy:
            assert time.monotonic() < deadline, "a killed ingest left the lock held"
            time.sleep(0.1)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from chatbot.settings import Settings
from chatbot.store import VersionStore
store = VersionStore(Settings(store_dir=Path(sys.argv[1]), database_url=sys.argv[2]))
with store.ingest_lock():
    print("held", flush=True)
    time.sleep(600)
"""
