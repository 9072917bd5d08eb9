"""The web layer: the patient chat, the staff and editor consoles, sign-in, the ASGI guard and start-up.

chat.py          the patient chat's plain functions: words, replies, sources, rate limits, callbacks
patient.py       the patient page (Gradio Blocks)
consoles.py      what both consoles share: style, roles, lifecycle status, overdue pages
staff.py         the staff console: questions, evaluation, feedback, unanswered, publish, rollback, audit
editor.py        the editor console: pages, preview, staging, content requests
auth.py          console sign-in and lockout
guard.py         WebGuard, the ASGI middleware in front of Gradio
housekeeping.py  idle Gradio sessions and free memory, on a timer
server.py        create_app: everything mounted on one FastAPI app, plus /healthz
startup.py       serve: model, live index (first build through the gate), start-up check, uvicorn
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, ever
