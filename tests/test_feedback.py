"""The question and feedback log: redaction before writing, retention, consented callbacks, failing writes."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest

from chatbot.feedback import FeedbackLog, group_unanswered, keywords, redact, write_csv


@pytest.mark.parametrize(
    ("text", "gone", "marker"),
    [
        ("call me on +91 98765 43210 please", "98765", "[phone]"),
        ("my number is 9876543210", "9876543210", "[phone]"),
        ("mob: 098765-43210", "43210", "[phone]"),
        ("office 022 2345 6789", "2345", "[phone]"),
        ("UK +44 20 7946 0958", "7946", "[phone]"),
        ("US (555) 123-4567", "123-4567", "[phone]"),
        ("write to ravi.kumar+smp@example.co.in", "ravi.kumar", "[email]"),
        ("My name is Ravi Kumar, does it hurt?", "Ravi", "[name]"),
        ("my name's anita", "anita", "[name]"),
        ("i am ravi, what does it cost", "ravi", "[name]"),
        ("I'm Anil Sharma and I want SMP", "Sharma", "[name]"),
        ("Hi, this is Priya here", "Priya", "[name]"),
        ("main Ravi hoon, kitna kharcha hoga", "Ravi", "[name]"),
        ("mera naam suresh hai", "suresh", "[name]"),
    ],
)
def test_personal_details_are_redacted(text, gone, marker):
    redacted = redact(text)
    assert gone not in redacted and marker in redacted, redacted


@pytest.mark.parametrize(
    "text",
    [
        "Avoid washing the treated area for 48 hours.",
        "stop aspirin 10-14 days before, reviewed 2026-11-20",
        "I am worried about the pain",
        "i am bleeding a lot",
        "I am 35 years old, can I get SMP?",
        "this is normal?",
        "the main concern is the cost of Rs 1,50,000",
    ],
)
def test_ordinary_questions_are_left_alone(text):
    assert redact(text) == text


@pytest.mark.slow  # the real engine
def test_questions_and_feedback_are_redacted_before_they_are_written(tmp_path, engine):
    log = FeedbackLog(tmp_path / "log.sqlite3")
    answer = engine.ask("My name is Ravi Kumar, call 9876543210: how much does SMP cost?")
    qid = log.log_question(answer, session="abc")
    fid = log.add_feedback(qid, liked=False, comment="I am Ravi, mail ravi@example.com")
    assert qid and fid
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (b"Ravi", b"9876543210", b"ravi@example.com"):
        assert secret not in raw
    row = log.questions()[0]
    assert row["question"].startswith("My name is [name], call [phone]") and row["mode"] == answer.mode
    assert row["top_page"] == "cost.md" and row["best_score"] > 0
    assert log.feedback()[0]["comment"] == "I am [name], mail [email]"


def test_callbacks_need_consent_and_keep_the_contact(tmp_path):
    log = FeedbackLog(tmp_path / "log.sqlite3")
    with pytest.raises(ValueError):
        log.add_callback("Ravi Kumar", "+91 98765 43210", "Questions: cost", consent=False)
    assert log.add_callback("Ravi Kumar", "+91 98765 43210", "Questions: cost", consent=True)
    row = log.callbacks()[0]
    assert (row["name"], row["contact"], row["consent"]) == ("Ravi Kumar", "+91 98765 43210", 1)


@pytest.mark.slow  # the real engine
def test_retention_purges_old_rows_on_start_and_on_demand(tmp_path, engine):
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path, retention_days=30)
    qid = log.log_question(engine.ask("what is smp"))
    log.add_feedback(qid, liked=True)
    log.add_callback("A", "a@example.com", "s", consent=True)
    with sqlite3.connect(path) as db:
        for table in ("questions", "feedback", "callbacks"):
            db.execute(f"UPDATE {table} SET ts = ?", (time.time() - 31 * 86_400,))
    FeedbackLog(path, retention_days=30)  # a restart purges
    assert not log.questions() and not log.feedback() and not log.callbacks()
    log.log_question(engine.ask("what is smp"))
    assert log.purge(now=time.time() + 29 * 86_400) == 0
    assert log.purge(now=time.time() + 31 * 86_400) == 1


@pytest.mark.slow  # the real engine
def test_a_failing_write_never_breaks_the_chat_and_logs_no_patient_text(tmp_path, engine, caplog):
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path)
    path.unlink()
    path.mkdir()  # the database can no longer be opened: like a lost or full disk
    answer = engine.ask("My name is Ravi, does SMP hurt?")
    with caplog.at_level(logging.ERROR, logger="chatbot.feedback"):
        assert log.log_question(answer) is None
        assert log.add_feedback(1, liked=False, comment="Ravi says no") is None
        assert log.questions() == []
    assert caplog.records and all("Ravi" not in r.getMessage() and "hurt" not in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the real engine
def test_unanswered_questions_are_grouped_so_gaps_stand_out(tmp_path, engine):
    log = FeedbackLog(tmp_path / "log.sqlite3")
    for question in ("Do you do Botox?", "do you do botox", "what is the weather today"):
        log.log_question(engine.ask(question))
    answered = log.log_question(engine.ask("How long should I avoid washing my scalp after SMP?"))
    log.add_feedback(answered, liked=False)
    groups = group_unanswered(log.unanswered())
    assert (groups[0]["count"], groups[0]["keywords"], groups[0]["why"]) == (2, "botox", "not covered x2")
    assert {g["why"] for g in groups[1:]} == {"off-topic x1", "thumbs down x1"}
    assert keywords("Can I colour my hair after SMP?") == keywords("colours hair") == "colour hair"


def test_csv_export_defuses_spreadsheet_formulas(tmp_path):
    out = write_csv([{"question": '=HYPERLINK("http://x")', "n": 1}], tmp_path / "x.csv")
    assert out.read_text().splitlines() == ["question,n", '"\'=HYPERLINK(""http://x"")",1']
