"""Staging, the safety gate, publish, rollback, audit and review dates, with the real engine and store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import date

import pytest

from chatbot.answer import Engine
from chatbot.gate import compare, run_gate
from chatbot.indexing import ingest
from chatbot.lifecycle import LifecycleError, audit_log, overdue_pages, publish, rollback
from chatbot.settings import ROOT
from chatbot.store import VersionStore
from tests.support import settings_for

# Every test here publishes through the safety gate (golden and red-team sets through the real model).
pytestmark = pytest.mark.slow

WASH_RULE = "- Avoid washing the treated area for 48 hours.\n"
WASH_Q = "When can I wash my hair after SMP?"


@pytest.fixture
def published(content_copy, tmp_path, embedder):
    """Content staged and published once, as a clinic would have it running."""
    settings = settings_for(content_copy, tmp_path / "store")
    ingest(settings, lambda: embedder)
    gate = run_gate(settings, embedder)
    assert gate.passed, gate.text()
    publish(settings, "dr-first", gate)
    return settings


def test_edit_removing_the_48_hour_washing_rule_is_blocked(published, embedder):
    page = published.content_dir / "aftercare.md"
    text = page.read_text()
    page.write_text(
        text.replace(WASH_RULE, "").replace(
            "Do not wash the treated part of your scalp until 48 hours have passed.", ""
        )
    )
    ingest(published, lambda: embedder)
    gate = run_gate(published, embedder)
    assert not gate.passed
    assert any("48 hours" in reason and "lost facts" in reason for reason in gate.reasons), gate.text()
    assert "BLOCKED" in gate.text()
    live = Engine(published, embedder)
    assert "48 hours" in live.ask(WASH_Q).text  # patients still get the published rule


def test_harmless_edit_passes_is_published_and_rollback_restores(published, embedder):
    engine = Engine(published, embedder)
    before = engine.ask("How long does one SMP session take?").text
    page = published.content_dir / "before-the-procedure.md"
    edited = page.read_text().replace(
        "One SMP session may take up to 3-4 hours.", "One SMP session may take up to 3-4 hours at the clinic."
    )
    assert edited != page.read_text()
    page.write_text(edited)
    ingest(published, lambda: embedder)
    assert "3-4 hours at the clinic" not in engine.ask("How long does one SMP session take?").text  # staged only
    gate = run_gate(published, embedder)
    assert gate.passed, gate.text()
    diffs = [row for row in compare(gate.live, gate.staging) if row["changed"]]
    assert all("<ins>" in row["diff"] or "<del>" in row["diff"] for row in diffs)
    version, seconds = publish(published, "dr-approver", gate)
    after = engine.ask("How long does one SMP session take?").text
    assert "3-4 hours at the clinic" in after and seconds < 1.0
    restored, seconds = rollback(published, "dr-approver")
    assert engine.ask("How long does one SMP session take?").text == before and seconds < 1.0
    assert restored != version and VersionStore(published).pointer("live") == restored
    actions = [e.action for e in audit_log(published).events()]
    assert actions[:2] == ["rollback", "publish"] and "dr-approver" in {e.actor for e in audit_log(published).events()}
    with pytest.raises(LifecycleError):
        rollback(published, "dr-approver")  # nothing earlier than the first publish


def test_queries_never_fail_during_publish_and_rollback(published, embedder):
    page = published.content_dir / "cost.md"
    page.write_text(page.read_text().replace("So treat the first figure", "So please treat the first figure"))
    ingest(published, lambda: embedder)
    gate = run_gate(published, embedder)
    engine = Engine(published, embedder)
    errors, answers, stop = [], [], threading.Event()

    def ask_forever() -> None:
        while not stop.is_set():
            try:
                answer = engine.ask("how much can the final bill vary?")
                answers.append(answer.mode)
                assert "5-10%" in answer.text
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(exc))

    threads = [threading.Thread(target=ask_forever) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(15):
        publish(published, "dr", gate)
        time.sleep(0.05)
        rollback(published, "dr")
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and len(answers) > 10 and set(answers) == {"extractive"}


def test_overdue_pages_are_listed(published):
    assert overdue_pages(published, today=date(2026, 12, 1)) == []
    late = overdue_pages(published, today=date(2030, 1, 1))
    assert {o.path for o in late} >= {"aftercare.md", "cost.md"} and late[0].review_due


def test_not_serving_overdue_pages_is_a_setting(published, embedder):
    strict = Engine(published.with_(serve_overdue=False), embedder)
    strict.today = date(2030, 1, 1)
    answer = strict.ask(WASH_Q)
    assert answer.mode == "not_covered" and "48 hours" not in answer.text
    assert "48 hours" in Engine(published, embedder).ask(WASH_Q).text


def test_cli_publish_refuses_with_a_report_when_the_gate_fails(published):
    page = published.content_dir / "aftercare.md"
    page.write_text(
        page.read_text()
        .replace(WASH_RULE, "")
        .replace("Do not wash the treated part of your scalp until 48 hours have passed.", "")
    )
    cmd = [
        sys.executable,
        "ingest.py",
        str(published.content_dir),
        "--store",
        str(published.store_dir),
        "--publish",
        "--json",
        "--by",
        "editor-ana",
    ]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "CHATBOT_DATA_DIR": str(published.data_dir)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "BLOCKED" in out.stderr and "48 hours" in out.stderr
    data = json.loads(out.stdout)
    assert data["gate"]["passed"] is False and "published" not in data
    assert [e.action for e in audit_log(published).events()][:2] == ["gate_failed", "stage"]
