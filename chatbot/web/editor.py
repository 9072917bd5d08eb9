"""The editor console (login required), plus the lifecycle views both consoles share: plain functions, then
thin Gradio Blocks.

Editors change pages and stage them (`lifecycle.stage`); patients keep the live version until a
clinician publishes staging from the staff console. Everything content-derived that is shown goes through
`safe_markdown`/`html.escape` or into plain-text cells.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from chatbot import teach
from chatbot.chunking import chunk_page
from chatbot.indexing import IngestRefused, IngestReport, ingest
from chatbot.lifecycle import stage
from chatbot.loading import InvalidContent, content_files, load_page
from chatbot.settings import Settings
from chatbot.store import StoreError, VersionStore
from chatbot.web.chat import safe_markdown
from chatbot.web.consoles import OVERDUE_HEADERS, overdue_view, signed_in, status_line, username

UPLOAD_TYPES = (".md", ".html", ".txt")
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
    """[path, title, status, note] for every page on disk and every staged or published page that is gone.

    The status compares the folder with staging (what the next publish would make live): new, changed, indexed
    (= staged as it is on disk), invalid or removed; the note says when patients do not see the staged page yet.
    """
    store = VersionStore(settings)
    try:
        live = store.read_manifest(store.pointer("live"))["pages"]
        staged = store.read_manifest(store.pointer("staging") or store.pointer("live"))["pages"]
    except StoreError as exc:
        live, staged, problem = {}, {}, str(exc)
    else:
        problem = ""
    rows = []
    on_disk = set()
    for path in content_files(settings.content_dir):
        rel = path.relative_to(settings.content_dir).as_posix()
        on_disk.add(rel)
        before = staged.get(rel)
        try:
            page = load_page(rel, path.read_bytes(), settings.max_file_bytes)
        except InvalidContent as exc:
            kept = " (the staged version is kept)" if before else ""
            rows.append([rel, before["title"] if before else "", "invalid", str(exc.error) + kept])
            continue
        state = "new" if before is None else "indexed" if before["sha256"] == page.sha256 else "changed"
        note = problem
        if state == "indexed" and live.get(rel, {}).get("sha256") != before["sha256"]:
            note = "staged: patients see it once a clinician publishes staging"
        rows.append([rel, page.title, state, note])
    for rel, before in sorted(staged.items()):
        if rel not in on_disk:
            rows.append([rel, before.get("title", ""), "removed", "deleted from the folder; re-index to stage that"])
    for rel, before in sorted(live.items()):
        if rel not in on_disk and rel not in staged:
            rows.append([rel, before.get("title", ""), "removed", "removal staged; still live until published"])
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
    return f"Saved: {rel} ({verb}, title '{page.title}'). Run a dry run, then re-index to stage it."


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
    return f"Deleted {rel}. It stays live until you re-index and a clinician publishes staging."


def preview_chunks(settings: Settings, rel: str, text: str) -> tuple[str, list[list]]:
    try:
        page = load_page(rel or "preview.md", (text or "").encode("utf-8"), settings.max_file_bytes)
    except InvalidContent as exc:
        return f"Cannot preview. {exc.error}", []
    docs = chunk_page(page, settings.chunk_chars)
    rows = [[i, " > ".join([c.title, c.section]), len(c.text), c.text] for i, c in enumerate(docs, start=1)]
    return f"{len(docs)} chunk(s) from '{page.title}'", rows


def dry_run(settings: Settings, engine) -> str:
    try:
        return ingest(settings, lambda: engine.embedder, dry_run=True, skip_invalid=True).summary()
    except (StoreError, FileNotFoundError) as exc:
        return f"Dry run failed: {exc}"


def stage_report(report: IngestReport) -> str:
    """The staging report in plain words: what changed, what was removed from pages, which files were skipped."""
    lines = [report.summary().split("\n", 1)[0]]
    lines += [f"  {kind}: {p}" for kind in ("added", "changed", "removed") for p in getattr(report, kind)]
    if report.warnings:
        lines.append(
            f"Check these pages: {len(report.warnings)} thing(s) were taken out because the chatbot must not show "
            "markup or follow instructions written in a page (the rest of the page is staged):"
        )
        lines += [f"  - {w}" for w in report.warnings]
    if report.invalid:
        lines.append(
            f"{len(report.invalid)} file(s) could not be read and were NOT staged "
            "(their earlier version, if any, is kept); fix them and re-index:"
        )
        lines += [f"  - {e}" for e in report.invalid]
    return "\n".join(lines)


class _CountingEmbedder:
    """The engine's embedder, counting what the ingest has embedded so far (for the progress bar)."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.done = 0

    def encode(self, texts, progress: bool = False):
        vectors = self.embedder.encode(texts)
        self.done += len(texts)
        return vectors


def reindex(settings: Settings, engine, on_progress: Callable[[float, str], None], actor: str = "editor") -> str:
    """Stage the content folder in a worker thread with the engine's embedder; patients keep the live version."""
    on_progress(0.02, "checking pages")
    try:
        todo = ingest(settings, lambda: engine.embedder, dry_run=True, skip_invalid=True).written
    except (StoreError, FileNotFoundError) as exc:
        return f"Re-index failed: {exc}"
    counter = _CountingEmbedder(engine.embedder)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["report"] = stage(settings, lambda: counter, actor, skip_invalid=True)
        except (IngestRefused, StoreError, FileNotFoundError, RuntimeError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="reindex", daemon=True)
    worker.start()
    while worker.is_alive():
        on_progress(0.05 + 0.9 * min(1.0, counter.done / max(todo, 1)), f"embedding {counter.done}/{todo} chunks")
        worker.join(0.2)
    on_progress(1.0, "done")
    if "error" in outcome:
        return f"Re-index failed; staging and the live version are unchanged: {outcome['error']}"
    report: IngestReport = outcome["report"]
    if report.version and (report.written or report.deleted or report.removed or report.changed):
        head = f"Re-indexed into staging as {report.version}."
    else:
        head = f"Re-indexed: nothing changed, staging is {report.version or 'empty'}."
    return "\n".join([head, status_line(settings), "Only a clinician can publish staging.", stage_report(report)])


# ------------------------------------------------------------------ Blocks


def build_editor_app(engine, settings: Settings) -> gr.Blocks:
    table = {"wrap": True, "interactive": False, "max_height": 480}
    with gr.Blocks(title="Editor console", analytics_enabled=False) as demo:
        gr.Markdown(f"# {safe_markdown(settings.clinic_name)}: content editor")
        who = gr.Markdown()
        demo.load(signed_in(settings), None, who, api_visibility="private")
        with gr.Tab("Pages"):
            refresh = gr.Button("Refresh")
            pages = gr.Dataframe(headers=["page", "title", "status", "note"], **table)
            refresh.click(lambda: page_statuses(settings), None, pages, api_name="pages")
        with gr.Tab("Content requests"):
            gr.Markdown("Questions staff marked 'needs new content': the pages do not answer them yet.")
            refresh_requests = gr.Button("Refresh")
            requests = gr.Dataframe(headers=["when", "by", "question"], **table)
            refresh_requests.click(lambda: teach.content_requests(settings), None, requests, api_name="requests")
        with gr.Tab("Edit"):
            pick = gr.Dropdown(page_choices(settings), label="Page", allow_custom_value=True)
            text = gr.Code(label="Page text", language="markdown", lines=18, interactive=True)
            with gr.Row():
                save = gr.Button("Save", variant="primary")
                preview = gr.Button("Preview chunks")
                confirm = gr.Checkbox(label="yes, delete", value=False)
                delete = gr.Button("Delete page", variant="stop")
            saved = gr.Markdown()
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

            save.click(on_save, [pick, text], [saved, pick], api_name="save_page")
            preview.click(
                lambda rel, t: preview_chunks(settings, rel, t),
                [pick, text],
                [chunk_count, chunk_rows],
                api_name="preview",
            )

            def on_delete(rel: str, confirmed: bool) -> tuple[str, dict, bool]:
                message = delete_page(settings, rel, confirmed)
                return safe_markdown(message), gr.update(choices=page_choices(settings)), False

            delete.click(on_delete, [pick, confirm], [saved, pick, confirm], api_name="delete_page")
        with gr.Tab("Upload"):
            gr.Markdown(f"A .md, .html or .txt page, at most {settings.max_upload_bytes:,} bytes.")
            upload = gr.File(label="Page file", file_types=list(UPLOAD_TYPES), type="filepath")
            upload_status = gr.Markdown()
            upload.upload(lambda f: safe_markdown(upload_page(settings, f)), upload, upload_status, api_name="upload")
        with gr.Tab("Re-index"):
            gr.Markdown(
                "Re-indexing **stages** your changes. Patients keep the live version until a clinician checks "
                "staging in the staff console and publishes it."
            )
            stage_status = gr.Markdown(elem_id="editor-stage-status")
            with gr.Row():
                check = gr.Button("Dry run (what would change)")
                go = gr.Button("Re-index into staging", variant="primary")
            result = gr.Textbox(label="Result", lines=14, interactive=False)
            check.click(lambda: dry_run(settings, engine), None, result, api_name="dry_run")

            def run_reindex(request: gr.Request, progress=gr.Progress()) -> str:
                on_progress = lambda frac, desc: progress(frac, desc=desc)  # noqa: E731
                return reindex(settings, engine, on_progress, actor=username(request) or "editor")

            go.click(run_reindex, None, result, api_name="reindex", concurrency_limit=1).then(
                lambda: status_line(settings), None, stage_status, api_visibility="private"
            )
        with gr.Tab("Review dates"):
            refresh_overdue = gr.Button("Refresh")
            overdue_line = gr.Markdown(elem_id="editor-overdue")
            overdue = gr.Dataframe(headers=OVERDUE_HEADERS, **table)
            refresh_overdue.click(lambda: overdue_view(settings), None, [overdue_line, overdue], api_name="overdue")
        demo.load(lambda: status_line(settings), None, stage_status, api_name="stage_status")
        demo.load(lambda: page_statuses(settings), None, pages, api_visibility="private")
        demo.load(lambda: overdue_view(settings), None, [overdue_line, overdue], api_visibility="private")
    return demo
