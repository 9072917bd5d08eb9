"""Indexing: content folder -> a new index version (incremental), then an atomic pointer switch.

Only new or changed pages are embedded; chunks of changed, removed or renamed pages are deleted (embedded
mode: from the version's copy of the collection; server mode: by the garbage collection of `VersionStore`,
once no kept version lists them); nothing is written before every file has been validated (unless
skip_invalid is asked for).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from chatbot.chunking import Chunk, chunk_page
from chatbot.embedding import Embedder
from chatbot.lexical import LexicalIndex
from chatbot.loading import ContentError, Scan, rules_fingerprint, scan_folder
from chatbot.settings import Settings
from chatbot.store import BATCH, SHARED, VersionStore, copy_vectors

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
    chunks: dict[str, Chunk]  # every chunk of the new version, by id
    pages: dict[str, dict]  # manifest entry of every page of the new version, without its chunk ids
    to_embed: list[str]
    to_delete: list[str]
    to_update: list[str]  # kept ids whose metadata (position, page hash) changed


def plan(
    scan: Scan,
    old_manifest: dict,
    old_chunks: dict[str, Chunk],
    settings: Settings,
    keep_paths: set[str] = frozenset(),
) -> Plan:
    """Compare the scanned folder with the previous version. Pages the scan found unchanged, and invalid pages
    (`keep_paths`, so a broken edit never removes the published page), keep their chunks as they are."""
    old_pages: dict = old_manifest.get("pages", {})
    report = IngestReport(unchanged=list(scan.unchanged))
    chunks: dict[str, Chunk] = {}
    pages: dict[str, dict] = {}
    for path in [*scan.unchanged, *(keep_paths & set(old_pages))]:
        pages[path] = {k: v for k, v in old_pages[path].items() if k != "chunk_ids"}
        for cid in old_pages[path]["chunk_ids"]:
            if cid in old_chunks:
                chunks[cid] = old_chunks[cid]
    parsed: list[str] = []
    for page in scan.pages:
        pages[page.path] = {"sha256": page.sha256, "title": page.title, "meta": page.meta, "warnings": page.warnings}
        for chunk in chunk_page(page, settings.chunk_chars):
            chunks[chunk.id] = chunk
            parsed.append(chunk.id)
        before = old_pages.get(page.path)
        if before is None:
            report.added.append(page.path)
        elif before["sha256"] != page.sha256:
            report.changed.append(page.path)
        else:  # same bytes, read again because the loading or chunking rules changed
            report.unchanged.append(page.path)
    report.removed = sorted(p for p in old_pages if p not in pages)
    report.warnings = [f"{path}: {w}" for path in sorted(pages) for w in pages[path].get("warnings", [])]
    to_embed = [cid for cid in chunks if cid not in old_chunks]
    to_delete = [cid for cid in old_chunks if cid not in chunks]
    to_update = [cid for cid in parsed if cid in old_chunks and old_chunks[cid] != chunks[cid]]
    report.written, report.deleted, report.total = len(to_embed), len(to_delete), len(chunks)
    return Plan(report, chunks, pages, to_embed, to_delete, to_update)


def read_chunks(store: VersionStore, version: str | None) -> dict[str, Chunk]:
    if version is None:
        return {}
    return {chunk.id: chunk for chunk in store.read_chunks(version)}


def ingest(
    settings: Settings,
    get_embedder: Callable[[], Embedder],
    *,
    dry_run: bool = False,
    rebuild: bool = False,
    skip_invalid: bool = False,
    progress: bool | None = None,
) -> IngestReport:
    """Run one ingest into the staging index. `get_embedder` is only called when something must be embedded.
    Only `lifecycle.publish`, after the safety gate, makes a version live."""
    target = "staging"
    started = time.perf_counter()
    store = VersionStore(settings)
    rules = rules_fingerprint(settings.chunk_chars)
    with store.ingest_lock():
        if not dry_run:
            store.clean_incomplete()
        base = None if rebuild else store.pointer(target) or store.pointer("live")
        old_manifest = store.read_manifest(base)
        same_rules = old_manifest.get("rules") == rules
        known = {path: page["sha256"] for path, page in old_manifest["pages"].items()} if same_rules else {}
        scan = scan_folder(settings.content_dir, settings.max_file_bytes, known)
        if scan.errors and not skip_invalid:
            raise IngestRefused(scan.errors)
        old_chunks = read_chunks(store, base)
        result = plan(scan, old_manifest, old_chunks, settings, keep_paths={e.path for e in scan.errors})
        report = result.report
        report.invalid, report.dry_run, report.version = scan.errors, dry_run, base
        nothing_to_do = not (result.to_embed or result.to_delete or result.to_update or report.removed)
        if dry_run or (nothing_to_do and same_rules and base and not rebuild):
            if not dry_run and store.pointer(target) != base:
                store.set_pointer(base, target)  # staging starts as the live version: nothing to build
            report.seconds = time.perf_counter() - started
            return report
        version = _build_version(
            store, settings, base, old_manifest, old_chunks, result, rules, get_embedder, progress, rebuild
        )
        store.set_pointer(version, target)
        store.prune(settings.keep_versions)
    report.version = version
    report.seconds = time.perf_counter() - started
    return report


def _build_version(
    store: VersionStore,
    settings: Settings,
    base: str | None,
    old_manifest: dict,
    old_chunks: dict[str, Chunk],
    result: Plan,
    rules: str,
    get_embedder: Callable[[], Embedder],
    progress: bool | None,
    rebuild: bool,
) -> str:
    version, path = store.new_version(base)
    collection = store.collection(version, create=True)
    if settings.chroma_host:
        _fill_shared(store, collection, version, base, old_manifest, result, get_embedder, progress, rebuild)
    else:
        _change_own_copy(collection, result, get_embedder, progress)
    ordered = sorted(result.chunks.values(), key=lambda c: (c.source, c.position))
    store.write_chunks(version, ordered)
    _lexical(store, base, old_chunks, result, [c.id for c in ordered]).save(path / "lexical")
    manifest_pages: dict[str, dict] = {}
    for chunk in ordered:
        entry = manifest_pages.setdefault(chunk.source, {**result.pages[chunk.source], "chunk_ids": []})
        entry["chunk_ids"].append(chunk.id)
    store.write_json(
        version,
        "manifest.json",
        {
            "version": version,
            "base": base,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "chunk_chars": settings.chunk_chars,
            "rules": rules,
            "chunks": len(ordered),
            "pages": manifest_pages,
            **({"vectors": SHARED} if settings.chroma_host else {}),
        },
    )
    vectors = collection.count()  # server mode: the shared collection also holds other versions' vectors
    if vectors < len(ordered) or (vectors != len(ordered) and not settings.chroma_host):
        raise RuntimeError(f"index {version}: {vectors} vectors for {len(ordered)} chunks; run with --rebuild")
    store.mark_complete(version)
    return version


def _change_own_copy(collection, result: Plan, get_embedder: Callable[[], Embedder], progress: bool | None) -> None:
    """Embedded mode: the new version's collection is a copy of the base's; delete, update and add in it."""
    batch = min(BATCH, collection._client.get_max_batch_size()) if hasattr(collection, "_client") else BATCH
    for i in range(0, len(result.to_delete), batch):
        collection.delete(ids=result.to_delete[i : i + batch])
    for i in range(0, len(result.to_update), batch):
        ids = result.to_update[i : i + batch]
        collection.update(ids=ids, metadatas=[result.chunks[c].metadata() for c in ids])
    if result.to_embed:
        _embed(collection, result, result.to_embed, get_embedder(), progress)


def _fill_shared(
    store: VersionStore,
    shared,
    version: str,
    base: str | None,
    old_manifest: dict,
    result: Plan,
    get_embedder: Callable[[], Embedder],
    progress: bool | None,
    rebuild: bool,
) -> None:
    """Server mode: add to the shared collection the vectors of this version it lacks. Nothing is deleted or
    updated (other versions may use the same ids; chunk metadata is read from chunks.jsonl, never from Chroma).
    A base in the shared collection already has its vectors there, so only the plan's new ids are looked up;
    a base built before the shared layout has its vectors copied from its own collection, once; a rebuild
    embeds everything again."""
    legacy = base is not None and old_manifest.get("vectors") != SHARED
    wanted = list(result.chunks) if legacy or base is None else result.to_embed
    missing = wanted if rebuild else _absent(shared, wanted)
    if not missing:
        return
    store.record_written(version, missing)
    if legacy:
        copied = set(copy_vectors(store.collection(base, manifest=old_manifest), shared, missing))
        missing = [c for c in missing if c not in copied]
    if missing:
        _embed(shared, result, missing, get_embedder(), progress)


def _absent(collection, ids: list[str]) -> list[str]:
    """The ids the collection does not hold, in their order."""
    present: set[str] = set()
    for i in range(0, len(ids), BATCH):
        present.update(collection.get(ids=ids[i : i + BATCH], include=[])["ids"])
    return [c for c in ids if c not in present]


def _embed(collection, result: Plan, to_embed: list[str], embedder: Embedder, progress: bool | None) -> None:
    """Embed chunks in batches; the next batch is embedded while the last one is written to Chroma."""
    show = progress if progress is not None else len(to_embed) >= PROGRESS_MIN_CHUNKS
    bar = tqdm(total=len(to_embed), unit="chunk", desc="embedding", disable=not show, file=sys.stderr)
    batches = [to_embed[i : i + EMBED_BATCH] for i in range(0, len(to_embed), EMBED_BATCH)]

    def vectors(ids: list[str]):
        return embedder.encode([result.chunks[c].embedding_text() for c in ids])

    with ThreadPoolExecutor(1, thread_name_prefix="embed-ahead") as ahead:
        pending = ahead.submit(vectors, batches[0])
        for k, ids in enumerate(batches):
            embedded = pending.result()
            if k + 1 < len(batches):
                pending = ahead.submit(vectors, batches[k + 1])
            chunks = [result.chunks[c] for c in ids]
            collection.upsert(
                ids=ids,
                embeddings=embedded,
                documents=[c.text for c in chunks],
                metadatas=[c.metadata() for c in chunks],
            )
            bar.update(len(ids))
    bar.close()


def _lexical(store: VersionStore, base: str | None, old_chunks: dict, result: Plan, order: list[str]) -> LexicalIndex:
    """The base version's BM25 index with the new chunks added and the dropped ones taken out; built from
    scratch when there is no base (or it was written by an older version)."""
    if base is not None:
        try:
            previous = LexicalIndex.load(store.path(base) / "lexical", list(old_chunks))
        except (OSError, ValueError):
            previous = None
        if previous is not None:
            new = {c: result.chunks[c].embedding_text() for c in result.to_embed}
            return previous.updated(new, order)
    return LexicalIndex.build([result.chunks[c].embedding_text() for c in order], order)
