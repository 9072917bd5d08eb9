"""The staff console (login required): questions, evaluation, feedback, and the content lifecycle (chat against
staging, compare with live through the safety gate, approve and publish, roll back, audit log, review dates).
Plain functions first, then thin Gradio Blocks.

Only users whose role in CHATBOT_STAFF_USERS is "clinician" may publish or roll back. Everything patient- or
content-derived that is shown goes through `safe_markdown`/`html.escape` or into plain-text table cells; the one
HTML block (the answer differences) is built here from escaped text and the gate's escaped word diff.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from chatbot import teach
from chatbot.answer import Answer, Engine
from chatbot.evaluation import evaluate
from chatbot.feedback import FeedbackLog, group_unanswered, reason, write_csv
from chatbot.gate import GateReport, compare, run_gate
from chatbot.lifecycle import LifecycleError, audit_log, check_and_publish, rollback, status
from chatbot.settings import Settings
from chatbot.store import StoreBusy, StoreError, VersionStore
from chatbot.web.chat import safe_markdown
from chatbot.web.consoles import OVERDUE_HEADERS, overdue_view, role_of, signed_in, status_line, username, when

CHUNK_HEADERS = ["rank", "page", "section", "dense", "lexical", "fused", "text"]
HISTORY_HEADERS = ["when", "who", "action", "live version", "before"]
AUDIT_HEADERS = ["when", "actor", "action", "version", "details (page: first 12 characters of its sha256)"]
GATE_CASES: list[dict] | None = None  # None: the whole golden set; tests set a few cases to keep the gate quick


# ------------------------------------------------------------------ staff console: plain functions


def inspect_question(engine, question: str) -> tuple[str, str, list[list]]:
    """Staff view of one question: (decision Markdown, answer Markdown, retrieved-chunk rows). Not logged."""
    question = (question or "").strip()
    if not question:
        return "Type a question.", "", []
    answer = engine.ask(question, [])
    triage = answer.triage
    flags = ", ".join(k for k, v in vars(answer.flags).items() if v) or "none"
    timings = " · ".join(f"{k} {v:.1f}" for k, v in answer.timings_ms.items())
    decision = "\n".join(
        [
            f"**Triage:** {safe_markdown(triage.category if triage else '-')}"
            f" {safe_markdown(triage.subtype if triage else '')} — {safe_markdown(triage.reason if triage else '')}",
            f"\n**Answer path:** `{answer.mode}` — {safe_markdown(answer.why)}",
            f"\n**Retrieval query:** {safe_markdown(answer.query or '-')} (index {answer.index_version or '-'})",
            f"\n**Flags:** {flags}",
            f"\n**Timings (ms):** {timings} · total {answer.latency_ms:.1f}",
        ]
    )
    rows = [
        [i, h.source, h.section, h.dense, h.lexical, h.fused, h.text[:300]] for i, h in enumerate(answer.hits, start=1)
    ]
    return decision, answer_markdown(answer), rows


def answer_markdown(answer: Answer) -> str:
    shown = safe_markdown(answer.text)
    if answer.sources:
        shown += "\n\n" + "\n".join(f"- {safe_markdown(s.label())} `{s.path}`" for s in answer.sources)
    return shown


def run_evaluation(engine) -> tuple[str, list[list]]:
    report = evaluate(engine, baseline=False)
    rows = [
        [
            r["id"],
            r["category"],
            r["rank"],
            r["mode"],
            ", ".join(k for k, v in r["flags"].items() if v),
            r["latency_ms"],
            r["why"],
        ]
        for r in report.rows
    ]
    retrieval = report.project  # table() lists retrieval only beside a baseline, which is slow to build
    summary = (
        f"Retrieval: hit@1 {retrieval.hit1:.3f} · hit@3 {retrieval.hit3:.3f} · MRR {retrieval.mrr:.3f}\n\n"
        + report.table()
    )
    return summary, rows


def feedback_rows(log: FeedbackLog) -> list[list]:
    return [[when(r["ts"]), r["rating"], r["comment"], r["question"], r["mode"], r["top_page"]] for r in log.feedback()]


def callback_rows(log: FeedbackLog) -> list[list]:
    return [[when(r["ts"]), r["name"], r["contact"], r["summary"]] for r in log.callbacks()]


def unanswered_rows(log: FeedbackLog) -> tuple[list[list], list[list]]:
    """(groups biggest first, the individual questions)."""
    rows = log.unanswered()
    groups = [[g["count"], g["keywords"], g["nearest page"], g["why"], g["examples"]] for g in group_unanswered(rows)]
    singles = [[when(r["ts"]), reason(r), r["question"], r["top_page"], r["best_score"]] for r in rows]
    return groups, singles


def export_csv(log: FeedbackLog, which: str, out_dir: Path) -> Path:
    """One table as CSV in a private folder; files older than an hour there are removed first."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in out_dir.glob("*.csv"):
        if time.time() - old.stat().st_mtime > 3600:
            old.unlink(missing_ok=True)
    tables: dict[str, Callable[[], list[dict]]] = {
        "questions": log.questions,
        "feedback": log.feedback,
        "callbacks": log.callbacks,
        "unanswered": lambda: group_unanswered(log.unanswered()),
    }
    rows = tables[which]()
    for row in rows:
        if "ts" in row:
            row["ts"] = when(row["ts"])
    return write_csv(rows, out_dir / f"{which}-{time.strftime('%Y%m%d-%H%M%S')}.csv")


# ------------------------------------------------------------------ content lifecycle: plain functions


class StagingEngine:
    """The live engine's twin that answers from the staging pointer; built on first use, then reused."""

    def __init__(self, engine):
        self.engine = engine
        self._staging: Engine | None = None
        self._lock = threading.Lock()

    def get(self) -> Engine:
        with self._lock:
            if self._staging is None:
                live = self.engine
                self._staging = Engine(
                    live.settings, live.embedder, live.chat_model, pointer="staging", triager=live.triager
                )
            return self._staging


def versions_view(settings: Settings) -> tuple[str, list[list]]:
    """(status Markdown, publish/rollback history rows newest first)."""
    state = status(settings)
    if "error" in state:
        return safe_markdown(f"The index cannot be read: {state['error']}"), []
    marks = {state["live"]: "live", state["staging"]: "staging"}
    kept = ", ".join(
        v + (f" ({'live and staging' if state['live'] == state['staging'] == v else marks[v]})" if v in marks else "")
        for v in state["versions"]
    )
    rows = [
        [
            e.get("at", ""),
            e.get("by", ""),
            "rollback" if e.get("rolled_back_from") else "publish",
            e.get("version", ""),
            (f"rolled back from {e['rolled_back_from']}" if e.get("rolled_back_from") else e.get("previous")) or "",
        ]
        for e in reversed(state["history"])
    ]
    return f"{status_line(settings)}\n\nVersions kept: {kept or 'none'}", rows


def staging_chat(engine, staging: StagingEngine, question: str) -> tuple[str, str]:
    """The same question against live (what patients get now) and staging (what they would get). Not logged."""
    question = (question or "").strip()
    if not question:
        return "Type a question.", ""
    live = engine.ask(question, [])
    if VersionStore(engine.settings).pointer("staging") is None:
        return _headed("Live", live), "Nothing is staged: re-index in the editor console first."
    return _headed("Live", live), _headed("Staging", staging.get().ask(question, []))


def _headed(name: str, answer: Answer) -> str:
    return f"**{name}** (version {answer.index_version or '-'}, {answer.mode})\n\n{answer_markdown(answer)}"


def diff_html(gate: GateReport) -> str:
    """Safe HTML: for every golden question whose answer changed, live next to staging with the words marked."""
    if gate.staging is None:
        return "<p>Nothing to compare: nothing is staged.</p>"
    if gate.live is None:
        return "<p>Nothing is live yet: every staged answer is new.</p>"
    rows = compare(gate.live, gate.staging)
    changed = [r for r in rows if r["changed"]]
    parts = [f"<p>{len(changed)} of {len(rows)} golden answers change if staging is published.</p>"]
    for r in changed:
        live = html.escape(r["live"]).replace("\n", "<br>")
        parts.append(
            '<div class="gate-diff">'
            f"<h4>{html.escape(r['id'])}: {html.escape(r['question'])}</h4>"
            "<table><tr><th>Live (patients see now)</th><th>Staging (removed struck out, added marked)</th></tr>"
            f"<tr><td>{live}</td><td>{r['diff']}</td></tr></table></div>"
        )
    return "\n".join(parts)


def compare_view(settings: Settings, embedder, cases: list[dict] | None = None) -> tuple[str, str]:
    """Run the safety gate on staging and live: (gate report text, differences HTML)."""
    gate = run_gate(settings, embedder, cases)
    return gate.text(), diff_html(gate)


def refusal(settings: Settings, user: str, what: str) -> str | None:
    role = role_of(settings, user)
    if role == "clinician":
        return None
    return (
        f"Refused: only a clinician can {what}. You are signed in as {user or 'nobody'} ({role or 'no role'}); "
        "ask a clinician to do it."
    )


def publish_action(settings: Settings, embedder, user: str, cases: list[dict] | None = None) -> str:
    """Clinicians only: re-run the gate on staging; publish it if it passes, else refuse with the report."""
    refused = refusal(settings, user, "publish")
    if refused:
        return refused
    state = status(settings)
    staged = state.get("staging")
    if staged is None:
        return "Nothing is staged: an editor re-indexes first."
    if staged == state.get("live"):
        return f"Nothing to publish: staging is the live version ({staged})."
    try:
        gate, version, seconds = check_and_publish(settings, embedder, user, cases)
    except StoreBusy:
        return "Not published: a re-index is running; try again when it has finished."
    except (LifecycleError, StoreError) as exc:
        return f"Not published: {exc}"
    if version is None:
        blocked = f"Not published: the safety gate blocked staging {staged}. Patients keep the live version."
        return f"{blocked}\n{gate.text()}"
    return f"Published {version} in {seconds:.3f} s: patients now get answers from it.\n{gate.text()}"


def attach_action(settings: Settings, engine, user: str, question: str, choice: str) -> str:
    """Attach a question to a section ('page | section') and stage the page; says what happens next."""
    page, _, section = (choice or "").partition(" | ")
    try:
        report = teach.attach_question(settings, lambda: engine.embedder, user, page, section, question)
    except (LifecycleError, StoreError, FileNotFoundError) as exc:
        return f"Not attached: {exc}"
    return (
        f"Attached to {page}, '{section}', and staged as {report.version}. Patients get it once a clinician has "
        "run the safety gate and published staging (Publish tab)."
    )


def rollback_action(settings: Settings, user: str) -> str:
    """Clinicians only: restore the version that was live before."""
    refused = refusal(settings, user, "roll back")
    if refused:
        return refused
    current = status(settings).get("live")
    try:
        version, seconds = rollback(settings, user)
    except StoreBusy:
        return "Not rolled back: a re-index is running; try again when it has finished."
    except (LifecycleError, StoreError) as exc:
        return f"Not rolled back: {exc}"
    return f"Rolled back in {seconds:.3f} s: patients now get answers from {version} again (was {current})."


def audit_details(details: dict) -> str:
    parts = []
    for key, value in sorted(details.items()):
        if isinstance(value, dict):
            value = "; ".join(f"{k}: {(v or '-')[:12]}" for k, v in sorted(value.items())) or "none"
        elif isinstance(value, list):
            value = "; ".join(map(str, value)) or "none"
        parts.append(f"{key}: {value}")
    return " | ".join(parts)


def audit_rows(settings: Settings, limit: int = 200) -> list[list]:
    return [
        [e.at, e.actor, e.action, e.version or "", audit_details(e.details)] for e in audit_log(settings).events(limit)
    ]


# ------------------------------------------------------------------ Blocks


def build_staff_app(engine, log: FeedbackLog, settings: Settings) -> gr.Blocks:
    exports = settings.data_dir / "exports"
    table = {"wrap": True, "interactive": False, "max_height": 420}
    staging = StagingEngine(engine)
    with gr.Blocks(title="Staff console", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {safe_markdown(settings.clinic_name)}: staff console")
        who = gr.Markdown()
        demo.load(signed_in(settings), None, who, api_visibility="private")
        with gr.Tab("Ask"):
            question = gr.Textbox(label="Question (not logged)", elem_id="staff-question")
            ask = gr.Button("Ask", variant="primary")
            decision = gr.Markdown(elem_id="staff-decision")
            answer = gr.Markdown(elem_id="staff-answer")
            chunks = gr.Dataframe(headers=CHUNK_HEADERS, label="Retrieved chunks", **table)
            ask.click(lambda q: inspect_question(engine, q), question, [decision, answer, chunks], api_name="inspect")
            question.submit(
                lambda q: inspect_question(engine, q), question, [decision, answer, chunks], api_visibility="private"
            )
        with gr.Tab("Evaluation"):
            run = gr.Button("Run the golden evaluation")
            report = gr.Markdown()
            cases = gr.Dataframe(headers=["id", "category", "rank", "mode", "flags", "ms", "why"], **table)
            run.click(lambda: run_evaluation(engine), None, [report, cases], api_name="evaluate")
        with gr.Tab("Publish"):
            versions = gr.Markdown(elem_id="staff-versions")
            refresh_versions = gr.Button("Refresh")
            history = gr.Dataframe(headers=HISTORY_HEADERS, label="Publish and rollback history", **table)
            gr.Markdown("### Chat against staging\nThe same question, answered by live and by staging (not logged).")
            staged_question = gr.Textbox(label="Question", elem_id="staging-question")
            ask_staging = gr.Button("Ask live and staging")
            with gr.Row():
                live_answer = gr.Markdown(elem_id="live-answer")
                staging_answer = gr.Markdown(elem_id="staging-answer")
            gr.Markdown("### Compare with live\nRuns the safety gate: every golden question on staging and on live.")
            run_compare = gr.Button("Compare with live")
            gate_report = gr.Textbox(label="Safety gate", lines=6, interactive=False)
            differences = gr.HTML(elem_id="gate-differences", js_on_load=None)
            gr.Markdown("### Approve and publish\nClinicians only. Publishing re-runs the safety gate first.")
            with gr.Row():
                approve = gr.Button("Approve and publish", variant="primary")
                undo = gr.Button("Roll back", variant="stop")
            outcome = gr.Textbox(label="Result", lines=6, interactive=False)

            ask_staging.click(
                lambda q: staging_chat(engine, staging, q),
                staged_question,
                [live_answer, staging_answer],
                api_name="chat_staging",
            )

            def on_compare(progress=gr.Progress()) -> tuple[str, str]:
                progress(0.0, desc="running the golden questions on staging and live")
                return compare_view(settings, engine.embedder, GATE_CASES)

            def on_publish(request: gr.Request, progress=gr.Progress()) -> str:
                user = username(request)
                if role_of(settings, user) == "clinician":
                    progress(0.0, desc="running the safety gate on staging")
                return publish_action(settings, engine.embedder, user, GATE_CASES)

            def on_rollback(request: gr.Request) -> str:
                return rollback_action(settings, username(request))

            lifecycle = {"concurrency_limit": 1, "concurrency_id": "lifecycle"}
            run_compare.click(on_compare, None, [gate_report, differences], api_name="compare", **lifecycle)
            for button, handler, name in ((approve, on_publish, "publish"), (undo, on_rollback, "rollback")):
                button.click(handler, None, outcome, api_name=name, **lifecycle).then(
                    lambda: versions_view(settings), None, [versions, history], api_visibility="private"
                )
            refresh_versions.click(lambda: versions_view(settings), None, [versions, history], api_name="versions")
        with gr.Tab("Audit log"):
            refresh_audit = gr.Button("Refresh")
            audit = gr.Dataframe(headers=AUDIT_HEADERS, **table)
            refresh_audit.click(lambda: audit_rows(settings), None, audit, api_name="audit")
        with gr.Tab("Review dates"):
            refresh_overdue = gr.Button("Refresh")
            overdue_line = gr.Markdown(elem_id="staff-overdue")
            overdue = gr.Dataframe(headers=OVERDUE_HEADERS, **table)
            refresh_overdue.click(lambda: overdue_view(settings), None, [overdue_line, overdue], api_name="overdue")
        with gr.Tab("Unanswered"):
            gr.Markdown("Declined, low-confidence and thumbs-down questions, grouped by their main words.")
            refresh_gaps = gr.Button("Refresh")
            groups = gr.Dataframe(headers=["count", "keywords", "nearest pages", "why", "examples"], **table)
            singles = gr.Dataframe(headers=["when", "why", "question", "nearest page", "best score"], **table)
            refresh_gaps.click(lambda: unanswered_rows(log), None, [groups, singles], api_name="unanswered")
            gr.Markdown(
                "### Teach from a question\nAttach it to the section that answers it (staged like any edit: "
                "the safety gate and a clinician's publish come first), or mark it for the editors."
            )
            taught = gr.Textbox(label="Question", max_length=500, elem_id="teach-question")
            where = gr.Dropdown([f"{page} | {section}" for page, section in teach.sections(settings)], label="Section")
            with gr.Row():
                attach = gr.Button("Attach to this section", variant="primary")
                missing = gr.Button("Needs new content")
            taught_result = gr.Textbox(label="Result", lines=4, interactive=False)

            def on_attach(question: str, choice: str, request: gr.Request) -> str:
                return attach_action(settings, engine, username(request) or "staff", question, choice)

            def on_missing(question: str, request: gr.Request) -> str:
                if not (question or "").strip():
                    return "Type or paste the question first."
                teach.needs_content(settings, username(request) or "staff", question)
                return "Noted for the editors (editor console, Content requests)."

            attach.click(on_attach, [taught, where], taught_result, api_name="attach_question", concurrency_limit=1)
            missing.click(on_missing, taught, taught_result, api_name="needs_content")
        with gr.Tab("Feedback"):
            refresh_feedback = gr.Button("Refresh")
            ratings = gr.Dataframe(headers=["when", "rating", "comment", "question", "mode", "page"], **table)
            refresh_feedback.click(lambda: feedback_rows(log), None, ratings, api_name="feedback")
        with gr.Tab("Callback requests"):
            gr.Markdown("Personal data, kept with the patient's consent: use it only to call back.")
            refresh_calls = gr.Button("Refresh")
            calls = gr.Dataframe(headers=["when", "name", "contact", "summary"], **table)
            refresh_calls.click(lambda: callback_rows(log), None, calls, api_name="callbacks")
        with gr.Tab("Export CSV"):
            which = gr.Radio(["questions", "feedback", "callbacks", "unanswered"], value="questions", label="Table")
            export = gr.Button("Export")
            download = gr.File(label="CSV", interactive=False)
            export.click(lambda w: str(export_csv(log, w, exports)), which, download, api_name="export")
        for load_fn, target in (
            (lambda: versions_view(settings), [versions, history]),
            (lambda: audit_rows(settings), audit),
            (lambda: overdue_view(settings), [overdue_line, overdue]),
            (lambda: unanswered_rows(log), [groups, singles]),
            (lambda: feedback_rows(log), ratings),
            (lambda: callback_rows(log), calls),
        ):
            demo.load(load_fn, None, target, api_visibility="private")
    return demo
