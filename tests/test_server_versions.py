"""Server mode (CHROMA_HOST) against a real `chroma run` on loopback: every version shares one collection keyed
by chunk id, a version sees only its own ids, and vectors no kept version lists are deleted (issue 15)."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path

import chromadb
import numpy as np
import pytest

from chatbot.indexing import IngestReport, ingest
from chatbot.retrieval import Index, retrieve
from chatbot.settings import Settings
from chatbot.store import SHARED, StoreError, VersionStore, chroma_settings, copy_vectors
from tests.support import CONTENT, free_port, settings_for, start_chroma

pytestmark = pytest.mark.slow

PAGES = ("aftercare.md", "cost.md")  # two real pages: enough chunks to tell versions apart, quick to embed
OLD_SENTENCE = "keep your head up and keep the headband on"
NEW_SENTENCE = "keep your head up, sleep on your back and keep the headband on"


class CountingEmbedder:
    """The real embedder, counting the texts an ingest sends it."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.texts = 0

    def encode(self, texts: list[str]):
        self.texts += len(texts)
        return self.embedder.encode(texts)


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory) -> int:
    port = free_port()
    server = start_chroma(tmp_path_factory.mktemp("chroma-data"), port)
    yield port
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def settings(tmp_path: Path, chroma_port: int) -> Settings:
    """A store of its own (files and shared collection) over a copy of two pages."""
    content = tmp_path / "content"
    content.mkdir()
    for page in PAGES:
        shutil.copy2(CONTENT / page, content / page)
    return settings_for(
        content,
        tmp_path / "store",
        chroma_host="127.0.0.1",
        chroma_port=chroma_port,
        collection=f"t-{uuid.uuid4().hex[:12]}",
        keep_versions=2,
        exact_max_rows=0,  # these tests are about the server's views; test_exact_search_... compares the two
    )


def client(settings: Settings):
    return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings())


def collection_names(settings: Settings) -> set[str]:
    return {c.name for c in client(settings).list_collections() if c.name.startswith(settings.collection)}


def shared(settings: Settings):
    return client(settings).get_collection(settings.collection, embedding_function=None)


def ids(settings: Settings, version: str) -> set[str]:
    return {c.id for c in VersionStore(settings).read_chunks(version)}


def edit(settings: Settings, round_no: int) -> None:
    """One changed page: a sentence of one aftercare section, different each round."""
    page = settings.content_dir / "aftercare.md"
    text = page.read_text()
    before = OLD_SENTENCE if round_no == 1 else NEW_SENTENCE.replace("back", f"back ({round_no - 1})")
    assert before in text
    page.write_text(text.replace(before, NEW_SENTENCE.replace("back", f"back ({round_no})")))


def run(settings: Settings, embedder) -> tuple[IngestReport, CountingEmbedder]:
    counting = CountingEmbedder(embedder)
    report = ingest(settings, lambda: counting)
    return report, counting


def test_versions_share_one_collection_and_a_change_adds_only_its_new_chunks(settings, embedder):
    first, _ = run(settings, embedder)
    assert collection_names(settings) == {settings.collection}
    assert shared(settings).count() == first.total
    assert not (settings.store_dir / "versions" / first.version / "chroma").exists()
    assert VersionStore(settings).read_manifest(first.version)["vectors"] == SHARED

    edit(settings, 1)
    second, counting = run(settings, embedder)
    old, new = ids(settings, first.version), ids(settings, second.version)
    added = new - old
    assert second.changed == ["aftercare.md"] and 0 < len(added) == second.written == counting.texts < 5
    assert collection_names(settings) == {settings.collection}  # nothing copied into a second collection
    assert shared(settings).count() == len(old | new) == first.total + len(added)


def test_each_version_answers_from_its_own_ids_only(settings, embedder):
    first, _ = run(settings, embedder)
    store = VersionStore(settings)
    older = Index(store, first.version)  # opened before the next ingest adds vectors it must not see
    edit(settings, 1)
    second, _ = run(settings, embedder)
    newer = Index(store, second.version)
    only_new, only_old = set(newer.chunks) - set(older.chunks), set(older.chunks) - set(newer.chunks)
    assert only_new and only_old
    for index, foreign in ((older, only_new), (newer, only_old)):
        for cid in foreign:  # the foreign chunk's own vector: the nearest one in the whole collection
            vec = embedder.encode([index_chunk(older, newer, cid).embedding_text()])[0]
            got = index.collection.query(query_embeddings=[vec], n_results=len(index), include=["distances"])
            assert set(got["ids"][0]) == set(index.chunks)  # all of this version's rows, no other version's
            hits = retrieve(index, "how long should I avoid washing my scalp", vec, 4)
            assert hits and all(h.chunk_id in index.chunks for h in hits)
    assert older.collection.count() == len(older) and newer.collection.count() == len(newer)


def index_chunk(older: Index, newer: Index, cid: str):
    return older.chunks.get(cid) or newer.chunks[cid]


def test_prune_deletes_vectors_no_kept_version_lists(settings, embedder):
    versions = [run(settings, embedder)[0].version]
    for round_no in (1, 2):
        edit(settings, round_no)
        versions.append(run(settings, embedder)[0].version)
    store = VersionStore(settings)
    assert store.list_versions() == versions[1:]  # keep_versions=2: the first one was dropped
    kept = ids(settings, versions[1]) | ids(settings, versions[2])
    collection = shared(settings)
    assert set(collection.get(include=[])["ids"]) == kept
    for version in versions[1:]:
        index = Index(store, version)
        assert index.collection.count() == len(index)
        hits = retrieve(index, "washing", embedder.encode(["how long should I avoid washing my scalp"])[0], 3)
        assert any("48 hours" in h.text for h in hits)


def test_vectors_of_a_killed_ingest_are_deleted_by_the_next_one(settings, embedder):
    first, _ = run(settings, embedder)
    store = VersionStore(settings)
    orphan, _ = store.new_version(first.version)  # what an ingest killed after sending its vectors leaves
    store.record_written(orphan, ["orphan-chunk-id"])
    shared(settings).upsert(ids=["orphan-chunk-id"], embeddings=[[0.1] * embedder.dimension])
    edit(settings, 1)
    second, _ = run(settings, embedder)
    assert store.list_versions() == [first.version, second.version]  # the interrupted one was dropped first
    assert not shared(settings).get(ids=["orphan-chunk-id"], include=[])["ids"]
    assert set(shared(settings).get(include=[])["ids"]) == ids(settings, first.version) | ids(settings, second.version)


def make_old_layout(settings: Settings, version: str) -> None:
    """Turn a version into what the previous server layout wrote: its own collection `<collection>-<version>`,
    no shared collection, no "vectors" key in the manifest."""
    store = VersionStore(settings)
    own = client(settings).create_collection(
        f"{settings.collection}-{version}", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    copy_vectors(shared(settings), own, sorted(ids(settings, version)))
    client(settings).delete_collection(settings.collection)
    manifest = store.read_manifest(version)
    del manifest["vectors"]
    store.write_json(version, "manifest.json", manifest)


def test_a_store_of_the_old_layout_is_read_then_moved_into_the_shared_collection(settings, embedder):
    first, _ = run(settings, embedder)
    make_old_layout(settings, first.version)
    store = VersionStore(settings)
    vec = embedder.encode(["how long should I avoid washing my scalp"])[0]
    old = Index(store, first.version)
    assert old.collection.collection.name == f"{settings.collection}-{first.version}"
    assert any("48 hours" in h.text for h in retrieve(old, "washing", vec, 3))

    edit(settings, 1)
    second, counting = run(settings, embedder)  # copies the old version's vectors once, embeds the change only
    assert counting.texts == second.written < 5
    assert shared(settings).count() == second.total
    assert any("48 hours" in h.text for h in retrieve(Index(store, second.version), "washing", vec, 3))
    assert any("48 hours" in h.text for h in retrieve(Index(store, first.version), "washing", vec, 3))

    edit(settings, 2)
    third, _ = run(settings, embedder)  # keep_versions=2: the old-layout version goes, with its collection
    assert store.list_versions() == [second.version, third.version]
    assert collection_names(settings) == {settings.collection}


def test_an_old_layout_version_without_its_collection_says_to_rebuild(settings, embedder):
    first, _ = run(settings, embedder)
    make_old_layout(settings, first.version)
    client(settings).delete_collection(f"{settings.collection}-{first.version}")
    with pytest.raises(StoreError, match=r"python ingest\.py --rebuild"):
        Index(VersionStore(settings), first.version)


def test_exact_search_in_memory_finds_what_the_server_finds(settings, embedder):
    """A small version is read into memory and searched exactly: the same neighbours, in the same order, at the
    same distances as the server's search through the version's ids."""
    first, _ = run(settings, embedder)
    store = VersionStore(settings)
    server = Index(store, first.version)
    exact = Index(VersionStore(dataclasses.replace(settings, exact_max_rows=10_000)), first.version)
    assert type(exact.collection).__name__ == "ExactVectors" and exact.collection.count() == len(exact)
    for question in ("how long should I avoid washing my scalp", "does it hurt", "kitna kharcha aata hai"):
        vec = embedder.query_vector(question)
        a = server.collection.query(query_embeddings=[vec], n_results=10, include=["distances"])
        b = exact.collection.query(query_embeddings=[vec], n_results=10, include=["distances"])
        assert a["ids"][0][:5] == b["ids"][0][:5]
        assert np.allclose(a["distances"][0], b["distances"][0], atol=1e-4)
