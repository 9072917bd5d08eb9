"""The real app on a free loopback port (in-process uvicorn, real engine on a tmp index), driven with
gradio_client and plain HTTP; plus `python app.py` itself in a subprocess."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from chatbot.evaluation import load_golden
from chatbot.settings import ROOT, Settings
from chatbot.web import auth
from chatbot.web.chat import RateLimiter, Reply, reply_messages, safe_markdown
from chatbot.wording import render, ui_words
from tests.support import RATE_LIMIT, STAFF, client, free_port, http

# ------------------------------------------------------------------ plain functions (no server)


@pytest.mark.slow  # the engine: the real model and a gated publish
def test_rendering_escapes_markup_from_questions_and_content(engine):
    hostile = '<script>alert(1)</script><iframe src="http://x"></iframe><img src=http://x/a.png><form></form>'
    shown = safe_markdown(hostile + " ![a](http://x/b.png) [c](javascript:alert(1))")
    for tag in ("<script", "<iframe", "<img", "<form"):
        assert tag not in shown
    assert "](javascript:" not in shown and "![" not in shown
    answer = engine.ask("How long should I avoid washing my scalp after SMP?")
    answer.sources[0] = replace(answer.sources[0], quote=hostile, title="<b>t</b>")
    messages = reply_messages(Reply(answer.text + hostile, answer), ui_words(engine.settings))
    assert len(messages) == 1 + len(answer.sources)
    assert "48 hours" in messages[0]["content"] and messages[1]["metadata"]["status"] == "done"
    assert messages[1]["metadata"]["title"].startswith("Source [1] &lt;b&gt;t&lt;/b&gt; - The first 24 to 48 hours")
    text = json.dumps(messages)
    assert "<script" not in text and "<iframe" not in text and "<img" not in text and "<b>" not in text


def test_rate_limiter_counts_per_session_in_a_sliding_minute():
    limiter = RateLimiter(2)
    assert limiter.allow("a", 0) and limiter.allow("a", 1) and not limiter.allow("a", 2)
    assert limiter.allow("b", 2)
    assert limiter.allow("a", 60.5) and not limiter.allow("a", 60.6)


def test_staff_login_checks_user_and_password():
    check = auth.staff_login(Settings(staff_users=STAFF))
    assert check("ana", "ana-secret-1") and not check("ana", "bo-secret-2") and not check("eve", "")


def test_five_wrong_passwords_lock_a_console_user_name_for_fifteen_minutes():
    guard = auth.LoginGuard()
    check = auth.staff_login(Settings(staff_users=STAFF), guard)
    for _ in range(5):
        assert not check("ana", "guess")
    assert not check("ana", "ana-secret-1")  # the right password, but the name is locked
    assert check("bo", "bo-secret-2")  # other users are not
    assert guard.locked("ana", time.monotonic() + 899) and not guard.locked("ana", time.monotonic() + 901)
    small = auth.LoginGuard(max_names=2)
    for name in ["a"] * 5 + ["b"]:
        small.failed(name)
    assert small.locked("a")
    small.failed("c")  # a third name: the oldest is forgotten, so memory stays bounded
    assert not small.locked("a")


# ------------------------------------------------------------------ the running app (slow: real model, gated publish)


@pytest.mark.slow
def test_chat_api_answers_with_the_fact_and_a_source(running):
    text = client(running).predict("how long should I avoid washing my scalp after SMP?", api_name="/chat")
    assert "48 hours" in text
    assert "Sources:\n[1] Aftercare after SMP" in text and "(aftercare.md)" in text


@pytest.mark.slow
def test_an_emergency_is_escalated_and_logged(running):
    text = client(running).predict("There is pus coming out of my scalp after SMP and I have fever", api_name="/chat")
    assert text == render("emergency", running.settings)
    row = running.log.questions()[0]
    assert row["escalated"] == 1 and row["mode"] == "triage" and row["category"] == "emergency"


@pytest.mark.slow
def test_feedback_is_stored_redacted(running):
    patient = client(running)
    patient.predict("My name is Ravi Kumar, call 98765 43210: does SMP hurt?", api_name="/chat")
    thanks = patient.predict("down", "I am Ravi, write to ravi@example.com", api_name="/feedback")
    assert thanks == "Thank you for your feedback."
    row = running.log.feedback()[0]
    assert (row["rating"], row["comment"]) == ("down", "I am [name], write to [email]")
    assert row["question"] == "My name is [name], call [phone]: does SMP hurt?"
    assert "Ravi" not in json.dumps(running.log.questions()[:3])


@pytest.mark.slow
def test_too_long_questions_and_too_many_questions_get_a_friendly_message(running):
    patient = client(running)
    too_long = patient.predict("a" * (running.settings.max_question_chars + 1), api_name="/chat")
    assert too_long.startswith(f"Your question is {running.settings.max_question_chars + 1} characters long")
    answers = [patient.predict("what is smp", api_name="/chat") for _ in range(RATE_LIMIT + 1)]
    assert all("microtattooing" in a for a in answers[:RATE_LIMIT])
    assert (
        answers[-1]
        == f"You have asked {RATE_LIMIT} questions in the last minute. Please wait a moment and then ask again."
    )
    assert "microtattooing" in client(running).predict("what is smp", api_name="/chat")  # other sessions go on


@pytest.mark.slow
def test_consoles_refuse_anonymous_access(running):
    for console in ("/staff", "/editor"):
        assert http(f"{running.url}{console}/config")[0] == 401
        assert http(f"{running.url}{console}/gradio_api/info")[0] == 401
        status, page = http(f"{running.url}{console}/")
        assert status == 200 and '"auth_required":true' in page.replace(" ", "")
        assert "staff console" not in page.lower() and "content editor" not in page.lower()
        with pytest.raises(Exception, match="(?i)login|credentials|auth"):
            client(running, console + "/")
        with pytest.raises(Exception, match="(?i)login|credentials|auth|incorrect"):
            client(running, console + "/", auth=("ana", "wrong"))


@pytest.mark.slow
def test_gradio_file_routes_serve_nothing_outside_the_app(running):
    secret = Path(running.settings.data_dir) / "chatbot.sqlite3"
    for path in (
        "../../../../etc/passwd",
        "/etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        str(secret),
        "http://169.254.169.254/latest/meta-data/",
        str(ROOT / "app.py"),
    ):
        for prefix in ("", "/staff", "/editor"):
            status, body = http(f"{running.url}{prefix}/gradio_api/file={path}")
            assert status in (400, 401, 403, 404), (prefix, path, status)
            assert "root:" not in body and "SQLite" not in body


@pytest.mark.slow
def test_the_public_app_takes_no_uploads(running):
    boundary = "x1234"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.md"\r\n'
        f"Content-Type: text/plain\r\n\r\n# A page\n\ntext\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{running.url}/gradio_api/upload",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413


@pytest.mark.slow
def test_staff_console_shows_decision_chunks_feedback_gaps_and_exports(running):
    client(running).predict("Do you do Botox?", api_name="/chat")
    patient = client(running)
    patient.predict("what does the cost depend on?", api_name="/chat")
    patient.predict("down", "my name is Kiran", api_name="/feedback")
    running.log.add_callback("Asha Rao", "+91 90000 11111", "Questions: cost", consent=True)
    staff = client(running, "/staff/", auth=("ana", STAFF["ana"][0]))
    decision, shown, chunks = staff.predict("is there parking near the clinic?", api_name="/inspect")
    assert "**Triage:**" in decision and "**Answer path:** `" in decision and "**Timings (ms):**" in decision
    assert chunks["headers"] == ["rank", "page", "section", "dense", "lexical", "fused", "text"]
    assert chunks["data"] and all(0 <= row[5] <= 1 for row in chunks["data"])
    table, cases = staff.predict(api_name="/evaluate")
    assert table.startswith("Retrieval: hit@1 ") and "| escalation accuracy (red flags, crisis) | 1.000 |" in table
    assert len(cases["data"]) == len(load_golden())
    groups, singles = staff.predict(api_name="/unanswered")
    assert any(row[1] == "botox" and "not covered" in row[3] for row in groups["data"])
    assert ["down", "my name is [name]"] in [row[1:3] for row in staff.predict(api_name="/feedback")["data"]]
    assert ["Asha Rao", "+91 90000 11111"] in [row[1:3] for row in staff.predict(api_name="/callbacks")["data"]]
    exported = staff.predict("callbacks", api_name="/export")
    url = exported["url"] if isinstance(exported, dict) else exported
    assert "Asha Rao" not in http(url.replace("/staff/", "/"))[1]  # the public app does not serve staff files
    download = Client(running.url + "/staff/", auth=("ana", STAFF["ana"][0]), verbose=False)
    local = download.predict("callbacks", api_name="/export")
    assert "Asha Rao" in Path(local).read_text()


@pytest.mark.slow
def test_editor_console_validates_uploads_and_reindexes_while_patients_are_answered(running, tmp_path):
    editor = client(running, "/editor/", auth=("bo", STAFF["bo"][0]))
    assert "new" not in [row[2] for row in editor.predict(api_name="/pages")["data"]]
    bad = editor.predict("../outside.md", "# Title\n\ntext", api_name="/save_page")[0]
    assert "not a usable page name" in bad and not (running.settings.content_dir.parent / "outside.md").exists()
    empty = editor.predict("empty.md", "   ", api_name="/save_page")[0]
    assert "empty.md: file is empty; add the page text or delete the file" in empty
    exe = tmp_path / "evil.exe"
    exe.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(Exception, match="Invalid file type"):  # Gradio checks the type, and so do we (below)
        editor.predict(handle_file(str(exe)), api_name="/upload")
    big = tmp_path / "big.md"
    big.write_text("# Big\n\n" + "word " * running.settings.max_upload_bytes)
    with pytest.raises(Exception):  # noqa: B017 - Gradio refuses the upload itself (413)
        editor.predict(handle_file(str(big)), api_name="/upload")
    page = tmp_path / "parking.md"
    page.write_text(
        "# Parking at the clinic\n\n## Where to park\nFree parking for patients is in the basement, level B2.\n"
    )
    assert "Saved: parking.md (added" in editor.predict(handle_file(str(page)), api_name="/upload")
    statuses = {row[0]: row[2] for row in editor.predict(api_name="/pages")["data"]}
    assert statuses["parking.md"] == "new" and statuses["aftercare.md"] == "indexed"
    assert "added: parking.md" in editor.predict(api_name="/dry_run")
    summary, chunks = editor.predict("parking.md", page.read_text(), api_name="/preview")
    assert summary == "1 chunk(s) from 'Parking at the clinic'" and "level B2" in chunks["data"][0][3]
    assert "Tick 'yes, delete' first." in editor.predict("cost.md", False, api_name="/delete_page")[0]
    assert "not a usable page name" in editor.predict("../../etc/passwd.md", True, api_name="/delete_page")[0]

    failures, answered, stop = [], [], threading.Event()

    def patient_keeps_asking() -> None:
        patient = client(running)
        while not stop.is_set():
            text = patient.predict("how long should I avoid washing my scalp after SMP?", api_name="/chat")
            (answered if "48 hours" in text else failures).append(text)
            if "questions in the last minute" in text:
                patient = client(running)
                failures.pop()

    asker = threading.Thread(target=patient_keeps_asking)
    asker.start()
    try:
        result = editor.predict(api_name="/reindex")
    finally:
        stop.set()
        asker.join(30)
    assert result.startswith("Re-indexed into staging") and "added: parking.md" in result
    assert "Patients still see live version" in result
    assert answered and not failures
    # staged, not published: patients do not see it yet; staff see it when they chat against staging
    assert "basement, level B2" not in client(running).predict("where can I park at the clinic?", api_name="/chat")
    staff = client(running, "/staff/", auth=("ana", STAFF["ana"][0]))
    assert "basement, level B2" in staff.predict("where can I park at the clinic?", api_name="/chat_staging")[1]
    assert {row[0]: row[2] for row in editor.predict(api_name="/pages")["data"]}["parking.md"] == "indexed"


@pytest.mark.slow
def test_twenty_simultaneous_clients_each_get_their_own_answer(running):
    cases = [c for c in load_golden() if c["category"] == "content"][::4][:20]
    expected = {}
    for case in cases:
        answer = running.engine.ask(case["question"])
        expected[case["question"]] = answer.text
    barrier = threading.Barrier(len(cases))
    results: dict[str, tuple[str, float]] = {}
    errors: list[str] = []

    def one(question: str) -> None:
        try:
            patient = client(running)
            barrier.wait(30)
            started = time.perf_counter()
            text = patient.predict(question, api_name="/chat")
            results[question] = (text, (time.perf_counter() - started) * 1000)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{question}: {exc!r}")

    threads = [threading.Thread(target=one, args=(c["question"],)) for c in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    latencies = sorted(ms for _, ms in results.values())
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(f"\n20 clients: {len(results)} answers, {len(errors)} errors, p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    assert not errors and len(results) == 20
    for question, (text, _) in results.items():
        assert text.startswith(expected[question]), question  # its own answer, not a neighbour's


@pytest.mark.slow
def test_python_app_py_starts_answers_and_keeps_consoles_off_without_staff_users(built, tmp_path):
    """`python app.py` on an existing index: time to the first answer; no staff users -> consoles refuse."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "CHROMA_"))}
    env.update(
        CHATBOT_STORE_DIR=str(built.store_dir),
        CHATBOT_DATA_DIR=str(tmp_path / "var"),
        CHATBOT_PORT=str(port),
        CHATBOT_CONTENT_DIR=str(built.content_dir),
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        while http_ok(url) is False:
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.perf_counter() - started < 120, "app.py did not start in 120 s"
            time.sleep(0.2)
        patient = Client(url + "/", verbose=False)
        text = patient.predict("How long should I avoid washing my scalp?", api_name="/chat")
        seconds = time.perf_counter() - started
        patient.close()
        print(f"\npython app.py: start-up to first answer {seconds:.1f} s")
        assert "48 hours" in text
        for console in ("staff", "editor"):
            for path in (f"/{console}", f"/{console}/", f"/{console}/config", f"/{console}/gradio_api/info"):
                status, body = http(url + path)
                assert status == 403 and f"The {console} console is off" in body, (path, status)
    finally:
        process.terminate()
        stopped = time.perf_counter()
        process.wait(30)
        print(f"stopped in {time.perf_counter() - stopped:.1f} s")


def http_ok(url: str) -> bool:
    try:
        return http(url)[0] == 200
    except OSError:
        return False
