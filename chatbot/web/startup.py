"""Start the app: settings, the model and the live index (a fresh install's first build goes through the
safety gate), one start-up question, then the server.

A store that exists but is damaged or half-written is never rebuilt behind the clinic's back: the app starts
anyway, patients get the "temporarily unavailable, please contact the clinic" message, and the log says what
is wrong and how to repair it; the repaired index is picked up without a restart.
"""

from __future__ import annotations

import logging
import time

from chatbot.feedback import FeedbackLog
from chatbot.lifecycle import open_engine
from chatbot.settings import Settings
from chatbot.web.housekeeping import limit_malloc_arenas
from chatbot.web.server import create_app

log = logging.getLogger("chatbot.app")
WARM_UP = "What is scalp micropigmentation?"
REPAIR = (
    "Patients are told the chat is temporarily unavailable; nothing was rebuilt or deleted. To repair, run "
    "'python ingest.py --rebuild --publish' (or restore the store from a backup); the app picks up the repaired "
    "index without a restart. With a Chroma server (CHROMA_HOST), first check that the server is running."
)


def check_index(engine) -> str | None:
    """Ask one question (this also warms up the model): None if answered, else why not."""
    try:
        answer = engine.ask(WARM_UP)
    except Exception as exc:  # noqa: BLE001 - the app must come up and say what is wrong
        return f"the start-up question failed: {exc.__class__.__name__}"
    return answer.why if answer.mode == "unavailable" else None


def serve(settings: Settings) -> int:
    """Open the engine, say in the log whether patients can be served, and run the server until stopped."""
    import uvicorn

    started = time.perf_counter()
    limit_malloc_arenas()
    engine, problem = open_engine(settings)
    problem = problem or check_index(engine)
    if problem:
        log.error("INDEX DAMAGED OR UNAVAILABLE in %s: %s. %s", settings.store_dir, problem, REPAIR)
    app = create_app(settings, engine, FeedbackLog.open(settings))
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
