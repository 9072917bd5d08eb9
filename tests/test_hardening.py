"""Web hardening and app-level faults, against the real app on loopback (httpx, raw request targets).

- Gradio's file, proxy and static routes give nothing away: traversal (plain, encoded, double-encoded,
  backslashes), absolute paths, the app's own source, the store, the SQLite log, URLs (cloud metadata, loopback,
  file://) on the public app and on both consoles, anonymous and signed in.
- The consoles refuse every anonymous request except their login page; a forged cookie or another console's
  cookie opens nothing.
- Uploads: the public app takes none (not even one byte); the editor refuses oversized files and wrong types,
  and a file name cannot climb out of the upload folder.
- Patient text is redacted in the SQLite log and in everything the app logs.
- Faults: `python app.py` on a corrupted or half-written store starts, stays up, answers "temporarily
  unavailable", says how to repair, builds nothing over it, and picks up the repaired index without a restart;
  a full disk under the feedback log (a real 64 KiB tmpfs) leaves the chat answering and loses no log rows;
  a full queue answers with the clinic's busy message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file

from bench.common import stop_process
from bench.soak import ChatError, UiSession, chat_fn_index, run_event
from chatbot import lifecycle
from chatbot.feedback import FeedbackLog
from chatbot.lifecycle import store_damage
from chatbot.settings import ROOT, Settings
from chatbot.store import VersionStore
from chatbot.web import server, startup
from chatbot.web.chat import safe_markdown
from chatbot.wording import render, ui_words
from tests.support import STAFF, free_port, serve_in_thread

QUESTION = "How long should I avoid washing my scalp after SMP?"
FACT = "48 hours"
SECRET_MARKERS = ("root:x:0:0", "SQLite format 3", "GRADIO_ANALYTICS_ENABLED", '"metadata"', "ami-id", "instance-id")


def raw_get(client: httpx.Client, target: str, method: str = "GET") -> httpx.Response:
    """Send `target` exactly as written (no dot-segment removal or re-encoding by the client)."""
    request = client.build_request(method, "/", extensions={"target": target.encode()})
    return client.send(request)


def sign_in(url: str, console: str, user: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    response = client.post(f"/{console}/login", data={"username": user, "password": STAFF[user][0]})
    assert response.status_code == 200, response.text
    return client


def attacks(running) -> list[str]:
    store = VersionStore(running.settings)
    live = store.path(store.pointer())
    return [
        "../../../../../../etc/passwd",
        "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "..%252f..%252f..%252f..%252fetc%252fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "....//....//....//....//etc/passwd",
        "..\\..\\..\\..\\..\\etc\\passwd",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "//etc/passwd",
        "/proc/self/environ",
        "file:///etc/passwd",
        str(ROOT / "app.py"),
        str(ROOT / "chatbot" / "settings.py"),
        str(running.settings.store_dir / "live"),
        str(live / "chunks.jsonl"),
        str(live / "chroma" / "chroma.sqlite3"),
        str(running.log.path),
        str(running.settings.data_dir),
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        f"{running.url}/config",
    ]


ROUTES = (
    "{prefix}/gradio_api/file={x}",
    "{prefix}/file={x}",
    "{prefix}/gradio_api/file/{x}",
    "{prefix}/gradio_api/proxy={x}",
    "{prefix}/static/{x}",
    "{prefix}/assets/{x}",
)


@pytest.mark.slow
def test_file_routes_give_nothing_away(running):
    """Every trick on every file-like route of every app, anonymous and (consoles) signed in: 4xx, no content."""
    clients = {"": httpx.Client(base_url=running.url, timeout=30)}
    for prefix in ("/staff", "/editor"):
        clients[prefix] = clients[""]  # anonymous
        clients[prefix + " signed in"] = sign_in(running.url, prefix[1:], "ana" if prefix == "/staff" else "bo")
    checked = 0
    try:
        for label, client in clients.items():
            prefix = label.split(" ")[0]
            for route in ROUTES:
                for x in attacks(running):
                    target = route.format(prefix=prefix, x=x)
                    response = raw_get(client, target)
                    assert 400 <= response.status_code < 500, (label, target, response.status_code)
                    assert not any(m in response.text for m in SECRET_MARKERS), (label, target, response.text[:200])
                    checked += 1
    finally:
        for client in set(clients.values()):
            client.close()
    print(f"\n{checked} file-route requests, all refused")


@pytest.mark.slow
def test_the_public_app_closes_routes_it_never_needs(running):
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for target, status in (
            ("/gradio_api/file=/etc/passwd", 404),
            ("/gradio_api/upload_progress?upload_id=x", 413),
            ("/gradio_api/vibe-code", 404),
            ("/gradio_api/run-history/buckets", 404),
            ("/monitoring", 404),
            ("//gradio_api//file=/etc/passwd", 404),
        ):
            assert raw_get(client, target).status_code == status, target
        page = client.get("/")
        assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
        assert client.get("/healthz").json() == {"status": "ok"}


CONSOLE_REQUESTS = [
    ("GET", "/"),  # the login page itself (200, shows nothing of the console): checked separately
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/openapi.json"),
    ("GET", "/gradio_api/queue/data?session_hash=anon"),
    ("GET", "/gradio_api/heartbeat/anon"),
    ("GET", "/gradio_api/startup-events"),
    ("GET", "/gradio_api/upload_progress?upload_id=anon"),
    ("GET", "/gradio_api/token"),
    ("GET", "/gradio_api/user"),
    ("GET", "/gradio_api/app_id"),
    ("GET", "/gradio_api/file=/etc/passwd"),
    ("GET", "/gradio_api/call/inspect/anon-event"),
    ("GET", "/monitoring"),
    ("POST", "/gradio_api/queue/join"),
    ("POST", "/gradio_api/call/inspect"),
    ("POST", "/gradio_api/call/export"),
    ("POST", "/gradio_api/run/predict"),
    ("POST", "/gradio_api/api/inspect"),
    ("POST", "/gradio_api/upload"),
    ("POST", "/gradio_api/cancel"),
    ("POST", "/gradio_api/reset"),
    ("POST", "/gradio_api/stream/anon"),
    ("POST", "/gradio_api/process_recording"),
]


@pytest.mark.slow
@pytest.mark.parametrize("console", ["staff", "editor"])
def test_consoles_refuse_anonymous_requests(running, console):
    body = {"data": ["what is smp"], "fn_index": 0, "session_hash": "anon", "event_data": None, "trigger_id": None}
    with httpx.Client(base_url=running.url, timeout=30) as anonymous:
        for method, path in CONSOLE_REQUESTS[1:]:
            response = anonymous.request(method, f"/{console}{path}", json=body if method == "POST" else None)
            assert response.status_code in (401, 403), (method, path, response.status_code, response.text[:120])
            assert "microtattooing" not in response.text and '"named_endpoints"' not in response.text
        login_page = anonymous.get(f"/{console}/")
        assert login_page.status_code == 200 and '"auth_required":true' in login_page.text.replace(" ", "")
    user = "ana" if console == "staff" else "bo"
    other = "editor" if console == "staff" else "staff"
    with contextlib.closing(sign_in(running.url, console, user)) as staff:
        assert staff.get(f"/{console}/gradio_api/info").status_code == 200  # the guard lets staff in
        assert staff.get(f"/{other}/gradio_api/info").status_code == 401  # one console's cookie opens only it
        assert staff.get(f"/{console}/gradio_api/file=http://169.254.169.254/latest/meta-data/").status_code == 403
        names = [name for name in staff.cookies if name.startswith("access-token")]
        assert names
    with httpx.Client(base_url=running.url, timeout=30) as forger:  # the right cookie name, a made-up token
        forged = forger.get(f"/{console}/gradio_api/info", cookies=dict.fromkeys(names, "forged-token"))
        assert forged.status_code == 401


def upload(client: httpx.Client, target: str, name: str, content: bytes, mime: str = "text/plain") -> httpx.Response:
    return client.post(target, files={"files": (name, content, mime)})


@pytest.mark.slow
def test_uploads_public_none_editor_only_small_pages(running, tmp_path):
    with httpx.Client(base_url=running.url, timeout=30) as anonymous:
        for content in (b"", b"x", b"# A page\n\ntext\n"):
            refused = upload(anonymous, "/gradio_api/upload", "a.md", content)
            assert refused.status_code == 413 and "takes no uploads" in refused.text
        assert upload(anonymous, "/editor/gradio_api/upload", "a.md", b"# A\n\ntext").status_code == 401
    limit = running.settings.max_upload_bytes
    with contextlib.closing(sign_in(running.url, "editor", "bo")) as editor:
        too_big = upload(editor, "/editor/gradio_api/upload", "big.md", b"# Big\n\n" + b"word " * (limit // 4))
        assert too_big.status_code == 413
        climbing = upload(editor, "/editor/gradio_api/upload", "../../../../../tmp/escaped.md", b"# A\n\ntext")
        assert climbing.status_code == 200
        stored = Path(climbing.json()[0]).resolve()
        upload_dir = Path(gr.utils.get_upload_folder()).resolve()
        assert stored.is_relative_to(upload_dir) and stored.name == "escaped.md", stored
        shutil.rmtree(stored.parent, ignore_errors=True)
    console = Client(running.url + "/editor/", auth=("bo", STAFF["bo"][0]), verbose=False, download_files=False)
    for name, content in (("leaflet.pdf", b"%PDF-1.4\n%fake\n"), ("setup.exe", b"MZ" + b"\0" * 64)):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(Exception, match="Invalid file type"):
            console.predict(handle_file(str(bad)), api_name="/upload")
    pages = {row[0] for row in console.predict(api_name="/pages")["data"]}
    assert not pages & {"leaflet.pdf", "setup.exe"}
    console.close()


def test_memory_per_patient_session_is_bounded():
    """What the app keeps per session: Gradio's session objects up to SESSION_CAPACITY (least recently used
    forgotten first), the rate limiter only for sessions that asked within its minute."""
    from chatbot.web.chat import RateLimiter
    from chatbot.web.patient import SESSION_CAPACITY, build_patient_app

    settings = Settings.from_env(env={})
    assert build_patient_app(None, None, settings).state_session_capacity == SESSION_CAPACITY == 1000
    limiter = RateLimiter(2)
    for i in range(5000):
        assert limiter.allow(f"session-{i}", now=i * 0.05)  # 20 new sessions a second, for 250 s
    assert len(limiter) == 1200  # the last minute's sessions only
    assert limiter.allow("session-4999", now=250.0) and not limiter.allow("session-4999", now=250.1)


PATIENT = "My name is Ravindra Kulkarni, call me on +91 98765 43210 or ravindra.k@example.com. Does SMP hurt?"
PATIENT_HINGLISH = "main Suresh hoon, mera number 9876512345 hai, how long should I avoid washing my scalp?"
PERSONAL = ("Ravindra", "Kulkarni", "98765", "43210", "ravindra.k", "Suresh", "9876512345")


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.exc_text or ''}")


@pytest.mark.slow
def test_patient_text_is_redacted_in_the_log_file_and_in_all_logging(running, capfd):
    handler = Everything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:

        async def browser_chat() -> list[str]:
            async with httpx.AsyncClient(base_url=running.url + "/", timeout=60) as client:
                session = UiSession(client, chat_fn_index((await client.get("config")).json()))
                return [(await session.ask(q)).answer for q in (PATIENT, PATIENT_HINGLISH)]

        shown = asyncio.run(browser_chat())
        api = Client(running.url + "/", verbose=False, download_files=False)
        text = api.predict(PATIENT, api_name="/chat")
        assert api.predict("down", f"I am {PATIENT[11:28]}, mail ravindra.k@example.com", api_name="/feedback")
        api.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert "local anaesthesia" in shown[0] and "local anaesthesia" in text and FACT in shown[1]
    logged = [row["question"] for row in running.log.questions(limit=20)]
    assert "My name is [name], call me on [phone] or [email]. Does SMP hurt?" in logged
    assert any(q.startswith("main [name] hoon, mera number [phone] hai") for q in logged), logged
    files = [running.log.path, *running.log.path.parent.glob(running.log.path.name + "-*")]
    stored = b"".join(path.read_bytes() for path in files if path.is_file())
    captured = capfd.readouterr()
    everything = "\n".join(handler.lines) + captured.out + captured.err
    assert handler.lines, "nothing was logged at all: the capture is not working"
    for secret in PERSONAL:
        assert secret.encode() not in stored, f"{secret} is in the SQLite file"
        assert secret not in everything, f"{secret} was logged"


# ------------------------------------------------------------------ faults at the app level


def damage_corrupted(store: Path) -> None:
    """A corrupted store: the live version's chunk list cut short and its Chroma database overwritten."""
    version = store / "versions" / (store / "live").read_text().strip()
    chunks = version / "chunks.jsonl"
    chunks.write_bytes(chunks.read_bytes()[:200])
    (version / "chroma" / "chroma.sqlite3").write_bytes(b"\x00garbage, not a database\xff" * 500)


def damage_half_written(store: Path) -> None:
    """A half-written store: 'live' names a version whose build stopped part-way (no COMPLETE, manifest cut)."""
    good = (store / "live").read_text().strip()
    half = store / "versions" / "v000099"
    shutil.copytree(store / "versions" / good, half)
    (half / "COMPLETE").unlink()
    (half / "manifest.json").write_text('{"pages": {"aftercare.md": {"sha')
    (store / "live").write_text("v000099\n")


def start_app_py(store: Path, data: Path, port: int, log_file: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "CHROMA_"))}
    env.update(
        CHATBOT_STORE_DIR=str(store),
        CHATBOT_DATA_DIR=str(data),
        CHATBOT_PORT=str(port),
        CHATBOT_CONTENT_DIR=str(ROOT / "content"),
    )
    with open(log_file, "w") as out:
        return subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def backup_version(store: Path) -> str:
    """Copy the live version to a new version number, as a backup to restore later; returns its name."""
    good = (store / "live").read_text().strip()
    backup = f"v{int(good[1:]) + 1:06d}"
    shutil.copytree(store / "versions" / good, store / "versions" / backup)
    return backup


def assert_unavailable_everywhere(url: str, settings) -> None:
    unavailable = render("unavailable", settings)
    patient = Client(url + "/", verbose=False, download_files=False)
    assert patient.predict(QUESTION, api_name="/chat") == unavailable
    assert patient.predict("hello", api_name="/chat") == render("greeting", settings)  # the rest of the chat works
    patient.close()
    assert asyncio.run(ask_in_page(url, QUESTION)) == safe_markdown(unavailable)  # what the page shows
    assert httpx.get(url + "/healthz").status_code == 503


@pytest.mark.slow
def test_app_py_on_a_corrupted_store_starts_stays_up_and_says_how_to_repair(built, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(built.store_dir, store)
    backup = backup_version(store)
    damage_corrupted(store)
    before = listing(store)
    port, log_file = free_port(), tmp_path / "app.log"
    url = f"http://127.0.0.1:{port}"
    process = start_app_py(store, tmp_path / "var", port, log_file)
    try:
        deadline = time.monotonic() + 150
        while not http_ok(url + "/"):
            assert process.poll() is None, f"app.py exited:\n{log_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "app.py did not start"
            time.sleep(0.3)
        assert_unavailable_everywhere(url, built)
        text = log_file.read_text()
        assert "INDEX DAMAGED OR UNAVAILABLE" in text and "python ingest.py --rebuild" in text, text[-2000:]
        assert "index files are damaged" in text and "Traceback" not in text, text[-3000:]
        assert listing(store) == before, "app.py changed the damaged store"
        assert process.poll() is None, "app.py stopped"
        # Repair as a rebuild or a restore does (a good version, then the pointer switched): answered again,
        # without a restart.
        VersionStore(built.with_(store_dir=store)).set_pointer(backup)
        assert FACT in Client(url + "/", verbose=False).predict(QUESTION, api_name="/chat")
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        assert process.poll() is None
    finally:
        stop_process(process, 30)


@pytest.mark.slow
def test_start_up_never_builds_over_a_half_written_store(built, embedder, tmp_path):
    """The start-up decision (the same code `python app.py` runs, with this session's model): a store that
    exists but is damaged is reported, not rebuilt; only a store that is not there at all is built."""
    assert store_damage(built.with_(store_dir=tmp_path / "nothing-yet")) is None  # fresh install: build
    store = tmp_path / "store"
    shutil.copytree(built.store_dir, store)
    settings = built.with_(store_dir=store)
    good = (store / "live").read_text().strip()
    damage_half_written(store)
    before = listing(store)
    engine, problem = lifecycle.open_engine(settings, embedder)
    assert problem == "the live pointer names 'v000099', which is missing or half-written"
    assert "python ingest.py --rebuild" in engine.ask(QUESTION).why or startup.check_index(engine)
    assert listing(store) == before  # nothing built, nothing deleted
    with serving(server.create_app(settings, engine, FeedbackLog(tmp_path / "log.sqlite3"))) as url:
        assert_unavailable_everywhere(url, settings)
        VersionStore(settings).set_pointer(good)  # repaired (restored): answered again without a restart
        assert FACT in Client(url + "/", verbose=False).predict(QUESTION, api_name="/chat")
    (store / "live").unlink()  # built versions but none live: not published, or the pointer was lost
    (store / "history.json").unlink()
    assert "no version is live although the store holds v000001" in store_damage(settings)
    (store / "history.json").write_text('[{"version": "v000001", "previous": null}]')
    assert "published before" in store_damage(settings)
    (store / "history.json").write_text("[{")
    assert "history.json is damaged" in store_damage(settings)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


async def ask_in_page(url: str, question: str) -> str:
    async with httpx.AsyncClient(base_url=url + "/", timeout=60) as client:
        session = UiSession(client, chat_fn_index((await client.get("config")).json()))
        return (await session.ask(question)).answer


@contextlib.contextmanager
def serving(app):
    """An app on a free loopback port in this process (like the `running` fixture), stopped afterwards."""
    url, stop = serve_in_thread(app)
    try:
        yield url
    finally:
        stop()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "64k"):
    """A real, tiny filesystem at `path` (tmpfs, root only), unmounted afterwards; None when not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=False)
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write to `path` until the filesystem says it is full (ENOSPC)."""
    filler = path / "filler.bin"
    with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    with pytest.raises(OSError) as full:
        (path / "one-more").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
def test_disk_full_under_the_feedback_log_keeps_the_chat_answering_and_loses_no_rows(
    running,
    tmp_path,
    caplog,
):
    """A real full filesystem (64 KiB tmpfs) under the SQLite log. Without root or mount rights, the fallback is
    a read-only log file and folder (SQLite refuses the write the same way: OperationalError, kept for later)."""
    with small_filesystem(tmp_path / "tiny") as tiny:
        if tiny is None and os.geteuid() == 0:
            pytest.skip("cannot mount a tmpfs here, and root ignores read-only permissions")
        folder = tiny or tmp_path / "tiny"
        feedback_log = FeedbackLog(folder / "chatbot.sqlite3")
        settings = running.settings.with_(staff_users={})
        with serving(server.create_app(settings, running.engine, feedback_log)) as url:
            patient = Client(url + "/", verbose=False, download_files=False)
            assert FACT in patient.predict(QUESTION, api_name="/chat")
            assert len(feedback_log.questions()) == 1
            if tiny is not None:
                filler = fill(tiny)
            else:
                os.chmod(feedback_log.path, 0o444)
                os.chmod(folder, 0o555)
            caplog.set_level(logging.ERROR, logger="chatbot.feedback")
            answers = [patient.predict(QUESTION, api_name="/chat") for _ in range(3)]
            answers.append(asyncio.run(ask_in_page(url, QUESTION)))
            assert all(FACT in a for a in answers), answers
            assert feedback_log.pending == 4
            failures = [r.getMessage() for r in caplog.records if r.name == "chatbot.feedback"]
            assert failures and all("the chat goes on" in m for m in failures), failures
            print("\n" + failures[0])
            if tiny is not None:
                filler.unlink()  # the disk has room again
            else:
                os.chmod(folder, 0o755)
                os.chmod(feedback_log.path, 0o644)
            assert FACT in patient.predict(QUESTION, api_name="/chat")
            patient.close()
        assert feedback_log.pending == 0
        assert len(feedback_log.questions()) == 6  # the first, the four asked while full, the last
        with contextlib.closing(sqlite3.connect(feedback_log.path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class SlowEngine:
    """The real engine, made slow, so that a small queue fills up."""

    def __init__(self, engine, settings, delay_s: float):
        self.engine, self.settings, self.delay_s, self.index = engine, settings, delay_s, engine.index

    def ask(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return self.engine.ask(*args, **kwargs)


@pytest.mark.slow
def test_a_full_queue_answers_with_the_clinic_busy_message(running, tmp_path):
    settings = running.settings.with_(staff_users={}, queue_size=1, concurrency=1)
    busy = ui_words(settings)["busy"]
    assert "very busy" in busy and settings.clinic_name in busy
    app = server.create_app(settings, SlowEngine(running.engine, settings, 1.5), FeedbackLog(tmp_path / "log.sqlite"))
    with serving(app) as url:
        config = httpx.get(url + "/config").json()
        assert "window.fetch" in config["head"] and busy in config["head"]  # the page shows `busy`, not Gradio's
        chat = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")

        async def flood() -> list:
            async with httpx.AsyncClient(base_url=url + "/", timeout=60) as client:
                calls = [run_event(client, chat, [QUESTION], f"flood{i}") for i in range(6)]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(flood())
    answered = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, ChatError)]
    assert len(answered) + len(refused) == 6, results
    assert answered and all(FACT in r[0] for r in answered)
    assert refused, "the queue never filled"
    for error in refused:
        assert error.status == 503 and httpx.Response(503, content=error.body).json()["detail"] == busy
        assert error.headers["retry-after"] == "30" and "Queue is full" not in error.body


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser)")
def test_the_page_shows_the_clinic_busy_message_when_the_queue_is_full(running, tmp_path):
    """A real headless Chromium: with one answer running and one waiting (queue size 1), a patient's question
    is refused by Gradio (503) and the page shows the clinic's words instead of Gradio's own."""
    from playwright.sync_api import sync_playwright

    settings = running.settings.with_(staff_users={}, queue_size=1, concurrency=1)
    busy = ui_words(settings)["busy"]
    app = server.create_app(settings, SlowEngine(running.engine, settings, 3.0), FeedbackLog(tmp_path / "log.sqlite"))
    with serving(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(url + "/")
            question = page.locator("#question textarea")
            question.wait_for()
            dependencies = httpx.get(url + "/config").json()["dependencies"]
            chat = next(d["id"] for d in dependencies if d.get("api_name") == "chat")
            results: list = []

            async def fill_the_queue() -> None:
                async with httpx.AsyncClient(base_url=url + "/", timeout=60) as client:

                    async def one(i: int):
                        await asyncio.sleep(0.5 * i)  # the first runs, the second waits: the queue is full
                        return await run_event(client, chat, [QUESTION], f"filler{i}")

                    results.extend(await asyncio.gather(one(0), one(1), return_exceptions=True))

            filler = threading.Thread(target=lambda: asyncio.run(fill_the_queue()))
            filler.start()
            time.sleep(1.0)
            question.fill("What is SMP?")
            question.press("Enter")
            page.get_by_text(busy).first.wait_for()
            assert page.get_by_text("This application is currently busy").count() == 0
            assert question.input_value() == "What is SMP?"  # the question is kept, to send again
            page.screenshot(path=tmp_path / "busy.png")
            filler.join(30)
        finally:
            browser.close()
    assert len(results) == 2 and all(isinstance(r, list) and FACT in r[0] for r in results), results
