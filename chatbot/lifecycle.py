"""Content lifecycle: an ingest goes to staging; a clinician publishes staging to live after the safety gate;
the previous live version is kept and can be restored. Versions are numbered; history.json lists every publish.

Publishing is one atomic pointer replacement (store.set_pointer), so patients never see a half-built index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from chatbot.audit import AuditLog
from chatbot.settings import Settings
from chatbot.store import StoreError, VersionStore


class LifecycleError(RuntimeError):
    """A publish or rollback that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Overdue:
    path: str
    title: str
    review_due: str


def audit_log(settings: Settings) -> AuditLog:
    return AuditLog(Path(settings.data_dir) / "audit.sqlite")


def page_hashes(store: VersionStore, version: str) -> dict[str, str]:
    return {path: page["sha256"] for path, page in store.read_manifest(version)["pages"].items()}


def publish(settings: Settings, actor: str) -> tuple[str, float]:
    """Make staging live (atomically); returns (version, seconds). The caller has run the gate."""
    store = VersionStore(settings)
    version = store.pointer("staging")
    if version is None:
        raise LifecycleError("nothing is staged; run 'python ingest.py' first")
    started = time.perf_counter()
    with store.ingest_lock():
        previous = store.pointer("live")
        store.set_pointer(version, "live")
        store.append_history({"version": version, "previous": previous, "by": actor, "at": _now()})
        store.prune(settings.keep_versions)
    seconds = time.perf_counter() - started
    audit_log(settings).record(actor, "publish", version, previous=previous, pages=page_hashes(store, version))
    return version, seconds


def rollback(settings: Settings, actor: str) -> tuple[str, float]:
    """Restore the version that was live before the current one; returns (version, seconds)."""
    store = VersionStore(settings)
    current = store.pointer("live")
    entries = store.history()
    previous = entries[-1]["previous"] if entries and entries[-1]["version"] == current else None
    if previous is None or not (store.path(previous) / "COMPLETE").exists():
        raise LifecycleError("there is no earlier published version to roll back to")
    started = time.perf_counter()
    with store.ingest_lock():
        store.set_pointer(previous, "live")
        before = entries[:-1]
        older = before[-1]["previous"] if before and before[-1]["version"] == previous else None
        entry = {"version": previous, "previous": older, "by": actor, "at": _now(), "rolled_back_from": current}
        store.append_history(entry)
    seconds = time.perf_counter() - started
    audit_log(settings).record(actor, "rollback", previous, rolled_back_from=current)
    return previous, seconds


def overdue_pages(settings: Settings, pointer: str = "live", today: date | None = None) -> list[Overdue]:
    """Pages whose review_due date has passed, in the version a pointer names."""
    store = VersionStore(settings)
    version = store.pointer(pointer)
    if version is None:
        return []
    today = today or date.today()
    found = []
    for path, page in store.read_manifest(version)["pages"].items():
        due = page.get("meta", {}).get("review_due", "")
        if due and date.fromisoformat(due) < today:
            found.append(Overdue(path, page.get("title", path), due))
    return sorted(found, key=lambda o: o.review_due)


def status(settings: Settings) -> dict:
    """Versions and pointers, for the consoles and the CLI."""
    store = VersionStore(settings)
    try:
        return {
            "live": store.pointer("live"),
            "staging": store.pointer("staging"),
            "versions": store.list_versions(),
            "history": store.history()[-10:],
        }
    except StoreError as exc:
        return {"error": str(exc)}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
