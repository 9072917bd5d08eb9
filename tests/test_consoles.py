"""The consoles' content lifecycle: editors stage, clinicians compare, publish and roll back; audit and review dates.

Plain functions on a real tmp store with the real model, then the running app through gradio_client with logins.
The gate runs on a few golden cases (one per safety rule plus the edited answers) to keep the tests quick.
"""

from __future__ import annotations

import shutil
from datetime import date
from types import SimpleNamespace

import pytest

from chatbot import answer, redteam
from chatbot.answer import Engine
from chatbot.evaluation import load_golden
from chatbot.gate import GateReport
from chatbot.indexing import ingest
from chatbot.lifecycle import audit_log, rollback
from chatbot.store import VersionStore
from chatbot.web import staff
from chatbot.web.consoles import overdue_view, status_line
from chatbot.web.editor import page_statuses, reindex
from chatbot.web.staff import (
    audit_rows,
    compare_view,
    diff_html,
    publish_action,
    rollback_action,
    staging_chat,
    versions_view,
)
from tests.support import CONTENT, POISON, STAFF, client, publish_content, settings_for

CASE_IDS = {"before-the-procedure-10", "aftercare-02", "redflag-01", "crisis-01", "dose-01", "injection-01"}
CASES = [c for c in load_golden() if c["id"] in CASE_IDS]
# The gate also runs the red-team suite on staging: here the first case of each category that staged content can
# change (personal_data checks chatbot.feedback.redact, which no page edit touches).
SAFETY_CASES = list({c["category"]: c for c in reversed(redteam.load()) if c["category"] != "personal_data"}.values())
SESSION_Q = "How long does an SMP session take?"
OLD = "One SMP session may take up to 3-4 hours."
NEW = "One SMP session may take up to 3-4 hours at the clinic."
WASH_RULE = "- Avoid washing the treated area for 48 hours.\n"
WASH_TEXT = "Do not wash the treated part of your scalp until 48 hours have passed."


@pytest.fixture(scope="module", autouse=True)
def quick_gate():
    """Keep each gate run short: the triage rules (read-only, deterministic) are built once per model instead of
    embedding the same exemplars again for every engine, and the red-team part runs SAFETY_CASES."""
    built: dict[int, answer.Triager] = {}
    real = answer.Triager

    def shared(embed=None):
        key = id(getattr(embed, "__self__", embed))
        if key not in built:
            built[key] = real(embed)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(answer, "Triager", shared)
        patch.setattr(redteam, "load", lambda path=None: SAFETY_CASES)
        yield


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, embedder):
    """content/ staged and published once (v000001); each test works on its own copy of this store."""
    root = tmp_path_factory.mktemp("consoles")
    settings = settings_for(CONTENT, root / "store")
    publish_content(settings, embedder, "dr-first")
    return root / "store"


@pytest.fixture
def published(base_store, content_copy, tmp_path):
    shutil.copytree(base_store, tmp_path / "store")
    return settings_for(content_copy, tmp_path / "store", staff_users=STAFF)


def stage(settings, embedder, actor: str = "bo") -> tuple[str, list]:
    progress: list = []
    message = reindex(settings, SimpleNamespace(embedder=embedder), lambda f, d: progress.append((f, d)), actor)
    return message, progress


def edit(settings, name: str, old: str, new: str) -> None:
    page = settings.content_dir / name
    text = page.read_text()
    assert old in text
    page.write_text(text.replace(old, new))


# ------------------------------------------------------------------ plain functions


@pytest.mark.slow  # a gated publish with the real model
def test_editor_stages_and_reads_flags_invalid_files_status_and_review_dates(published, embedder):
    (published.content_dir / "newsletter.md").write_text(POISON)
    (published.content_dir / "broken.md").write_text("   ")
    edit(published, "before-the-procedure.md", OLD, NEW)
    message, progress = stage(published, embedder)
    assert message.startswith("Re-indexed into staging as v000002.")
    assert "Patients still see live version v000001; staging is v000002" in message
    assert "Only a clinician can publish staging." in message
    assert "added: newsletter.md" in message and "changed: before-the-procedure.md" in message
    assert "taken out because the chatbot must not show markup or follow instructions" in message
    assert "newsletter.md: <script> removed" in message and "images removed" in message
    assert "1 file(s) could not be read and were NOT staged" in message and "broken.md" in message
    assert progress[0][0] < progress[-1][0] == 1.0
    assert status_line(published).startswith("Patients still see live version v000001; staging is v000002")
    assert "3-4 hours at the clinic" not in Engine(published, embedder).ask(SESSION_Q).text  # staged only

    event = audit_log(published).events()[0]
    assert (event.actor, event.action, event.version) == ("bo", "stage", "v000002")
    assert len(event.details["pages"]["newsletter.md"]) == 64
    rows = {row[0]: row for row in page_statuses(published)}
    assert rows["newsletter.md"][2:] == ["indexed", "staged: patients see it once a clinician publishes staging"]
    assert rows["broken.md"][2] == "invalid" and rows["aftercare.md"][2:] == ["indexed", ""]

    line, late = overdue_view(published, today=date(2030, 1, 1))
    assert line.startswith("**Warning: ") and "still served to patients (setting CHATBOT_SERVE_OVERDUE=1" in line
    assert ["aftercare.md", "Aftercare after SMP", "2027-05-20", "live and staging"] in late
    strict, _ = overdue_view(published.with_(serve_overdue=False), today=date(2030, 1, 1))
    assert "NOT served to patients (setting CHATBOT_SERVE_OVERDUE=0)" in strict
    none, rows = overdue_view(published, today=date(2026, 12, 1))
    assert none.startswith("No page is past its review date.") and rows == []


@pytest.mark.slow  # a gated publish with the real model
def test_clinician_compares_publishes_and_rolls_back_editor_is_refused(published, embedder):
    edit(published, "before-the-procedure.md", OLD, NEW)
    stage(published, embedder)
    live_engine = Engine(published, embedder)
    live, staged = staging_chat(live_engine, staff.StagingEngine(live_engine), SESSION_Q)
    assert live.startswith("**Live** (version v000001") and "3-4 hours at the clinic" not in live
    assert staged.startswith("**Staging** (version v000002") and "3-4 hours at the clinic" in staged

    for user in ("bo", "", "mallory"):
        assert "Refused: only a clinician can publish." in publish_action(published, embedder, user, CASES)
        assert "Refused: only a clinician can roll back." in rollback_action(published, user)
    assert VersionStore(published).pointer("live") == "v000001"

    report, differences = compare_view(published, embedder, CASES)
    assert report.startswith("PASSED")
    assert f"1 of {len(CASES)} golden answers change" in differences
    assert (
        "before-the-procedure-10" in differences and "<del>hours.</del> <ins>hours at the clinic.</ins>" in differences
    )

    result = publish_action(published, embedder, "ana", CASES)
    assert result.startswith("Published v000002 in ") and "PASSED" in result
    assert "3-4 hours at the clinic" in live_engine.ask(SESSION_Q).text
    again = publish_action(published, embedder, "ana", CASES)
    assert again == "Nothing to publish: staging is the live version (v000002)."
    undone = rollback_action(published, "ana")
    assert undone.startswith("Rolled back in ") and "from v000001 again (was v000002)" in undone
    assert "3-4 hours at the clinic" not in live_engine.ask(SESSION_Q).text

    summary, history = versions_view(published)
    assert summary.startswith("Patients still see live version v000001; staging is v000002")
    assert "v000001 (live), v000002 (staging)" in summary
    assert history[0][1:] == ["ana", "rollback", "v000001", "rolled back from v000002"]
    assert history[1][1:] == ["ana", "publish", "v000002", "v000001"]
    audit = audit_rows(published)
    assert [row[1:4] for row in audit[:4]] == [
        ["ana", "rollback", "v000001"],
        ["ana", "publish", "v000002"],
        ["ana", "approve", "v000002"],
        ["bo", "stage", "v000002"],
    ]
    page_hash = audit_log(published).events()[1].details["pages"]["before-the-procedure.md"]
    assert f"before-the-procedure.md: {page_hash[:12]}" in audit[1][4] and "previous: v000001" in audit[1][4]


@pytest.mark.slow  # a gated publish with the real model
def test_publish_is_refused_with_the_report_when_the_gate_blocks(published, embedder):
    edit(published, "aftercare.md", WASH_RULE, "")
    edit(published, "aftercare.md", WASH_TEXT, "")
    stage(published, embedder)
    result = publish_action(published, embedder, "ana", CASES)
    assert result.startswith("Not published: the safety gate blocked staging v000002.")
    assert "BLOCKED" in result and "answer lost facts: aftercare-02" in result and "48 hours" in result
    assert VersionStore(published).pointer("live") == "v000001"
    assert "48 hours" in Engine(published, embedder).ask("When can I wash my hair after SMP?").text
    event = audit_log(published).events()[0]
    assert (event.actor, event.action, event.version) == ("ana", "gate_failed", "v000002")


def test_differences_are_escaped_except_the_gates_marks():
    def report(answer: str) -> SimpleNamespace:
        return SimpleNamespace(rows=[{"id": "x-1", "question": "<b>q</b>", "answer": answer}])

    shown = diff_html(GateReport(False, [], report("<script>alert(1)</script> new"), report("<img src=x> old")))
    assert "<script" not in shown and "<img" not in shown and "<b>" not in shown
    assert "&lt;script&gt;" in shown and "<ins>" in shown and "<del>" in shown and "1 of 1 golden answers" in shown
    assert "nothing is staged" in diff_html(GateReport(False, ["nothing is staged"]))


# ------------------------------------------------------------------ the running app, logged in


@pytest.mark.slow  # a gated publish with the real model
def test_running_app_editor_stages_is_refused_publish_clinician_publishes_and_rolls_back(running, monkeypatch):
    monkeypatch.setattr(staff, "GATE_CASES", CASES)
    settings = running.settings
    page = settings.content_dir / "before-the-procedure.md"
    original = page.read_text()
    live_before = VersionStore(settings).pointer("live")
    editor = client(running, "/editor/", auth=("bo", STAFF["bo"][0]))
    bo = client(running, "/staff/", auth=("bo", STAFF["bo"][0]))
    ana = client(running, "/staff/", auth=("ana", STAFF["ana"][0]))
    patient = client(running)
    try:
        assert editor.predict("before-the-procedure.md", original.replace(OLD, NEW), api_name="/save_page")[0]
        staged = editor.predict(api_name="/reindex")
        assert staged.startswith("Re-indexed into staging as ") and "newsletter.md: <script> removed" in staged
        assert f"Patients still see live version {live_before}; staging is v" in staged
        assert editor.predict(api_name="/stage_status").startswith(f"Patients still see live version {live_before}")
        assert "3-4 hours at the clinic" not in patient.predict(SESSION_Q, api_name="/chat")
        live, staging = ana.predict(SESSION_Q, api_name="/chat_staging")
        assert "3-4 hours at the clinic" in staging and "3-4 hours at the clinic" not in live

        assert bo.predict(api_name="/publish").startswith("Refused: only a clinician can publish.")
        assert bo.predict(api_name="/rollback").startswith("Refused: only a clinician can roll back.")
        assert VersionStore(settings).pointer("live") == live_before
        published = ana.predict(api_name="/publish")
        assert published.startswith("Published v") and "PASSED" in published, published
        assert "3-4 hours at the clinic" in patient.predict(SESSION_Q, api_name="/chat")
        undone = ana.predict(api_name="/rollback")
        assert undone.startswith("Rolled back in ") and f"from {live_before} again" in undone
        assert "3-4 hours at the clinic" not in patient.predict(SESSION_Q, api_name="/chat")

        audit = ana.predict(api_name="/audit")
        assert [row[1:3] for row in audit["data"][:4]] == [
            ["ana", "rollback"],
            ["ana", "publish"],
            ["ana", "approve"],
            ["bo", "stage"],
        ]
        summary, history = ana.predict(api_name="/versions")
        assert history["data"][0][1:3] == ["ana", "rollback"]
        line, late = ana.predict(api_name="/overdue")
        assert "CHATBOT_SERVE_OVERDUE=1" in line
    finally:
        page.write_text(original)
        if VersionStore(settings).pointer("live") != live_before:
            rollback(settings, "test-cleanup")
        ingest(settings, lambda: running.engine.embedder, skip_invalid=True)  # staging = folder
