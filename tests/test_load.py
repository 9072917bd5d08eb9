"""Load and isolation: 50 concurrent patient conversations against the real app on loopback.

Each session is a browser tab (its own session hash, so its own server-side history) driving the chat's
streaming UI event, as the page does. A conversation is a first question and a follow-up that only makes sense
with that session's own history ("how long does it take?" after "Can I go to the gym after SMP?"). Every
answer must equal the engine's answer for that conversation computed here, in-process, on its own; the
follow-ups are chosen so that the same follow-up gets a different answer in different conversations, so an
answer or a history crossing between sessions cannot pass. The full 60 s run and the 10-minute memory soak
are `python -m bench.soak --sessions 50 --seconds 60` and `python -m bench.soak` (figures in docs/faults.md).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from bench.soak import CONVERSATIONS, run_load
from chatbot.web.chat import safe_markdown

SESSIONS = 50
SECONDS = float(os.environ.get("LOAD_TEST_SECONDS", "20"))


def expected_answers(engine) -> list[tuple[str, str]]:
    """What the page shows for each conversation's two turns when it is asked alone (escaped like the page)."""
    expected = []
    for first, follow_up, fact in CONVERSATIONS:
        one = engine.ask(first)
        two = engine.ask(follow_up, [(one.question, one.text)])
        assert one.mode == two.mode == "extractive", (first, follow_up)
        assert fact in two.text, (first, follow_up, two.text)
        assert fact not in engine.ask(follow_up).text, f"{fact!r} does not need the history of {first!r}"
        expected.append((safe_markdown(one.text), safe_markdown(two.text)))
    by_follow_up: dict[str, dict[str, str]] = {}  # follow-up -> first question -> answer
    for (first, follow_up, _fact), (_one, two) in zip(CONVERSATIONS, expected, strict=True):
        by_follow_up.setdefault(follow_up, {})[first] = two
    for follow_up, answers in by_follow_up.items():  # the same follow-up, a different answer per history
        assert len(set(answers.values())) == len(answers), follow_up
    return expected


@pytest.mark.slow
def test_fifty_concurrent_conversations_each_keep_their_own_history(running):
    expected = expected_answers(running.engine)
    result = asyncio.run(run_load(running.url + "/", SESSIONS, SECONDS, expected))
    lat = result["latency_ms"]
    print(
        f"\n{SESSIONS} sessions x {SECONDS:.0f} s: {result['answers']} answers ({result['answers_per_s']}/s), "
        f"{result['conversations']} conversations, {result['errors']} errors, {result['crossings']} crossings, "
        f"p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, max {lat.get('max')} ms"
    )
    assert result["errors"] == 0, result["error_examples"]
    assert result["crossings"] == 0, result["crossing_examples"]
    assert result["conversations"] >= SESSIONS  # every session finished at least one whole conversation


@pytest.mark.slow
def test_the_app_forgets_idle_sessions_after_a_burst(running):
    """Every conversation above was a new Gradio session; once they are done, the app's housekeeping (every
    second here, every minute by default) leaves nothing of them in Gradio's per-session queue bookkeeping."""
    from starlette.routing import Mount

    patient = next(r.app for r in running.app.routes if isinstance(r, Mount) and r.path == "").get_blocks()
    result = asyncio.run(run_load(running.url + "/", 10, 3, expected_answers(running.engine)))
    assert result["errors"] == 0 and result["conversations"] >= 10
    pending = patient._queue.pending_event_ids_session
    deadline = time.monotonic() + 10
    while pending and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pending, f"{len(pending)} sessions still held after {result['conversations']} conversations"
