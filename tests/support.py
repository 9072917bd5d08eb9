"""Plain helpers and constants shared by the tests (fixtures live in conftest.py; this is not a test module).

Also the small fake embedder of the fast tier (`make test-fast`): CHATBOT_TEST_EMBEDDER=fake makes the
session's `embedder` fixture a FakeEmbedder instead of the real model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from gradio_client import Client

from chatbot.answer import Engine
from chatbot.embedding import Embedder
from chatbot.feedback import FeedbackLog
from chatbot.lexical import tokens
from chatbot.lifecycle import stage_and_publish
from chatbot.settings import ROOT, Settings
from chatbot.web import server

CONTENT = ROOT / "content"
DATA = Path(__file__).parent / "data"

# The fast tier: `CHATBOT_TEST_EMBEDDER=fake` (set by `make test-fast`) swaps the model for FakeEmbedder.
EMBEDDER_ENV = "CHATBOT_TEST_EMBEDDER"


def fake_embedder_wanted(env: dict | None = None) -> bool:
    value = (os.environ if env is None else env).get(EMBEDDER_ENV, "").strip().lower()
    if value not in ("", "real", "fake"):
        raise ValueError(f"{EMBEDDER_ENV}={value!r}: use 'fake' (fast tier) or 'real' (the default)")
    return value == "fake"


def remember_batch_vectors(embedder: Embedder) -> Embedder:
    """The real model, remembering the vectors of the texts it embeds in batches (an ingest, the gate's sets), so
    that the many tests that ingest content/ into their own store embed each text once per session. The vectors
    are the model's own; a single text (a question) is embedded afresh every time."""
    real = embedder._batch
    memo: dict[str, np.ndarray] = {}

    def batch(texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        if len(texts) < 2:
            return real(texts, batch_size, progress)
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            memo.update(zip(missing, np.asarray(real(missing, batch_size, progress), dtype=np.float32), strict=True))
        return np.stack([memo[t] for t in texts])

    embedder._batch = batch
    return embedder


class FakeEmbedder(Embedder):
    """A small deterministic stand-in for the model: a signed, hashed bag of the words `chatbot.lexical.tokens`
    finds (plus word pairs), normalised, in the model's dimension (384). No model is loaded.

    It has the interface the code uses of Embedder (it is one, with another `_batch`): `encode`, `query_vector`
    (cached in `_query`, which evaluation clears), `embed_documents`, `embed_query`, `dimension`, `batch_size`.
    Texts sharing words get similar vectors, so retrieval works roughly; nothing about the model's meaning does.
    """

    DIMENSION = 384

    def __init__(self, dimension: int = DIMENSION, batch_size: int = 16):  # no super(): it would load the model
        self.backend = "fake"
        self.model_path = None
        self.model = None
        self.onnx_path = None
        self.parallel = 1
        self.batch_size = batch_size
        self.dimension = dimension
        self._batch = self._hash_batch
        self._query = lru_cache(maxsize=2048)(self._encode_one)

    def _hash_batch(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        return np.stack([self._vector(text) for text in texts]).astype(np.float32)

    def _vector(self, text: str) -> np.ndarray:
        words = tokens(text)
        features = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        vec = np.zeros(self.dimension, dtype=np.float32)
        for feature in features or ["<empty>"]:  # a text without words still gets a unit vector
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "little") % self.dimension
            vec[slot] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:  # every feature cancelled out
            vec[0], norm = 1.0, 1.0
        return vec / norm


def settings_for(content_dir: Path, store_dir: Path, **changes) -> Settings:
    """Settings that ignore the developer's environment: only what the test says."""
    return Settings.from_env(
        env={}, content_dir=content_dir, store_dir=store_dir, data_dir=store_dir.parent / "var", **changes
    )


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


POSTGRES_PASSWORD = "chatbot-test-pw"


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL server's bin folder (initdb, pg_ctl). Missing binaries fail the caller."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    pg_ctl = found[-1] if found else shutil.which("pg_ctl")
    assert pg_ctl, "PostgreSQL server binaries (initdb, pg_ctl) are missing: run 'make postgres' (Debian's postgresql)"
    return Path(pg_ctl).parent


def start_postgres() -> tuple[str, Callable[[], None]]:
    """A real PostgreSQL server on a free loopback port, its files in a new temporary folder: the URL of its
    'postgres' database and a function that stops the server and removes the folder. As root, the server runs as
    the 'postgres' user (PostgreSQL refuses to run as root)."""
    import tempfile

    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="chatbot-pg-"))
    (folder / "pw").write_text(POSTGRES_PASSWORD)
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        assert runuser, "as root, PostgreSQL is started with 'runuser -u postgres': runuser is missing"
        try:
            for path in (folder, folder / "pw"):
                shutil.chown(path, user="postgres")
        except LookupError:
            shutil.rmtree(folder, ignore_errors=True)
            raise AssertionError(
                "as root, PostgreSQL runs as the 'postgres' user, which is missing: run 'make postgres'"
            ) from None
        as_user = [runuser, "-u", "postgres", "--"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    data, port = folder / "data", free_port()

    def stop() -> None:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)

    done = run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", "chatbot", f"--pwfile={folder / 'pw'}",
        "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
    )  # fmt: skip
    if done.returncode != 0:
        stop()
        raise AssertionError(f"initdb failed: {done.stderr[-2000:]}")
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    log_file = folder / "server.log"
    done = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-o", options, "-w", "-t", "60", "start")
    if done.returncode != 0:
        server_log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        stop()
        raise AssertionError(f"PostgreSQL did not start: {done.stdout[-500:]} {done.stderr[-500:]} {server_log}")
    return f"postgresql://chatbot:{POSTGRES_PASSWORD}@127.0.0.1:{port}/postgres", stop


def spawn_ingest(content_dir: Path, store_dir: Path) -> subprocess.Popen:
    """`python ingest.py` in its own process, as an editor would run it."""
    return subprocess.Popen(
        [sys.executable, "ingest.py", str(content_dir), "--store", str(store_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CHATBOT_DATA_DIR": str(store_dir.parent / "var")},
    )


# ------------------------------------------------------------------ the running app (the `running` fixture)

STAFF = {"ana": ("ana-secret-1", "clinician"), "bo": ("bo-secret-2", "editor")}
RATE_LIMIT = 8
# A content page with markup that must never reach a patient's page (escaped, shown as text).
POISON = """---
title: Newsletter sign-up
---
# Newsletter sign-up

## How to join the newsletter
Join the newsletter at the front desk. <script>window.__pwned = 1</script>
<iframe src="http://127.0.0.1:9/frame"></iframe> <img src="http://127.0.0.1:9/pixel.png">
<form action="http://127.0.0.1:9/steal"><input name="q"></form> ![logo](http://127.0.0.1:9/logo.png)
"""


@dataclass
class Running:
    url: str
    settings: Settings
    engine: Engine
    log: FeedbackLog
    stop: Callable[[], None]
    app: object = None  # the FastAPI app, for tests that look at what it keeps in memory


def start_app(root: Path, embedder) -> Running:
    """Copy content/ (plus the poisoned page), ingest it into a tmp store and serve the app on loopback."""
    content = root / "content"
    shutil.copytree(CONTENT, content)
    (content / "newsletter.md").write_text(POISON)
    settings = settings_for(
        content, root / "store", staff_users=STAFF, rate_limit_per_minute=RATE_LIMIT, housekeeping_s=1.0
    )
    publish_content(settings, embedder)
    engine = Engine(settings, embedder)
    log = FeedbackLog.open(settings)
    app = server.create_app(settings, engine, log)
    url, stop = serve_in_thread(app)
    return Running(url, settings, engine, log, stop, app)


def client(running: Running, path: str = "/", auth: tuple[str, str] | None = None) -> Client:
    return Client(running.url + path, auth=auth, verbose=False, download_files=False)


def http(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
