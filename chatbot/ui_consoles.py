"""The staff console and the editor console (login required): plain functions, then thin Gradio Blocks.

Everything patient- or content-derived that is shown goes through `safe_markdown`/`html.escape` or into
plain-text table cells.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from chatbot.chunking import chunk_page
from chatbot.evaluation import evaluate
from chatbot.feedback import FeedbackLog, group_unanswered, reason, write_csv
from chatbot.indexing import IngestRefused, ingest
from chatbot.loading import InvalidContent, content_files, load_page
from chatbot.settings import Settings
from chatbot.store import StoreError, VersionStore
from chatbot.ui import safe_markdown

CSS = ".gradio-container { max-width: 1200px !important; }"
UPLOAD_TYPES = (".md", ".html", ".txt")
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CHUNK_HEADERS = ["rank", "page", "section", "dense", "lexical", "fused", "text"]


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


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
    shown = safe_markdown(answer.text)
    if answer.sources:
        shown += "\n\n" + "\n".join(f"- {safe_markdown(s.label())} `{s.path}`" for s in answer.sources)
    rows = [
        [i, h.metadata.get("source", ""), h.section, h.dense, h.lexical, h.fused, h.text[:300]]
        for i, h in enumerate(answer.hits, start=1)
    ]
    return decision, shown, rows


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


# ------------------------------------------------------------------ editor console: plain functions


def page_path(settings: Settings, rel: str) -> Path:
    """A page's path inside the content folder; refuses anything that could point elsewhere."""
    rel = (rel or "").strip().replace("\\", "/")
    parts = [p for p in rel.split("/") if p]
    if not parts or not all(SAFE_SEGMENT.match(p) for p in parts):
        raise ValueError(f"'{rel}' is not a usable page name; use letters, digits, '-', '_' and '.', e.g. aftercare.md")
    if Path(parts[-1]).suffix.lower() not in UPLOAD_TYPES:
        raise ValueError(f"'{rel}' has an unsupported type; save the page as .md, .html or .txt")
    root = settings.content_dir.resolve()
    path = (root / "/".join(parts)).resolve()
    if root not in path.parents:
        raise ValueError(f"'{rel}' is outside the content folder; give a plain file name")
    return path


def page_statuses(settings: Settings) -> list[list]:
    """[path, title, status, note] for every page on disk and every published page that is gone."""
    store = VersionStore(settings)
    try:
        published = store.read_manifest(store.pointer("live"))["pages"]
    except StoreError as exc:
        published = {}
        note = str(exc)
    else:
        note = ""
    rows = []
    on_disk = set()
    for path in content_files(settings.content_dir):
        rel = path.relative_to(settings.content_dir).as_posix()
        on_disk.add(rel)
        before = published.get(rel)
        try:
            page = load_page(rel, path.read_bytes(), settings.max_file_bytes)
        except InvalidContent as exc:
            kept = " (the published version is still served)" if before else ""
            rows.append([rel, before["title"] if before else "", "invalid", str(exc.error) + kept])
            continue
        status = "new" if before is None else "indexed" if before["sha256"] == page.sha256 else "changed"
        rows.append([rel, page.title, status, note])
    for rel, before in sorted(published.items()):
        if rel not in on_disk:
            rows.append([rel, before.get("title", ""), "removed", "deleted from the folder; re-index to unpublish"])
    return rows


def page_choices(settings: Settings) -> list[str]:
    return [p.relative_to(settings.content_dir).as_posix() for p in content_files(settings.content_dir)]


def read_page(settings: Settings, rel: str) -> str:
    if not rel:
        return ""
    return page_path(settings, rel).read_bytes().decode("utf-8", errors="replace")


def save_page(settings: Settings, rel: str, raw: bytes) -> str:
    """Validate a page (type, size, text, title) and write it atomically; returns a plain-words result."""
    try:
        path = page_path(settings, rel)
        rel = path.relative_to(settings.content_dir.resolve()).as_posix()
        if len(raw) > settings.max_upload_bytes:
            return f"{rel}: file is {len(raw):,} bytes, over the {settings.max_upload_bytes:,}-byte limit; split it"
        page = load_page(rel, raw, min(settings.max_file_bytes, settings.max_upload_bytes))
    except ValueError as exc:
        return str(exc)
    except InvalidContent as exc:
        return f"Not saved. {exc.error}"
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.replace(tmp, path)
    verb = "replaced" if existed else "added"
    return f"Saved: {rel} ({verb}, title '{page.title}'). Run a dry run, then re-index to publish it."


def upload_page(settings: Settings, file_path: str | None) -> str:
    if not file_path:
        return "Choose a .md, .html or .txt file first."
    source = Path(file_path)
    if source.suffix.lower() not in UPLOAD_TYPES:
        return f"{source.name}: unsupported file type; upload a .md, .html or .txt page"
    if source.stat().st_size > settings.max_upload_bytes:
        return f"{source.name}: over the {settings.max_upload_bytes:,}-byte upload limit; split it into smaller pages"
    return save_page(settings, source.name, source.read_bytes())


def delete_page(settings: Settings, rel: str, confirmed: bool) -> str:
    if not confirmed:
        return "Tick 'yes, delete' first."
    try:
        path = page_path(settings, rel)
    except ValueError as exc:
        return str(exc)
    if not path.exists():
        return f"{rel}: no such page"
    path.unlink()
    return f"Deleted {rel}. It stays published until you re-index."


def preview_chunks(settings: Settings, rel: str, text: str) -> tuple[str, list[list]]:
    try:
        page = load_page(rel or "preview.md", (text or "").encode("utf-8"), settings.max_file_bytes)
    except InvalidContent as exc:
        return f"Cannot preview. {exc.error}", []
    docs = chunk_page(page, settings.chunk_chars)
    rows = [
        [i, " > ".join([d.metadata["title"], d.metadata["section"]]), len(d.page_content), d.page_content]
        for i, d in enumerate(docs, start=1)
    ]
    return f"{len(docs)} chunk(s) from '{page.title}'", rows


def dry_run(settings: Settings, engine) -> str:
    try:
        return ingest(settings, lambda: engine.embedder, dry_run=True, skip_invalid=True).summary()
    except (StoreError, FileNotFoundError) as exc:
        return f"Dry run failed: {exc}"


class _CountingEmbedder:
    """The engine's embedder, counting what the ingest has embedded so far (for the progress bar)."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.done = 0

    def encode(self, texts, progress: bool = False):
        vectors = self.embedder.encode(texts)
        self.done += len(texts)
        return vectors


def reindex(settings: Settings, engine, on_progress: Callable[[float, str], None]) -> str:
    """Re-ingest in a worker thread with the engine's embedder; patients keep being answered meanwhile."""
    on_progress(0.02, "checking pages")
    try:
        todo = ingest(settings, lambda: engine.embedder, dry_run=True, skip_invalid=True).written
    except (StoreError, FileNotFoundError) as exc:
        return f"Re-index failed: {exc}"
    counter = _CountingEmbedder(engine.embedder)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["report"] = ingest(settings, lambda: counter, skip_invalid=True)
        except (IngestRefused, StoreError, FileNotFoundError, RuntimeError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="reindex", daemon=True)
    worker.start()
    while worker.is_alive():
        on_progress(0.05 + 0.9 * min(1.0, counter.done / max(todo, 1)), f"embedding {counter.done}/{todo} chunks")
        worker.join(0.2)
    on_progress(1.0, "done")
    if "error" in outcome:
        return f"Re-index failed, the live index is unchanged: {outcome['error']}"
    return "Re-indexed; patients now get answers from the new version.\n" + outcome["report"].summary()


# ------------------------------------------------------------------ Blocks


def _signed_in(settings: Settings) -> Callable[[gr.Request], str]:
    def who(request: gr.Request) -> str:
        user = getattr(request, "username", None) or "?"
        role = settings.staff_users.get(user, ("", "?"))[1]
        return f"Signed in as **{safe_markdown(user)}** ({role}). [Log out](logout)"

    return who


def build_staff_app(engine, log: FeedbackLog, settings: Settings) -> gr.Blocks:
    exports = settings.data_dir / "exports"
    table = {"wrap": True, "interactive": False, "max_height": 420}
    with gr.Blocks(title="Staff console", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {safe_markdown(settings.clinic_name)}: staff console")
        who = gr.Markdown()
        demo.load(_signed_in(settings), None, who, api_visibility="private")
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
        with gr.Tab("Unanswered"):
            gr.Markdown("Declined, low-confidence and thumbs-down questions, grouped by their main words.")
            refresh_gaps = gr.Button("Refresh")
            groups = gr.Dataframe(headers=["count", "keywords", "nearest pages", "why", "examples"], **table)
            singles = gr.Dataframe(headers=["when", "why", "question", "nearest page", "best score"], **table)
            refresh_gaps.click(lambda: unanswered_rows(log), None, [groups, singles], api_name="unanswered")
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
            (lambda: unanswered_rows(log), [groups, singles]),
            (lambda: feedback_rows(log), ratings),
            (lambda: callback_rows(log), calls),
        ):
            demo.load(load_fn, None, target, api_visibility="private")
    return demo


def build_editor_app(engine, settings: Settings) -> gr.Blocks:
    table = {"wrap": True, "interactive": False, "max_height": 480}
    with gr.Blocks(title="Editor console", analytics_enabled=False) as demo:
        gr.Markdown(f"# {safe_markdown(settings.clinic_name)}: content editor")
        who = gr.Markdown()
        demo.load(_signed_in(settings), None, who, api_visibility="private")
        with gr.Tab("Pages"):
            refresh = gr.Button("Refresh")
            pages = gr.Dataframe(headers=["page", "title", "status", "note"], **table)
            refresh.click(lambda: page_statuses(settings), None, pages, api_name="pages")
        with gr.Tab("Edit"):
            pick = gr.Dropdown(page_choices(settings), label="Page", allow_custom_value=True)
            text = gr.Code(label="Page text", language="markdown", lines=18, interactive=True)
            with gr.Row():
                save = gr.Button("Save", variant="primary")
                preview = gr.Button("Preview chunks")
                confirm = gr.Checkbox(label="yes, delete", value=False)
                delete = gr.Button("Delete page", variant="stop")
            status = gr.Markdown()
            chunk_count = gr.Markdown()
            chunk_rows = gr.Dataframe(headers=["#", "section", "chars", "text"], **table)
            pick.change(
                lambda rel: read_page(settings, rel) if rel in page_choices(settings) else "",
                pick,
                text,
                api_visibility="private",
            )

            def on_save(rel: str, page_text: str) -> tuple[str, dict]:
                message = save_page(settings, rel, (page_text or "").encode("utf-8"))
                return safe_markdown(message), gr.update(choices=page_choices(settings))

            save.click(on_save, [pick, text], [status, pick], api_name="save_page")
            preview.click(
                lambda rel, t: preview_chunks(settings, rel, t),
                [pick, text],
                [chunk_count, chunk_rows],
                api_name="preview",
            )

            def on_delete(rel: str, confirmed: bool) -> tuple[str, dict, bool]:
                message = delete_page(settings, rel, confirmed)
                return safe_markdown(message), gr.update(choices=page_choices(settings)), False

            delete.click(on_delete, [pick, confirm], [status, pick, confirm], api_name="delete_page")
        with gr.Tab("Upload"):
            gr.Markdown(f"A .md, .html or .txt page, at most {settings.max_upload_bytes:,} bytes.")
            upload = gr.File(label="Page file", file_types=list(UPLOAD_TYPES), type="filepath")
            upload_status = gr.Markdown()
            upload.upload(lambda f: safe_markdown(upload_page(settings, f)), upload, upload_status, api_name="upload")
        with gr.Tab("Re-index"):
            with gr.Row():
                check = gr.Button("Dry run (what would change)")
                go = gr.Button("Re-index and publish", variant="primary")
            result = gr.Textbox(label="Result", lines=12, interactive=False)
            check.click(lambda: dry_run(settings, engine), None, result, api_name="dry_run")

            def run_reindex(progress=gr.Progress()) -> str:
                return reindex(settings, engine, lambda frac, desc: progress(frac, desc=desc))

            go.click(run_reindex, None, result, api_name="reindex", concurrency_limit=1)
        demo.load(lambda: page_statuses(settings), None, pages, api_visibility="private")
    return demo
