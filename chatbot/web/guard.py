"""`WebGuard`, plain ASGI in front of Gradio: it refuses what the public chat never needs (file and proxy
routes, uploads, recording and streaming-input routes), refuses every console route except the login page to
anyone not signed in, and turns Gradio's "queue is full" reply into the clinic's own "busy" message."""

from __future__ import annotations

import json
import re

from fastapi.responses import JSONResponse
from starlette.requests import cookie_parser

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
