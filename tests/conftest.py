"""Shared fixtures: the embedding model, a real index of content/ and the running app, each built once per session.

Plain helpers and constants (settings_for, publish_content, free_port, STAFF, ...) live in tests/support.py.

Two tiers: `make test` runs everything with the real model. `make test-fast` runs the tests not marked `slow`
with CHATBOT_TEST_EMBEDDER=fake, which makes `embedder` a FakeEmbedder. A test is marked slow when it tests the
model (retrieval and answer quality, the triage meaning layer, evaluation and red-team numbers), needs the
real model's answers (a gated publish: `built`, `engine`, `running`), drives servers, subprocesses or a browser,
or takes many seconds; so the fake only ever reaches tests that need *an* embedder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chatbot.embedding import Embedder
from chatbot.settings import Settings
from tests.support import (
    CONTENT,
    FakeEmbedder,
    Running,
    fake_embedder_wanted,
    publish_content,
    remember_batch_vectors,
    settings_for,
    start_app,
    start_postgres,
)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real model: the default backend (onnx), as the app and ingest.py load it, exported once into .onnx/ if
    needed, remembering the vectors of batches across tests (tests.support.remember_batch_vectors). With
    CHATBOT_TEST_EMBEDDER=fake (`make test-fast`, which runs only tests not marked slow): the small
    deterministic tests.support.FakeEmbedder, for the tests that need an embedder but do not test the model."""
    if fake_embedder_wanted():
        return FakeEmbedder()
    return remember_batch_vectors(Embedder.from_settings(Settings.from_env(env={})))


# Fixtures that publish content/ through the safety gate, which runs the golden and red-team sets through the real
# model: every test using one is slow, marked here too so that no such test can land in the fast tier.
REAL_MODEL_FIXTURES = frozenset({"built", "engine", "running"})


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """Before `-m` deselects: mark slow what needs the real model's gated publish. After: the fake embedder is for
    the fast tier only, so with it no slow test may be selected."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    result = yield
    if fake_embedder_wanted():
        slow = [item.nodeid for item in items if item.get_closest_marker("slow")]
        if slow:
            raise pytest.UsageError(
                f"CHATBOT_TEST_EMBEDDER=fake runs the fast tier only (pytest -m 'not slow', make test-fast), but "
                f"{len(slow)} slow test(s) are selected, e.g. {slow[0]}"
            )
    return result


@pytest.fixture
def content_copy(tmp_path: Path) -> Path:
    """A private, editable copy of the clinic's content."""
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


@pytest.fixture(scope="session")
def built(tmp_path_factory, embedder) -> Settings:
    """The real content/ ingested into a real Chroma store and published through the gate (which needs the real
    model), read-only for the tests that use it."""
    root = tmp_path_factory.mktemp("built")
    settings = settings_for(CONTENT, root / "store")
    publish_content(settings, embedder)
    return settings


@pytest.fixture(scope="session")
def engine(built, embedder):
    from chatbot.answer import Engine

    return Engine(built, embedder)


@pytest.fixture(scope="session")
def running(tmp_path_factory, embedder) -> Running:
    """One app for the whole session (in-process uvicorn on a free loopback port, real engine on a tmp index with
    the poisoned page tests.support.POISON), started by the first test that asks, stopped at the end."""
    app = start_app(tmp_path_factory.mktemp("app"), embedder)
    yield app
    app.stop()


# --- PostgreSQL server (issue 15) ---
@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A real PostgreSQL server on a free loopback port for the session (tests.support.start_postgres), stopped and
    its files removed at the end; returns the URL of its 'postgres' database."""
    url, stop = start_postgres()
    yield url
    stop()
