"""python app.py: the clinic chatbot web app on CHATBOT_HOST:CHATBOT_PORT (default 127.0.0.1:7860).

    /         the patient chat (public); also `gradio_client` api_name="/chat" and "/feedback"
    /staff    the staff console (login: CHATBOT_STAFF_USERS); off when that is unset
    /editor   the editor console (same logins); off when CHATBOT_STAFF_USERS is unset
    /healthz  200 {"status": "ok"} or 503 {"status": "index unavailable"}, for a supervisor or monitor

All settings come from environment variables (chatbot/settings.py); the web layer is chatbot/web/.
"""

from __future__ import annotations

import logging
import sys

from chatbot.settings import Settings, SettingsError


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from chatbot.database import DatabaseError
    from chatbot.web.startup import serve

    try:
        return serve(settings)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
