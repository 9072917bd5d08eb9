"""Teach from the unanswered: a question attached to a section is a staged content change (gate, audit)."""

from __future__ import annotations

import pytest

from chatbot.answer import Engine
from chatbot.lifecycle import LifecycleError, audit_log
from chatbot.loading import load_page
from chatbot.store import VersionStore
from chatbot.teach import attach_question, content_requests, needs_content
from tests.support import publish_content, settings_for

SECTION = "The first 24 to 48 hours"


@pytest.mark.slow  # a gated publish with the real model
def test_attached_question_is_staged_not_live_and_redacted(content_copy, tmp_path, embedder):
    settings = settings_for(content_copy, tmp_path / "store")
    live = publish_content(settings, embedder)
    asked = "Can I go for a swim in the sea the day after? call me on 9876543210"
    report = attach_question(settings, lambda: embedder, "ana", "aftercare.md", SECTION, asked)
    store = VersionStore(settings)
    assert store.pointer("live") == live and store.pointer("staging") == report.version != live
    page = load_page("aftercare.md", (content_copy / "aftercare.md").read_bytes(), 10**6)
    attached = page.questions[SECTION][-1]
    assert attached.startswith("Can I go for a swim in the sea the day after?") and "9876543210" not in attached
    assert "Avoid washing the treated area for 48 hours." in page.text  # the page's content is untouched
    actions = [e.action for e in audit_log(settings).events()]
    assert actions[:2] == ["stage", "attach_question"]
    staged = Engine(settings, embedder, pointer="staging").ask("can i swim in the sea the day after?")
    assert staged.hits[0].section == SECTION and staged.hits[0].matched == attached


def test_unknown_section_is_refused_and_needs_content_is_listed_for_editors(content_copy, tmp_path, embedder):
    settings = settings_for(content_copy, tmp_path / "store")
    with pytest.raises(LifecycleError, match="no section"):
        attach_question(settings, lambda: embedder, "ana", "aftercare.md", "Swimming", "can I swim?")
    needs_content(settings, "ana", "Do you have EMI? I'm Priya, priya@example.com")
    rows = content_requests(settings)
    assert rows[0][1] == "ana" and "EMI" in rows[0][2] and "priya@example.com" not in rows[0][2]
