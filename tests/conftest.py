"""Shared, expensive fixtures: the real embedding model and a real index of content/, once per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chatbot.embedding import Embedder
from chatbot.lifecycle import stage_and_publish
from chatbot.settings import ROOT, Settings

CONTENT = ROOT / "content"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default backend (onnx), as the app and ingest.py load it; exported once into .onnx/ if needed."""
    return Embedder.from_settings(Settings.from_env(env={}))


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
    publish_content(settings, embedder)
    return settings


@pytest.fixture(scope="session")
def engine(built, embedder):
    from chatbot.answer import Engine

    return Engine(built, embedder)


def publish_content(settings: Settings, embedder: Embedder, actor: str = "test-clinician") -> str:
    """Stage the settings' content folder and publish it through the safety gate, as a clinic would."""
    outcome = stage_and_publish(settings, lambda: embedder, actor, publish_now=True)
    assert outcome.published, outcome.gate.text() if outcome.gate else "nothing was published"
    return outcome.published


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(app) -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app on a free loopback port from a thread of this process: its URL and a stop function."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="app-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(15)

    return f"http://127.0.0.1:{port}", stop


def start_chroma(data_dir: Path, port: int) -> subprocess.Popen:
    """A real `chroma run` server on loopback; returns once it accepts connections."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chromadb package's 'chroma' command is missing"
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "chroma server did not start"
            time.sleep(0.2)


def spawn_ingest(content_dir: Path, store_dir: Path) -> subprocess.Popen:
    """`python ingest.py` in its own process, as an editor would run it."""
    return subprocess.Popen(
        [sys.executable, "ingest.py", str(content_dir), "--store", str(store_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CHATBOT_DATA_DIR": str(store_dir.parent / "var")},
    )
