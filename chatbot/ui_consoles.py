"""The staff console and the editor console (login required).

The code lives in `chatbot.ui_staff` (questions, evaluation, feedback, publishing, rollback, audit log) and
`chatbot.ui_editor` (pages, staging, and the lifecycle views both consoles share); this module keeps the names
app.py and older code import from here.
"""

from __future__ import annotations

from chatbot.ui_editor import (
    CSS,
    SAFE_SEGMENT,
    UPLOAD_TYPES,
    build_editor_app,
    delete_page,
    dry_run,
    overdue_view,
    page_choices,
    page_path,
    page_statuses,
    preview_chunks,
    read_page,
    reindex,
    role_of,
    save_page,
    stage_report,
    status_line,
    upload_page,
    when,
)
from chatbot.ui_staff import (
    CHUNK_HEADERS,
    audit_rows,
    build_staff_app,
    callback_rows,
    compare_view,
    diff_html,
    export_csv,
    feedback_rows,
    inspect_question,
    publish_action,
    rollback_action,
    run_evaluation,
    staging_chat,
    unanswered_rows,
    versions_view,
)

__all__ = [
    "CHUNK_HEADERS",
    "CSS",
    "SAFE_SEGMENT",
    "UPLOAD_TYPES",
    "audit_rows",
    "build_editor_app",
    "build_staff_app",
    "callback_rows",
    "compare_view",
    "delete_page",
    "diff_html",
    "dry_run",
    "export_csv",
    "feedback_rows",
    "inspect_question",
    "overdue_view",
    "page_choices",
    "page_path",
    "page_statuses",
    "preview_chunks",
    "publish_action",
    "read_page",
    "reindex",
    "role_of",
    "rollback_action",
    "run_evaluation",
    "save_page",
    "stage_report",
    "staging_chat",
    "status_line",
    "unanswered_rows",
    "upload_page",
    "versions_view",
    "when",
]
