"""One publish policy: no entry point makes an index live without the safety gate and an audit row."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chatbot.indexing import ingest
from chatbot.lifecycle import LifecycleError, audit_log, publish, stage_and_publish
from chatbot.settings import ROOT
from chatbot.store import VersionStore
from tests.support import settings_for


def ask_cli(store, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHATBOT_DATA_DIR": str(store.parent / "var")}
    return subprocess.run(
        [sys.executable, "-m", "chatbot", "ask", "--store", str(store), *extra, "When can I wash my hair?"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_ingest_only_ever_builds_staging(content_copy, tmp_path, embedder):
    settings = settings_for(content_copy, tmp_path / "store")
    report = ingest(settings, lambda: embedder)
    store = VersionStore(settings)
    assert store.pointer("staging") == report.version and store.pointer("live") is None


@pytest.mark.slow  # a gated publish with the real model
def test_publish_needs_the_passed_gate_of_that_staging_version(content_copy, tmp_path, embedder):
    settings = settings_for(content_copy, tmp_path / "store")
    ingest(settings, lambda: embedder)
    with pytest.raises(LifecycleError, match="safety gate"):
        publish(settings, "dr", None)
    outcome = stage_and_publish(settings, lambda: embedder, "dr", publish_now=True)
    assert outcome.gate.passed and outcome.published == outcome.gate.version
    (content_copy / "cost.md").write_text((content_copy / "cost.md").read_text() + "\nOne more line.\n")
    ingest(settings, lambda: embedder)  # staging moved on: the old gate report no longer applies
    with pytest.raises(LifecycleError, match="run the gate again"):
        publish(settings, "dr", outcome.gate)
    actions = [e.action for e in audit_log(settings).events()]
    assert actions[:2] == ["publish", "approve"]


@pytest.mark.slow  # two `python -m chatbot ask` processes (~25 s)
def test_ask_cli_never_publishes(content_copy, tmp_path, embedder):
    empty = tmp_path / "empty-store"
    done = ask_cli(empty)
    assert done.returncode == 1 and "no live index" in done.stderr and "python ingest.py" in done.stderr
    assert not (empty / "live").exists()
    # a store whose last build was only staged (e.g. the gate refused it): still nothing is published
    settings = settings_for(content_copy, tmp_path / "store")
    ingest(settings, lambda: embedder)
    done = ask_cli(settings.store_dir)
    assert done.returncode == 1 and VersionStore(settings).pointer("live") is None


@pytest.mark.slow
def test_ask_cli_build_and_app_start_go_through_the_gate(content_copy, tmp_path, embedder):
    from chatbot.lifecycle import open_engine

    settings = settings_for(content_copy, tmp_path / "store")
    engine, problem = open_engine(settings, embedder)
    assert problem is None and "48 hours" in engine.ask("When can I wash my hair after SMP?").text
    events = audit_log(settings).events()
    assert [(e.actor, e.action) for e in events[:2]] == [("app start-up", "publish"), ("app start-up", "approve")]
    staged_only = settings_for(content_copy, tmp_path / "staged")
    ingest(staged_only, lambda: embedder)
    engine, problem = open_engine(staged_only, embedder)
    assert "no version is live" in problem and engine.ask("When can I wash my hair?").mode == "unavailable"
    assert VersionStore(staged_only).pointer("live") is None
    fresh = tmp_path / "fresh"
    done = ask_cli(fresh, "--build", "--json")
    assert done.returncode == 0, done.stderr
    built = settings.with_(store_dir=fresh, data_dir=tmp_path / "var")
    assert VersionStore(built).pointer("live") is not None
    assert "approve" in [e.action for e in audit_log(built).events()]
