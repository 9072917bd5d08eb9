"""Shared, expensive fixtures: the real embedding model and a real index of content/, once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chatbot.embedding import Embedder
from chatbot.indexing import ingest
from chatbot.settings import ROOT, Settings

CONTENT = ROOT / "content"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


def settings_for(content_dir: Path, store_dir: Path, **changes) -> Settings:
    """Settings that ignore the developer's environment: only what the test says."""
    return Settings.from_env(
        env={}, content_dir=content_dir, store_dir=store_dir, data_dir=store_dir.parent / "var", **changes
    )


@pytest.fixture
def content_copy(tmp_path: Path) -> Path:
    """A private, editable copy of the clinic's content."""
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


@pytest.fixture(scope="session")
def built(tmp_path_factory, embedder) -> Settings:
    """The real content/ ingested into a real Chroma store, read-only for the tests that use it."""
    root = tmp_path_factory.mktemp("built")
    settings = settings_for(CONTENT, root / "store")
    ingest(settings, lambda: embedder)
    return settings


@pytest.fixture(scope="session")
def engine(built, embedder):
    from chatbot.answer import Engine

    return Engine(built, embedder)
