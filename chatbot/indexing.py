"""Indexing: content folder -> a new index version (incremental), then an atomic pointer switch.

Only new or changed pages are embedded; chunks of changed, removed or renamed pages are deleted;
nothing is written before every file has been validated (unless skip_invalid is asked for).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from langchain_core.documents import Document
from tqdm import tqdm

from chatbot.chunking import chunk_page, embedding_text
from chatbot.embedding import Embedder
from chatbot.lexical import LexicalIndex
from chatbot.loading import ContentError, Page, load_folder
from chatbot.settings import Settings
from chatbot.store import VersionStore

PROGRESS_MIN_CHUNKS = 300
EMBED_BATCH = 256


class IngestRefused(Exception):
    """Invalid files were found and nothing was written."""

    def __init__(self, errors: list[ContentError]):
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(
            f"{len(errors)} file(s) cannot be ingested; nothing was changed:\n{lines}\n"
            "Fix them, or run with --skip-invalid to ingest the valid pages only."
        )
        self.errors = errors


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    written: int = 0
    deleted: int = 0
    total: int = 0
    seconds: float = 0.0
    version: str | None = None
    dry_run: bool = False
    invalid: list[ContentError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # "path: what was removed and why"

    def to_json(self) -> dict:
        return {
            "pages": {k: len(getattr(self, k)) for k in ("added", "changed", "removed", "unchanged")},
            "chunks": {"written": self.written, "deleted": self.deleted, "total": self.total},
            "seconds": round(self.seconds, 3),
            "version": self.version,
            "dry_run": self.dry_run,
            "invalid": [asdict(e) for e in self.invalid],
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        lines = [
            f"pages: {len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged",
            f"chunks: {self.written} written, {self.deleted} deleted, {self.total} total ({verb})",
            f"index version: {self.version or 'none'}; {self.seconds:.2f} s",
        ]
        for kind in ("added", "changed", "removed"):
            lines += [f"  {kind}: {p}" for p in getattr(self, kind)]
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s) for the editor:")
            lines += [f"  {w}" for w in self.warnings]
        if self.invalid:
            lines.append(f"skipped {len(self.invalid)} invalid file(s):")
            lines += [f"  {e}" for e in self.invalid]
        return "\n".join(lines)


@dataclass
class Plan:
    """What an ingest would do: per page, and per chunk id."""

    report: IngestReport
    chunks: dict[str, Document]  # every chunk of the new version, by id
    to_embed: list[str]
    to_delete: list[str]
    to_update: list[str]  # kept ids whose metadata (position) changed


def plan(
    pages: list[Page],
    old_manifest: dict,
    old_chunks: dict[str, dict],
    settings: Settings,
    keep_paths: set[str] = frozenset(),
) -> Plan:
    """Compare the pages on disk with the previous version. `keep_paths`: invalid pages whose old chunks stay."""
    old_pages: dict = old_manifest.get("pages", {})
    same_chunking = old_manifest.get("chunk_chars") == settings.chunk_chars
    report = IngestReport()
    chunks: dict[str, Document] = {}
    for page in pages:
        for doc in chunk_page(page, settings.chunk_chars):
            chunks[doc.id] = doc
        before = old_pages.get(page.path)
        if before is None:
            report.added.append(page.path)
        elif before["sha256"] != page.sha256 or not same_chunking:
            report.changed.append(page.path)
        else:
            report.unchanged.append(page.path)
    current = {p.path for p in pages}
    report.removed = sorted(p for p in old_pages if p not in current and p not in keep_paths)
    for path in keep_paths & set(old_pages):  # a broken edit never removes the published page
        for cid in old_pages[path]["chunk_ids"]:
            if cid in old_chunks:
                chunks[cid] = Document(
                    page_content=old_chunks[cid]["text"], id=cid, metadata=old_chunks[cid]["metadata"]
                )
    to_embed = [cid for cid in chunks if cid not in old_chunks]
    to_delete = [cid for cid in old_chunks if cid not in chunks]
    to_update = [cid for cid in chunks if cid in old_chunks and old_chunks[cid]["metadata"] != chunks[cid].metadata]
    report.written, report.deleted, report.total = len(to_embed), len(to_delete), len(chunks)
    return Plan(report, chunks, to_embed, to_delete, to_update)


def read_chunks(store: VersionStore, version: str | None) -> dict[str, dict]:
    if version is None:
        return {}
    with open(store.path(version) / "chunks.jsonl") as fh:
        rows = [json.loads(line) for line in fh]
    return {row["id"]: row for row in rows}


def ingest(
    settings: Settings,
    get_embedder: Callable[[], Embedder],
    *,
    dry_run: bool = False,
    rebuild: bool = False,
    skip_invalid: bool = False,
    target: str = "live",
    progress: bool | None = None,
) -> IngestReport:
    """Run one ingest. `get_embedder` is only called when something must be embedded."""
    started = time.perf_counter()
    pages, errors = load_folder(settings.content_dir, settings.max_file_bytes)
    if errors and not skip_invalid:
        raise IngestRefused(errors)
    store = VersionStore(settings)
    with store.ingest_lock():
        if not dry_run:
            store.clean_incomplete()
        base = None if rebuild else store.pointer(target) or (store.pointer("live") if target != "live" else None)
        old_manifest = store.read_manifest(base)
        old_chunks = read_chunks(store, base)
        result = plan(pages, old_manifest, old_chunks, settings, keep_paths={e.path for e in errors})
        report = result.report
        report.invalid, report.dry_run, report.version = errors, dry_run, base
        report.warnings = [f"{page.path}: {warning}" for page in pages for warning in page.warnings]
        nothing_to_do = not (result.to_embed or result.to_delete or result.to_update or report.removed)
        if dry_run or (nothing_to_do and base and not rebuild):
            if not dry_run and store.pointer(target) != base:
                store.set_pointer(base, target)  # staging starts as the live version: nothing to build
            report.seconds = time.perf_counter() - started
            return report
        version = _build_version(store, settings, base, result, pages, get_embedder, progress)
        store.set_pointer(version, target)
        store.prune(settings.keep_versions)
    report.version = version
    report.seconds = time.perf_counter() - started
    return report


def _build_version(
    store: VersionStore,
    settings: Settings,
    base: str | None,
    result: Plan,
    pages: list[Page],
    get_embedder: Callable[[], Embedder],
    progress: bool | None,
) -> str:
    version, path = store.new_version(base)
    collection = store.collection(version, create=True)
    batch = min(5000, collection._client.get_max_batch_size()) if hasattr(collection, "_client") else 5000
    for i in range(0, len(result.to_delete), batch):
        collection.delete(ids=result.to_delete[i : i + batch])
    if result.to_update:
        for i in range(0, len(result.to_update), batch):
            ids = result.to_update[i : i + batch]
            collection.update(ids=ids, metadatas=[result.chunks[c].metadata for c in ids])
    if result.to_embed:
        embedder = get_embedder()
        show = progress if progress is not None else len(result.to_embed) >= PROGRESS_MIN_CHUNKS
        bar = tqdm(total=len(result.to_embed), unit="chunk", desc="embedding", disable=not show, file=sys.stderr)
        for i in range(0, len(result.to_embed), EMBED_BATCH):
            ids = result.to_embed[i : i + EMBED_BATCH]
            docs = [result.chunks[c] for c in ids]
            vectors = embedder.encode([embedding_text(d) for d in docs])
            collection.upsert(
                ids=ids,
                embeddings=vectors,
                documents=[d.page_content for d in docs],
                metadatas=[d.metadata for d in docs],
            )
            bar.update(len(ids))
        bar.close()
    ordered = sorted(result.chunks.values(), key=lambda d: (d.metadata["source"], d.metadata["position"]))
    with open(path / "chunks.jsonl", "w") as fh:
        for doc in ordered:
            fh.write(
                json.dumps({"id": doc.id, "text": doc.page_content, "metadata": doc.metadata}, ensure_ascii=False)
                + "\n"
            )
    LexicalIndex.build([embedding_text(d) for d in ordered], [d.id for d in ordered]).save(path / "lexical")
    manifest_pages = {}
    old_pages = store.read_manifest(base)["pages"]
    by_page: dict[str, list[str]] = {}
    for doc in ordered:
        by_page.setdefault(doc.metadata["source"], []).append(doc.id)
    current = {p.path: p for p in pages}
    for source, ids in by_page.items():
        page = current.get(source)
        manifest_pages[source] = (
            {"sha256": page.sha256, "title": page.title, "meta": page.meta, "chunk_ids": ids}
            if page
            else {**old_pages[source], "chunk_ids": ids}
        )
    store.write_json(
        version,
        "manifest.json",
        {
            "version": version,
            "base": base,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "chunk_chars": settings.chunk_chars,
            "chunks": len(ordered),
            "pages": manifest_pages,
        },
    )
    if collection.count() != len(ordered):
        raise RuntimeError(
            f"index {version}: {collection.count()} vectors for {len(ordered)} chunks; run with --rebuild"
        )
    store.mark_complete(version)
    return version
