"""Content lifecycle, the one publish policy: stage -> safety gate -> publish -> rollback, audit included.

An ingest only ever builds staging (`stage`). Staging becomes live only through `publish`, which takes the
passed `GateReport` of that very staging version: nothing can publish without the gate. `stage_and_publish` is
the sequence `ingest.py` and the app's first start use; the consoles call `stage`, `check` and `publish`.
The previous live version is kept and can be restored (`rollback`). Versions are numbered; history.json lists
every publish. Publishing is one atomic pointer replacement, so patients never see a half-built index.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from chatbot.audit import AuditLog
from chatbot.indexing import IngestReport, ingest
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
    return AuditLog.open(settings)


def page_hashes(store: VersionStore, version: str) -> dict[str, str]:
    return {path: page["sha256"] for path, page in store.read_manifest(version)["pages"].items()}


def stage(settings: Settings, get_embedder: Callable, actor: str, **options) -> IngestReport:
    """Ingest the content folder into staging (patients keep live) and audit what was staged.
    `options` go to `indexing.ingest` (dry_run, rebuild, skip_invalid, progress)."""
    report = ingest(settings, get_embedder, **options)
    if not report.dry_run and report.version and (report.written or report.deleted or report.removed):
        pages = VersionStore(settings).read_manifest(report.version)["pages"]
        hashes = {p: pages.get(p, {}).get("sha256") for p in report.added + report.changed}
        audit_log(settings).record(actor, "stage", report.version, pages=hashes, removed=report.removed)
    return report


def check(settings: Settings, embedder, actor: str, cases: list[dict] | None = None):
    """Run the safety gate on staging (against live); a refusal is audited with its reasons."""
    from chatbot.gate import run_gate  # the answering engine: imported only when a gate runs

    gate = run_gate(settings, embedder, cases)
    if not gate.passed and gate.version:
        audit_log(settings).record(actor, "gate_failed", gate.version, reasons=gate.reasons)
    return gate


def publish(settings: Settings, actor: str, gate) -> tuple[str, float]:
    """Make staging live (atomically) after `gate`, the passed safety gate of this very staging version;
    returns (version, seconds)."""
    store = VersionStore(settings)
    version = store.pointer("staging")
    if version is None:
        raise LifecycleError("nothing is staged; run 'python ingest.py' first")
    if gate is None or not gate.passed:
        raise LifecycleError("the safety gate has not passed staging; run 'python ingest.py --publish' to check it")
    if gate.version != version:
        raise LifecycleError(
            f"the safety gate checked {gate.version}, but staging is now {version}; run the gate again"
        )
    audit = audit_log(settings)
    audit.record(actor, "approve", version, gate="passed")
    started = time.perf_counter()
    with store.ingest_lock():
        previous = store.pointer("live")
        store.set_pointer(version, "live")
        store.append_history({"version": version, "previous": previous, "by": actor, "at": _now()})
        store.prune(settings.keep_versions)
    seconds = time.perf_counter() - started
    audit.record(actor, "publish", version, previous=previous, pages=page_hashes(store, version))
    return version, seconds


@dataclass
class Outcome:
    """What `stage_and_publish` did: the staging report, the gate (when it ran) and the published version."""

    report: IngestReport
    gate: object | None = None
    published: str | None = None
    seconds: float = 0.0

    @property
    def refused(self) -> bool:
        return self.gate is not None and not self.gate.passed

    def to_json(self) -> dict:
        out = self.report.to_json()
        if self.gate is not None:
            out["gate"] = {"passed": self.gate.passed, "reasons": self.gate.reasons}
        if self.published:
            out["published"] = {"version": self.published, "seconds": round(self.seconds, 3)}
        return out

    def summary(self) -> str:
        """What an editor reads after an ingest: the staging report, then what patients now see."""
        text = self.report.summary()
        if self.refused:
            return text + "\nnot published: the safety gate refused staging; patients keep live"
        if self.published:
            return text + f"\npublished {self.published}: patients now see it"
        if not self.report.dry_run:
            text += "\nstaged: patients still see the live index; publish with 'python ingest.py --publish'"
        return text


def lazy_embedder(settings: Settings) -> Callable:
    """A function that loads the model on its first call only (a rollback or an unchanged ingest needs none)."""
    loaded: list = []

    def get():
        if not loaded:
            from chatbot.embedding import Embedder

            loaded.append(Embedder.from_settings(settings))
        return loaded[0]

    return get


def stage_and_publish(
    settings: Settings, get_embedder: Callable, actor: str, *, publish_now: bool = False, **options
) -> Outcome:
    """Stage the content; then, when asked (or when nothing is live yet: a fresh install), run the safety gate
    and publish staging only if it passes."""
    report = stage(settings, get_embedder, actor, **options)
    outcome = Outcome(report)
    first_install = VersionStore(settings).pointer("live") is None
    if report.dry_run or not (publish_now or first_install):
        return outcome
    outcome.gate, outcome.published, outcome.seconds = check_and_publish(settings, get_embedder(), actor)
    return outcome


def check_and_publish(settings: Settings, embedder, actor: str, cases: list[dict] | None = None):
    """Run the safety gate on staging and publish it only if it passes: (gate, version or None, seconds)."""
    gate = check(settings, embedder, actor, cases)
    if not gate.passed:
        return gate, None, 0.0
    version, seconds = publish(settings, actor, gate)
    return gate, version, seconds


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


def store_damage(settings: Settings) -> str | None:
    """What is wrong with an existing store that a fresh build must not paper over, or None.

    None also for a store that holds no index at all (a fresh install: the app builds one). A live pointer
    naming a missing or unfinished version, a lost pointer, or built versions none of which is live (the safety
    gate refused the last build) are not fixed at start-up: a silent rebuild would hide the damage and could
    put an index before patients that no clinician approved."""
    store = VersionStore(settings)
    pointer = store.root / "live"
    if pointer.exists():
        if store.pointer("live") is None:
            named = pointer.read_text(errors="replace").strip()[:40]
            return f"the live pointer names {named or 'nothing'!r}, which is missing or half-written"
        return None
    try:
        published = store.history()
    except (OSError, ValueError):
        return "the live pointer is missing and history.json is damaged"
    if published:
        return "the live pointer is missing although an index was published before"
    versions = store.list_versions()
    if versions:
        return (
            f"no version is live although the store holds {', '.join(versions[-3:])} (the last build was not "
            "published, e.g. the safety gate refused it, or the live pointer was lost)"
        )
    return None


def first_build(settings: Settings, embedder, actor: str) -> str | None:
    """A fresh install (no index at all) is staged and published through the safety gate; an existing store is
    never rebuilt here. Returns what keeps patients from being served, or None."""
    problem = store_damage(settings)
    if problem is not None or VersionStore(settings).pointer("live") is not None:
        return problem
    try:
        outcome = stage_and_publish(settings, lambda: embedder, actor, skip_invalid=True)
    except Exception as exc:  # noqa: BLE001 - serve "unavailable" and say why, rather than crash-loop
        return f"the first index build failed: {exc.__class__.__name__}: {exc}"
    if outcome.gate is not None and not outcome.gate.passed:
        return "the safety gate refused the first build: " + "; ".join(outcome.gate.reasons[:5])
    return None


def open_engine(settings: Settings, embedder=None, actor: str = "app start-up"):
    """Load the model once and open an Engine over the live index; a fresh install's first build goes through
    the safety gate (`first_build`). Returns (engine, what keeps patients from being served or None)."""
    from chatbot.answer import Engine
    from chatbot.embedding import Embedder
    from chatbot.llm import build_chat_model

    embedder = embedder or Embedder.from_settings(settings)
    problem = first_build(settings, embedder, actor=actor)
    return Engine(settings, embedder, build_chat_model(settings)), problem
