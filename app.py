"""python app.py: the clinic chatbot web app on CHATBOT_HOST:CHATBOT_PORT (default 127.0.0.1:7860).

    /         the patient chat (public); also `gradio_client` api_name="/chat" and "/feedback"
    /staff    the staff console (login: CHATBOT_STAFF_USERS); off when that is unset
    /editor   the editor console (same logins); off when CHATBOT_STAFF_USERS is unset

The embedding model is loaded once and the index is built first if there is none.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, ever

import hmac  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import PlainTextResponse, RedirectResponse  # noqa: E402

from chatbot.feedback import FeedbackLog  # noqa: E402
from chatbot.settings import Settings, SettingsError  # noqa: E402
from chatbot.ui_consoles import CSS as CONSOLE_CSS  # noqa: E402
from chatbot.ui_consoles import build_editor_app, build_staff_app  # noqa: E402
from chatbot.ui_patient import CSS as PATIENT_CSS  # noqa: E402
from chatbot.ui_patient import build_patient_app  # noqa: E402

log = logging.getLogger("chatbot.app")
CONSOLES = ("staff", "editor")
CONSOLES_OFF = "The {name} console is off. Set CHATBOT_STAFF_USERS='user:password[:role]' to turn it on.\n"


def staff_login(settings: Settings) -> Callable[[str, str], bool]:
    """Gradio auth: a user from CHATBOT_STAFF_USERS with the right password (constant-time compare)."""

    def check(username: str, password: str) -> bool:
        entry = settings.staff_users.get(username)
        return entry is not None and hmac.compare_digest(entry[0].encode(), (password or "").encode())

    return check


def feedback_log_for(settings: Settings) -> FeedbackLog:
    return FeedbackLog(settings.data_dir / "chatbot.sqlite3", settings.retention_days)


def create_app(settings: Settings, engine, feedback_log: FeedbackLog) -> FastAPI:
    """The whole web app: consoles (only with staff users) mounted before the patient chat at '/'."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    common = {
        "footer_links": [],
        "run_history": False,  # nothing a patient typed is kept in the browser
        "enable_monitoring": False,
        "mcp_server": False,
        "ssr_mode": False,
        "show_error": False,
    }
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
    patient = build_patient_app(engine, feedback_log, settings).queue(
        default_concurrency_limit=settings.concurrency, max_size=settings.queue_size
    )
    # The patient app uploads nothing and serves no files: block Gradio's cache (console exports live there).
    blocked = [str(Path(gr.utils.get_upload_folder()).resolve()), str(Path(gr.utils.get_cache_folder()).resolve())]
    gr.mount_gradio_app(app, patient, "/", max_file_size=1, blocked_paths=blocked, css=PATIENT_CSS, **common)
    return app


def _redirect(target: str):
    def redirect() -> RedirectResponse:
        return RedirectResponse(target, status_code=307)

    return redirect


def _refuse(text: str):
    def refuse() -> PlainTextResponse:
        return PlainTextResponse(text, status_code=403)

    return refuse


def main() -> int:
    import uvicorn

    from chatbot.__main__ import build_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = build_engine(settings)
    engine.ask("What is scalp micropigmentation?")  # warm-up: the first patient does not pay one-off costs
    app = create_app(settings, engine, feedback_log_for(settings))
    consoles = "on (/staff, /editor)" if settings.staff_users else "off (set CHATBOT_STAFF_USERS)"
    log.info(
        "ready in %.1f s: http://%s:%d/  consoles %s",
        time.perf_counter() - started,
        settings.host,
        settings.port,
        consoles,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
