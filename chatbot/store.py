"""Store: numbered, immutable index versions beside each other, and pointers ('live', 'staging') to them.

    store_dir/
      live                   pointer: the version patients are served from ("v000004")
      versions/v000004/
        chroma/              embedded Chroma (absent in server mode: the vectors live on the server)
        chunks.jsonl         every chunk (id, text, metadata) in lexical-index order
        lexical/             the BM25 index over the same chunks
        manifest.json        pages -> sha256, chunk ids; version facts
        written.json         server mode: the ids this build sent to the shared collection, written before them
        COMPLETE             written last: a version without it is an interrupted build
      staging                pointer: the version an ingest built, waiting for the safety gate and a clinician
      history.json           every publish and rollback, so the previous live version can be restored
      ingest.lock            held by the one ingest (or publish) that may run at a time

With CHATBOT_DATABASE_URL (PostgreSQL) the pointers are also kept in the database, which replicas on other
machines follow, and the ingest lock is also a database lock (chatbot.database.SharedPointers).

A new version is built in a new directory (copied from the live one, then changed), and only
then is the pointer replaced with os.replace, which is atomic. Readers never see a half-built
index, a killed ingest leaves the live version untouched, and an app can keep answering
throughout: no two processes ever open the same embedded Chroma directory for writing.

Server mode (CHROMA_HOST): every version shares one collection, named `settings.collection`, keyed by the
chunk ids. An id is a hash of the chunk's page, heading and text, so it always stands for the same vector, and
a version is the list of ids in its manifest. A new version copies nothing; its ingest adds only the ids the
collection lacks, and queries see only the version's ids (`VersionVectors`). Vectors no complete version lists
are deleted when versions are dropped (`prune`, `clean_incomplete`). Versions built before this layout (one
collection per version, `<collection>-vNNNNNN`, no "vectors" key in the manifest) are still read from their
own collection; the next ingest copies their vectors into the shared collection once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import chromadb
import numpy as np
import orjson
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from chatbot.chunking import Chunk
from chatbot.database import SharedPointers, shared_pointers
from chatbot.settings import Settings

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

SHARED = "shared"  # manifest["vectors"] of a server-mode version whose vectors are in the shared collection
BATCH = 5000  # ids per Chroma request
OVERFETCH_MAX = 1000  # other versions' vectors up to which a query over-fetches rather than sending ids=


def chroma_settings() -> ChromaSettings:
    """A fresh settings object per client: chromadb.HttpClient changes the one it is given."""
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


class StoreError(RuntimeError):
    """The store cannot be used; the message says how to recover."""


class StoreBusy(StoreError):
    pass


class VersionStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = Path(settings.store_dir)
        self.versions = self.root / "versions"
        self.shared = shared_pointers(settings.database_url, settings.collection)

    # -- pointers -------------------------------------------------------------------------
    def pointer(self, name: str = "live") -> str | None:
        value = self.shared.read(name)[0] if self.shared is not None else None
        if value is None:  # no database, or a store from before CHATBOT_DATABASE_URL was set: the local file
            try:
                value = (self.root / name).read_text().strip()
            except FileNotFoundError:
                return None
        return value if value and (self.versions / value / "COMPLETE").exists() else None

    def set_pointer(self, version: str, name: str = "live") -> None:
        """Atomically point `name` at `version` (write a temp file, fsync, rename)."""
        if not (self.versions / version / "COMPLETE").exists():
            raise StoreError(f"version {version} is not complete; run the ingest again")
        tmp = self.root / f".{name}.tmp"
        with open(tmp, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / name)
        if self.shared is not None:  # the database is what replicas on other machines follow
            self.shared.write(name, version)

    def pointer_mtime(self, name: str = "live") -> float:
        """Changes whenever the pointer is set: replicas compare it before each question."""
        if self.shared is not None:
            return self.shared.read(name)[1]
        try:
            return (self.root / name).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    # -- versions -------------------------------------------------------------------------
    def list_versions(self) -> list[str]:
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if (p / "COMPLETE").exists())

    def path(self, version: str) -> Path:
        return self.versions / version

    def new_version(self, base: str | None) -> tuple[str, Path]:
        """Create the next numbered version directory, starting as a copy of `base` (or empty)."""
        self.versions.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name[1:]) for p in self.versions.iterdir() if p.name[1:].isdigit()]
        name = f"v{max(numbers, default=0) + 1:06d}"
        path = self.versions / name
        path.mkdir()
        if base and not self.settings.chroma_host and (self.path(base) / "chroma").is_dir():
            shutil.copytree(self.path(base) / "chroma", path / "chroma")
        return name, path

    def mark_complete(self, version: str) -> None:
        (self.path(version) / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def clean_incomplete(self) -> list[str]:
        """Remove what killed ingests left behind; never touches a complete version."""
        removed = []
        if self.versions.is_dir():
            removed = sorted(p.name for p in self.versions.iterdir() if not (p / "COMPLETE").exists())
        self._drop(removed)
        return removed

    def history(self) -> list[dict]:
        """Every publish and rollback, oldest first: {"version", "previous", "by", "at"}."""
        try:
            return json.loads((self.root / "history.json").read_text())
        except FileNotFoundError:
            return []

    def append_history(self, entry: dict, replace_last: bool = False) -> None:
        entries = self.history()[: -1 if replace_last else None]
        tmp = self.root / ".history.tmp"
        tmp.write_text(json.dumps(entries + [entry], indent=1))
        os.replace(tmp, self.root / "history.json")

    def prune(self, keep: int) -> None:
        """Keep the newest `keep` versions, whatever a pointer names, and the version live would roll back to."""
        last = self.history()[-1:] or [{}]
        pinned = {self.pointer("live"), self.pointer("staging"), last[0].get("previous")}
        complete = self.list_versions()
        self._drop([v for v in complete[: max(0, len(complete) - keep)] if v not in pinned])

    def _drop(self, versions: list[str]) -> None:
        """Remove versions. Server mode: first make them incomplete (so no pointer can name them again), then
        delete the vectors only they listed, then their files; a crash in between leaves incomplete versions,
        which the next ingest drops the same way."""
        for version in versions:
            (self.path(version) / "COMPLETE").unlink(missing_ok=True)
        if self.settings.chroma_host and versions:
            self.collect_garbage(versions)
            for version in versions:
                with contextlib.suppress(Exception):  # a missing (or never made) collection is what we want
                    self._client().delete_collection(self._legacy_name(version))
        for version in versions:
            shutil.rmtree(self.versions / version, ignore_errors=True)

    def listed_ids(self, version: str) -> set[str]:
        """Every id a version's manifest lists or its build wrote (an interrupted build has no manifest)."""
        ids: set[str] = set()
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            for page in json.loads((self.path(version) / "manifest.json").read_text())["pages"].values():
                ids.update(page["chunk_ids"])
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            ids.update(json.loads((self.path(version) / "written.json").read_text()))
        return ids

    def collect_garbage(self, dropped: list[str]) -> int:
        """Server mode: delete from the shared collection the vectors the dropped versions listed that no
        complete version lists. Returns how many were deleted."""
        candidates = set().union(*(self.listed_ids(v) for v in dropped))
        if not candidates:
            return 0
        kept = set().union(*(self.listed_ids(v) for v in self.list_versions()))
        garbage = sorted(candidates - kept)
        try:
            shared = self._client().get_collection(self.settings.collection, embedding_function=None)
        except NotFoundError:
            return 0
        for i in range(0, len(garbage), BATCH):
            shared.delete(ids=garbage[i : i + BATCH])
        return len(garbage)

    # -- files inside a version -----------------------------------------------------------
    def read_manifest(self, version: str | None) -> dict:
        if version is None:
            return {"pages": {}}
        try:
            return json.loads((self.path(version) / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"{self.path(version)}: manifest is missing or damaged ({exc.__class__.__name__}); "
                "rebuild with 'python ingest.py --rebuild'"
            ) from None

    def read_chunks(self, version: str) -> list[Chunk]:
        """The version's chunks in lexical-index order. orjson: ~5x faster than json at 40,000 chunks, which an
        ingest of one changed page reads and writes in full."""
        with open(self.path(version) / "chunks.jsonl", "rb") as fh:
            return [Chunk.from_row(orjson.loads(line)) for line in fh]

    def write_chunks(self, version: str, chunks: list[Chunk]) -> None:
        with open(self.path(version) / "chunks.jsonl", "wb") as fh:
            fh.writelines(orjson.dumps(chunk.to_row()) + b"\n" for chunk in chunks)

    def write_json(self, version: str, name: str, data: object) -> None:
        (self.path(version) / name).write_text(json.dumps(data, ensure_ascii=False))  # one line: C encoder

    def record_written(self, version: str, ids: list[str]) -> None:
        """Server mode: list the ids a build is about to add to the shared collection, durably, before adding
        them, so that the vectors of a build killed halfway are found and deleted later."""
        with open(self.path(version) / "written.json", "w") as fh:
            json.dump(ids, fh)
            fh.flush()
            os.fsync(fh.fileno())

    # -- Chroma ---------------------------------------------------------------------------
    def _client(self, version: str | None = None):
        if self.settings.chroma_host:
            return chromadb.HttpClient(
                host=self.settings.chroma_host, port=self.settings.chroma_port, settings=chroma_settings()
            )
        return chromadb.PersistentClient(path=str(self.path(version) / "chroma"), settings=chroma_settings())

    def _legacy_name(self, version: str) -> str:
        """Server mode before the shared collection: one collection per version."""
        return f"{self.settings.collection}-{version}"

    def _collection_name(self, version: str, manifest: dict | None) -> str:
        """Embedded: each version has its own directory, so one name. Server: the shared collection, or the
        version's own one if it was built before the shared layout (`manifest` None: a version being built)."""
        if not self.settings.chroma_host or manifest is None or manifest.get("vectors") == SHARED:
            return self.settings.collection
        return self._legacy_name(version)

    def collection(self, version: str, create: bool = False, manifest: dict | None = None):
        """The Chroma collection holding one version's vectors (in server mode the shared one may hold other
        versions' too: see `vectors`). `create`: for a version being built. `manifest`: the version's, if the
        caller has read it already. We always pass vectors ourselves: no embedding function."""
        client = self._client(version)
        if self.settings.chroma_host and not create and manifest is None:
            manifest = self.read_manifest(version)
        name = self._collection_name(version, None if create else manifest)
        if create:
            return client.get_or_create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})
        try:
            return client.get_collection(name, embedding_function=None)
        except Exception as exc:  # noqa: BLE001 - chroma raises several types for "not there"
            raise StoreError(
                f"index version {version} has no vector collection ({exc.__class__.__name__}); "
                "rebuild with 'python ingest.py --rebuild'"
            ) from None

    def vectors(self, version: str, ids: list[str], manifest: dict):
        """What a reader queries for one version: embedded, the version's own collection; server mode, the
        collection seen through the version's `ids` (chunks.jsonl order). A version of at most
        `exact_max_rows` vectors is read into memory once and searched exactly (it then answers even while a
        Chroma server is down)."""
        collection = self.collection(version, manifest=manifest)
        view = VersionVectors(collection, ids) if self.settings.chroma_host else collection
        return ExactVectors(collection, ids, view) if len(ids) <= self.settings.exact_max_rows else view

    @contextmanager
    def ingest_lock(self) -> Iterator[None]:
        """Only one ingest at a time (on this machine; with CHATBOT_DATABASE_URL, on every machine); a second one
        is told so instead of waiting."""
        self.root.mkdir(parents=True, exist_ok=True)
        busy = f"{self.root}: another ingest is running; wait for it to finish"
        with open(self.root / "ingest.lock", "w") as fh, _held_everywhere(self.shared, busy):
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusy(busy) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _held_everywhere(shared: SharedPointers | None, busy: str) -> Iterator[None]:
    """The database's ingest lock of this store when there is one (replicas on several machines)."""
    if shared is None:
        yield
        return
    with shared.lock() as held:
        if not held:
            raise StoreBusy(busy + " (on another machine)")
        yield


class VersionVectors:
    """Server mode: the shared collection seen through one version's ids, with the two calls readers make.

    A query over-fetches by the number of vectors other versions keep in the collection (counted when the view
    is opened) and keeps this version's ids: after an ordinary ingest those are a few per changed page, and an
    HTTP query for 40 + a few hundred rows costs about what one for 40 does. When they are many (a rebuild that
    changed most ids, before the old versions are pruned), or a later ingest added more than the over-fetch
    covers, the query is restricted with `ids=` instead, which costs more the larger the version is."""

    def __init__(self, collection, ids: list[str]):
        self.collection = collection
        self.ids = ids
        self._mine = frozenset(ids)
        self.others = max(0, collection.count() - len(self._mine))

    def count(self) -> int:
        """How many of the version's vectors the collection holds."""
        return sum(
            len(self.collection.get(ids=self.ids[i : i + BATCH], include=[])["ids"])
            for i in range(0, len(self.ids), BATCH)
        )

    def query(self, query_embeddings, n_results: int, include: list[str]) -> dict:
        """Chroma's query, restricted to the version: the nearest `n_results` of its vectors per query row."""
        if self.others <= OVERFETCH_MAX:
            fetch = n_results + self.others
            got = self.collection.query(query_embeddings=query_embeddings, n_results=fetch, include=include)
            kept = [[i for i, cid in enumerate(row) if cid in self._mine][:n_results] for row in got["ids"]]
            if all(len(keep) == n_results or len(row) < fetch for keep, row in zip(kept, got["ids"], strict=True)):
                return _select(got, kept)
            self.others = max(0, self.collection.count() - len(self._mine))  # an ingest has added vectors since
        return self.collection.query(
            query_embeddings=query_embeddings, n_results=n_results, ids=self.ids, include=include
        )


class ExactVectors:
    """A small version's vectors, read once from Chroma when the version is opened and searched exactly: one
    matrix-vector product over a few thousand rows costs a tenth of a Chroma query (bench/experiments.py), and
    exact search never misses a neighbour. `collection` holds the vectors; `view` is what Chroma would be queried
    through (the collection, or server-mode VersionVectors) and counts them."""

    def __init__(self, collection, ids: list[str], view):
        self.view = view
        rows: dict[str, list[float]] = {}
        for i in range(0, len(ids), BATCH):
            got = collection.get(ids=ids[i : i + BATCH], include=["embeddings"])
            rows.update(zip(got["ids"], got["embeddings"], strict=True))
        missing = [cid for cid in ids if cid not in rows]
        if missing:
            raise StoreError(f"the vector store lacks {len(missing)} of this version's vectors; rebuild the index")
        self.ids = list(ids)
        self.matrix = np.asarray([rows[cid] for cid in ids], dtype=np.float32).reshape(len(ids), -1)

    def count(self) -> int:
        """How many vectors the store itself holds for the version (asked of Chroma, not of the copy in memory)."""
        return self.view.count()

    def query(self, query_embeddings, n_results: int, include: list[str]) -> dict:
        """Chroma's query result for the nearest `n_results` rows (cosine distance), one row per query."""
        ids, distances = [], []
        for vec in query_embeddings:
            # einsum, not `@`: BLAS would share this small product out between threads (see safety.Triager)
            sims = np.einsum("ij,j->i", self.matrix, np.asarray(vec, dtype=np.float32).reshape(-1))
            n = min(n_results, len(self.ids))
            top = np.argpartition(-sims, n - 1)[:n] if n < len(self.ids) else np.arange(len(self.ids))
            top = top[np.lexsort((top, -sims[top]))]  # nearest first; equal scores in chunk order
            ids.append([self.ids[i] for i in top])
            distances.append([float(1.0 - sims[i]) for i in top])
        return {"ids": ids, "distances": distances, "included": ["distances"]}


def _select(got: dict, kept: list[list[int]]) -> dict:
    """The rows of a query result at the positions `kept` (per query row), in every field it returned."""
    out = dict(got)
    for key in ("ids", *got.get("included", [])):
        if got.get(key) is not None:
            out[key] = [[row[i] for i in keep] for row, keep in zip(got[key], kept, strict=True)]
    return out


def copy_vectors(source, target, ids: list[str]) -> list[str]:
    """Copy the vectors (with documents and metadata) of `ids` that `source` holds into `target`; returns the
    ids copied. Server mode: moves a version built before the shared collection into it."""
    copied: list[str] = []
    for i in range(0, len(ids), BATCH):
        got = source.get(ids=ids[i : i + BATCH], include=["embeddings", "documents", "metadatas"])
        if got["ids"]:
            target.upsert(
                ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"], metadatas=got["metadatas"]
            )
            copied += got["ids"]
    return copied
