"""python app.py: the clinic chatbot web app on CHATBOT_HOST:CHATBOT_PORT (default 127.0.0.1:7860).

    /         the patient chat (public); also `gradio_client` api_name="/chat" and "/feedback"
    /staff    the staff console (login: CHATBOT_STAFF_USERS); off when that is unset
    /editor   the editor console (same logins); off when CHATBOT_STAFF_USERS is unset
    /healthz  200 {"status": "ok"} or 503 {"status": "index unavailable"}, for a supervisor or monitor

The embedding model is loaded once and the index is built first if there is none (a fresh install). A store
that exists but is damaged or half-written is never rebuilt behind the clinic's back: the app starts anyway,
patients get the "temporarily unavailable, please contact the clinic" message, and the log says what is
wrong and how to repair it (`python ingest.py --rebuild`); the repaired index is picked up without a restart.

In front of Gradio, `WebGuard` (plain ASGI) refuses what the public chat never needs: file and proxy routes
(nothing is served from disk or fetched from a URL), uploads, recording and streaming-input routes; it refuses
every console route except the login page to anyone not signed in; and it turns Gradio's "queue is full"
reply into the clinic's own "busy" message.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, ever

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse  # noqa: E402
from starlette.requests import cookie_parser  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from chatbot.feedback import FeedbackLog  # noqa: E402
from chatbot.settings import Settings, SettingsError  # noqa: E402
from chatbot.ui import RateLimiter, ui_text  # noqa: E402
from chatbot.ui_consoles import CSS as CONSOLE_CSS  # noqa: E402
from chatbot.ui_consoles import build_editor_app, build_staff_app  # noqa: E402
from chatbot.ui_patient import CSS as PATIENT_CSS  # noqa: E402
from chatbot.ui_patient import build_patient_app, busy_head  # noqa: E402

log = logging.getLogger("chatbot.app")
CONSOLES = ("staff", "editor")
CONSOLES_OFF = "The {name} console is off. Set CHATBOT_STAFF_USERS='user:password[:role]' to turn it on.\n"
WARM_UP = "What is scalp micropigmentation?"
REPAIR = (
    "Patients are told the chat is temporarily unavailable; nothing was rebuilt or deleted. To repair, run "
    "'python ingest.py --rebuild --publish' (or restore the store from a backup); the app picks up the repaired "
    "index without a restart. With a Chroma server (CHROMA_HOST), first check that the server is running."
)

# Routes of the public app that it never needs. Gradio's own checks refuse traversal and foreign files on
# these, but the patient chat serves no files, fetches no URLs and takes no uploads, so they are closed.
PUBLIC_CLOSED = (
    "/gradio_api/file=",  # files from disk, or a URL fetched by the server
    "/gradio_api/file/",
    "/file=",
    "/file/",
    "/gradio_api/proxy=",
    "/proxy=",
    "/gradio_api/upload",  # also /gradio_api/upload_progress
    "/gradio_api/process_recording",
    "/gradio_api/stream/",  # streaming inputs (webcam, microphone) and media playlists
    "/gradio_api/vibe",
    "/gradio_api/undo-vibe",
    "/gradio_api/dev/",
    "/gradio_api/run-history",
    "/gradio_api/runs",
    "/gradio_api/mcp",
    "/gradio_api/custom_component/",
    "/gradio_api/deep_link",
    "/monitoring",
)
# Console routes that answer anyone: the login page and what it loads. Everything else needs a signed-in user.
CONSOLE_OPEN_EXACT = frozenset(
    {"", "/", "/login", "/login/", "/logout", "/config", "/config/", "/theme.css", "/favicon.ico", "/manifest.json"}
)
CONSOLE_OPEN_PREFIX = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
URL_FETCH = re.compile(r"/(?:gradio_api/)?(?:file=|file/|proxy=)\s*[a-z][a-z0-9+.-]*:", re.I)
QUEUE_ROUTES = ("/gradio_api/queue/join", "/gradio_api/call/", "/gradio_api/run/", "/gradio_api/api/")
EXTRA_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


class LoginGuard(RateLimiter):
    """After `attempts` wrong passwords for one user name within `window_s`, that name is refused, right
    password or not, until its oldest counted failure is `window_s` old: password guessing on the consoles gets
    5 tries per 15 minutes. The rate limiter's sliding window, keyed by user name; the most recent
    `max_names` names only."""

    def __init__(self, attempts: int = 5, window_s: float = 900.0, max_names: int = 1000):
        super().__init__(attempts, window_s, max_names)

    def locked(self, name: str, now: float | None = None) -> bool:
        return self.used(name, now) >= self.per_minute

    def failed(self, name: str, now: float | None = None) -> None:
        self.allow(name, now)


def staff_login(settings: Settings, guard: LoginGuard | None = None) -> Callable[[str, str], bool]:
    """Gradio auth: a user from CHATBOT_STAFF_USERS with the right password (constant-time compare), and
    not locked out by too many wrong passwords."""
    guard = guard if guard is not None else LoginGuard()  # not `or`: an empty guard is falsy

    def check(username: str, password: str) -> bool:
        entry = settings.staff_users.get(username)
        right = entry is not None and hmac.compare_digest(entry[0].encode(), (password or "").encode())
        if guard.locked(username):
            log.warning("console login refused: too many wrong passwords for this user name; wait 15 minutes")
            return False
        if not right:
            guard.failed(username)
        return right

    return check


def feedback_log_for(settings: Settings) -> FeedbackLog:
    return FeedbackLog(settings.data_dir / "chatbot.sqlite3", settings.retention_days)


class WebGuard:
    """Plain ASGI middleware (streams pass straight through) in front of the mounted Gradio apps.

    - public app: PUBLIC_CLOSED routes answer 413 (uploads, recordings) or 404 (files, URLs and the rest);
    - consoles: anything but the login page needs the console's Gradio session cookie (401 otherwise), and
      never fetches a URL for anyone (403);
    - a full queue (Gradio's 503 on queue/join) answers 503 with the clinic's busy message and Retry-After;
    - every response gets `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`.
    `consoles` maps a mount path ("/staff") to its Gradio app; it is filled in after the apps are mounted.
    """

    def __init__(self, app, consoles: dict[str, object], busy: str):
        self.app = app
        self.consoles = consoles
        self.busy = busy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = re.sub(r"/{2,}", "/", scope.get("path") or "/")
        refusal = self.refusal(path, scope)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await refusal(scope, receive, send)
            return
        busy = scope["type"] == "http" and scope["method"] == "POST" and path.startswith(QUEUE_ROUTES)
        await self.app(scope, receive, self._send(send, busy))

    def refusal(self, path: str, scope) -> JSONResponse | None:
        for mount, gradio_app in self.consoles.items():
            if path == mount or path.startswith(mount + "/"):
                rest = path[len(mount) :]
                if URL_FETCH.match(rest):
                    return JSONResponse({"detail": "Not allowed."}, status_code=403)
                if rest in CONSOLE_OPEN_EXACT or rest.startswith(CONSOLE_OPEN_PREFIX) or _signed_in(gradio_app, scope):
                    return None
                return JSONResponse({"error": "Not authenticated", "detail": "Staff login required."}, 401)
        if path.startswith(PUBLIC_CLOSED):
            if path.startswith(("/gradio_api/upload", "/gradio_api/process_recording")):
                # 413, as Gradio answers a file over the limit: the public app's upload limit is zero bytes.
                return JSONResponse({"detail": "This app takes no uploads."}, status_code=413)
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return None

    def _send(self, send, busy: bool):
        held: dict = {}

        async def wrapped(message) -> None:
            if message["type"] == "http.response.start":
                if busy and message["status"] == 503:
                    held["start"] = message  # Gradio's "Queue is full" body is replaced below
                    return
                message = {**message, "headers": list(message.get("headers", [])) + EXTRA_HEADERS}
            elif message["type"] == "http.response.body" and "start" in held:
                if message.get("more_body"):
                    return
                body = json.dumps({"detail": self.busy, "error": "busy"}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"30"),
                    *EXTRA_HEADERS,
                ]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        return wrapped


def _signed_in(gradio_app, scope) -> bool:
    """Whether the request carries a session cookie this Gradio app issued at its /login."""
    tokens = getattr(gradio_app, "tokens", None)
    cookie_id = getattr(gradio_app, "cookie_id", None)
    if not tokens or not cookie_id:
        return False
    raw = b"; ".join(value for key, value in scope.get("headers", []) if key == b"cookie").decode("latin-1")
    cookies = cookie_parser(raw) if raw else {}
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return bool(token) and token in tokens


def forget_idle_sessions(blocks) -> int:
    """Gradio 6 keeps a set of pending event ids per session it has ever seen, and empties it but never drops
    it (`Queue.pending_event_ids_session`, ~0.3 KB a session: the soak's slow memory growth). Drop the empty
    ones; Gradio makes a new set when that session asks again. Must run on the server's event loop, where
    Gradio reads and writes them, so it never interleaves with Gradio's own use."""
    pending = getattr(getattr(blocks, "_queue", None), "pending_event_ids_session", None)
    if not isinstance(pending, dict):
        return 0
    idle = [session for session, ids in pending.items() if not ids]
    for session in idle:
        pending.pop(session, None)
    return len(idle)


def _glibc(function: str, *args: int) -> None:
    """Call a glibc memory function; a no-op where the C library is not glibc."""
    with contextlib.suppress(OSError, AttributeError):
        getattr(ctypes.CDLL("libc.so.6"), function)(*args)


def release_free_memory() -> None:
    """Give memory that glibc keeps after a burst of traffic back to the system."""
    _glibc("malloc_trim", 0)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate at once their own malloc arenas (up to 8 per core); with the server's
    worker threads, free memory then fragments across them and RSS creeps up. Two arenas keep it compact."""
    _glibc("mallopt", -8, arenas)  # M_ARENA_MAX; before the worker threads start


def housekeeping(blocks: list, every_s: float):
    """The app's lifespan: every `every_s` seconds, forget idle Gradio sessions and release free memory."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every_s)
            forgotten = sum(forget_idle_sessions(b) for b in blocks)
            await asyncio.to_thread(release_free_memory)
            log.debug("housekeeping: %d idle sessions forgotten", forgotten)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def create_app(settings: Settings, engine, feedback_log: FeedbackLog) -> FastAPI:
    """The whole web app: consoles (only with staff users) mounted before the patient chat at '/'."""
    mounted: list = []  # the Gradio apps, for housekeeping
    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, lifespan=housekeeping(mounted, settings.housekeeping_s)
    )
    words = ui_text(settings)
    consoles: dict[str, object] = {}
    app.add_middleware(WebGuard, consoles=consoles, busy=words["busy"])
    common = {
        "footer_links": [],
        "run_history": False,  # nothing a patient typed is kept in the browser
        "enable_monitoring": False,
        "mcp_server": False,
        "ssr_mode": False,
        "show_error": False,
    }
    app.add_api_route("/healthz", _health(engine), include_in_schema=False)
    for name in CONSOLES:
        if settings.staff_users:
            app.add_api_route(f"/{name}", _redirect(f"/{name}/"), include_in_schema=False)
        else:
            refusal = _refuse(CONSOLES_OFF.format(name=name))
            app.add_api_route(f"/{name}", refusal, include_in_schema=False)
            app.add_api_route(f"/{name}/{{rest:path}}", refusal, include_in_schema=False, methods=["GET", "POST"])
    if settings.staff_users:
        auth = staff_login(settings)
        message = f"{settings.clinic_name} staff only."
        staff = build_staff_app(engine, feedback_log, settings).queue(default_concurrency_limit=2, max_size=16)
        editor = build_editor_app(engine, settings).queue(default_concurrency_limit=2, max_size=16)
        gr.mount_gradio_app(
            app, staff, "/staff", auth=auth, auth_message=message, max_file_size=1, css=CONSOLE_CSS, **common
        )
        gr.mount_gradio_app(
            app,
            editor,
            "/editor",
            auth=auth,
            auth_message=message,
            max_file_size=settings.max_upload_bytes,
            css=CONSOLE_CSS,
            **common,
        )
        mounted += [staff, editor]
        consoles.update(
            (route.path, route.app)
            for route in app.routes
            if isinstance(route, Mount) and route.path in ("/staff", "/editor")
        )
    patient = build_patient_app(engine, feedback_log, settings).queue(
        default_concurrency_limit=settings.concurrency, max_size=settings.queue_size
    )
    mounted.append(patient)
    # The patient app uploads nothing and serves no files (WebGuard closes those routes); as a second line,
    # Gradio's upload folder and cache (where console exports live) are blocked for it too.
    blocked = [str(Path(gr.utils.get_upload_folder()).resolve()), str(Path(gr.utils.get_cache_folder()).resolve())]
    gr.mount_gradio_app(
        app,
        patient,
        "/",
        max_file_size=1,
        blocked_paths=blocked,
        css=PATIENT_CSS,
        head=busy_head(words["busy"]),
        **common,
    )
    return app


def _health(engine):
    def health() -> JSONResponse:
        """Whether the live index opens (no question is asked, nothing about the store is shown)."""
        try:
            engine.index.get()
        except Exception:  # noqa: BLE001 - any failure means "unavailable"; the details are in the log
            return JSONResponse({"status": "index unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return health


def _redirect(target: str):
    def redirect() -> RedirectResponse:
        return RedirectResponse(target, status_code=307)

    return redirect


def _refuse(text: str):
    def refuse() -> PlainTextResponse:
        return PlainTextResponse(text, status_code=403)

    return refuse


# ------------------------------------------------------------------ start-up


def open_engine(settings: Settings, embedder=None):
    """Load the model once; on a fresh install, build the index through the safety gate (lifecycle).
    Returns (engine, problem or None)."""
    from chatbot.answer import Engine
    from chatbot.embedding import Embedder
    from chatbot.lifecycle import first_build
    from chatbot.llm import build_chat_model

    embedder = embedder or Embedder.from_settings(settings)
    problem = first_build(settings, embedder, actor="app start-up")
    return Engine(settings, embedder, build_chat_model(settings)), problem


def check_index(engine) -> str | None:
    """Ask one question (this also warms up the model): None if answered, else why not."""
    try:
        answer = engine.ask(WARM_UP)
    except Exception as exc:  # noqa: BLE001 - the app must come up and say what is wrong
        return f"the start-up question failed: {exc.__class__.__name__}"
    return answer.why if answer.mode == "unavailable" else None


def main() -> int:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limit_malloc_arenas()
    engine, problem = open_engine(settings)
    problem = problem or check_index(engine)
    if problem:
        log.error("INDEX DAMAGED OR UNAVAILABLE in %s: %s. %s", settings.store_dir, problem, REPAIR)
    app = create_app(settings, engine, feedback_log_for(settings))
    consoles = "on (/staff, /editor)" if settings.staff_users else "off (set CHATBOT_STAFF_USERS)"
    log.info(
        "ready in %.1f s: http://%s:%d/  consoles %s  index %s",
        time.perf_counter() - started,
        settings.host,
        settings.port,
        consoles,
        "UNAVAILABLE (see above)" if problem else "ok",
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
