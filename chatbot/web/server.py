"""The whole web app: the consoles (only with staff users) mounted before the patient chat at '/', behind
`WebGuard`, plus /healthz."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount

from chatbot.feedback import FeedbackLog
from chatbot.settings import Settings
from chatbot.web.auth import staff_login
from chatbot.web.consoles import CSS as CONSOLE_CSS
from chatbot.web.editor import build_editor_app
from chatbot.web.guard import WebGuard
from chatbot.web.housekeeping import housekeeping
from chatbot.web.patient import CSS as PATIENT_CSS
from chatbot.web.patient import build_patient_app, busy_head
from chatbot.web.staff import build_staff_app
from chatbot.wording import ui_words

CONSOLES = ("staff", "editor")
CONSOLES_OFF = "The {name} console is off. Set CHATBOT_STAFF_USERS='user:password[:role]' to turn it on.\n"


def create_app(settings: Settings, engine, feedback_log: FeedbackLog) -> FastAPI:
    """The whole web app: consoles (only with staff users) mounted before the patient chat at '/'."""
    mounted: list = []  # the Gradio apps, for housekeeping
    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, lifespan=housekeeping(mounted, settings.housekeeping_s)
    )
    words = ui_words(settings)
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
