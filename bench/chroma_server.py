"""Chroma server vs embedded: the latency benchmark against a real `chroma run` on loopback.

    python -m bench.chroma_server [--sizes real,1000,10000] [--rounds 3] [--incremental 1000]
        [--incremental-rounds 4] [--seed-embedder model|fake] [--out chroma-server] [--no-plot]

Starts `chroma run --path <BENCH_WORK>/chroma-server --host 127.0.0.1 --port <free>`, then per size (each
size a store of its own on the server: collection `bench-<size>`):
- real content: a full ingest in server mode (CHROMA_HOST), timed;
- synthetic sizes: the server-mode store is seeded from the embedded one (same chunks, vectors copied
  through the HTTP API into the shared collection, no re-embedding), timed;
- the latency benchmark of bench/latency.py against the embedded store and against the server, same process;
- `--incremental SIZE`: one changed page re-ingested in server mode (the new version adds that page's new
  chunks to the shared collection; from the fourth version on, the ingest also drops the oldest version and
  deletes its unused vectors) and then in embedded mode, `--incremental-rounds` times; the median is reported.
`--seed-embedder fake`: the embedded store of a synthetic size gets the test suite's hashed stand-in vectors
(tests/support.FakeEmbedder, in `store-<size>-fakeseed`) instead of the model's, for a machine without the CPU
time to embed 10,000 pages; questions and changed pages are still embedded by the model. The ingest and query
times do not depend on the vectors' values; what retrieval finds does.
Results: bench/out/<out>.json (and the server bars in docs/img/latency.png unless --no-plot).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    SIZES,
    WORK,
    child_env,
    corpus_dir,
    ensure_store,
    free_port,
    make_embedder,
    save,
    settings_for,
    stop_process,
    wait_port,
)
from bench.latency import measure

CHROMA = Path(sys.executable).parent / "chroma"


def start_server(data: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = open(WORK / "chroma-server.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    if not wait_port(port, 60, proc):
        proc.kill()
        raise RuntimeError(f"chroma run did not start; see {WORK / 'chroma-server.log'}")
    return proc, port


def seed_from_embedded(embedded, server) -> float:
    """Copy the embedded store's staging version into server mode: files as they are (the manifest marked as a
    shared-collection version), vectors via HTTP into the store's shared collection, emptied first."""
    from chatbot.store import SHARED, VersionStore, copy_vectors

    source, target = VersionStore(embedded), VersionStore(server)
    version = source.pointer("staging")
    shutil.rmtree(server.store_dir, ignore_errors=True)
    started = time.perf_counter()
    path = target.path(version)
    path.mkdir(parents=True)
    shutil.copy2(source.path(version) / "chunks.jsonl", path / "chunks.jsonl")
    shutil.copytree(source.path(version) / "lexical", path / "lexical")
    manifest = json.loads((source.path(version) / "manifest.json").read_text())
    target.write_json(version, "manifest.json", {**manifest, "vectors": SHARED})
    with contextlib.suppress(Exception):  # not there yet
        target._client().delete_collection(server.collection)
    copy_vectors(source.collection(version), target.collection(version, create=True), list(source_ids(source, version)))
    target.mark_complete(version)
    target.set_pointer(version)
    target.set_pointer(version, "staging")
    return time.perf_counter() - started


def source_ids(store, version: str) -> list[str]:
    return [chunk.id for chunk in store.read_chunks(version)]


def one_changed_page(size: str, server, embedded, embedder, rounds: int) -> dict:
    """Per round: one page gets an edit no version has had yet; ingest it in server mode, then in embedded mode."""
    from bench.ingest import CHANGED_PAGE, _toggle
    from chatbot.indexing import ingest

    page = corpus_dir(size) / CHANGED_PAGE
    times: dict[str, list[float]] = {"server": [], "embedded": []}
    for round_no in range(rounds):
        edit = 100 + round_no
        _toggle(page, edit)
        if f"(edit {edit})" not in page.read_text():  # that toggle took an earlier edit away: add this one
            _toggle(page, edit)
        for mode, settings in (("server", server), ("embedded", embedded)):
            started = time.perf_counter()
            report = ingest(settings, lambda: embedder)
            times[mode].append(round(time.perf_counter() - started, 2))
            assert report.changed, f"{mode}: the edit of {page} was not seen"
    return {
        "server_s": round(statistics.median(times["server"]), 2),
        "embedded_s": round(statistics.median(times["embedded"]), 2),
        "server_rounds_s": times["server"],
        "embedded_rounds_s": times["embedded"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--incremental", default="1000", help="sizes for the one-changed-page test ('' for none)")
    parser.add_argument("--incremental-rounds", type=int, default=4)
    parser.add_argument("--seed-embedder", choices=("model", "fake"), default="model")
    parser.add_argument("--out", default="chroma-server", help="results: bench/out/<out>.json")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    import psutil

    from chatbot.answer import Engine
    from chatbot.indexing import ingest

    embedder = make_embedder("torch")
    data = WORK / "chroma-server"
    shutil.rmtree(data, ignore_errors=True)
    proc, port = start_server(data)
    result: dict = {"embedded": {}, "server": {}, "setup": {}, "incremental": {}}
    try:
        for size in args.sizes.split(","):
            if size != "real" and args.seed_embedder == "fake":
                from tests.support import FakeEmbedder

                embedded = ensure_store(size, "fakeseed", FakeEmbedder())
            else:
                embedded = ensure_store(size, "torch", embedder)
            server = settings_for(
                corpus_dir(size),
                WORK / f"store-{size}-server",
                chroma_host="127.0.0.1",
                chroma_port=port,
                collection=f"bench-{size}",
            )
            if size == "real":
                shutil.rmtree(server.store_dir, ignore_errors=True)
                started = time.perf_counter()
                report = ingest(server, lambda: embedder)
                result["setup"][size] = {
                    "full_ingest_s": round(time.perf_counter() - started, 2),
                    "chunks": report.total,
                }
            else:
                result["setup"][size] = {"seed_copy_s": round(seed_from_embedded(embedded, server), 2)}
            print(f"[{size}] server store ready: {result['setup'][size]}", file=sys.stderr, flush=True)
            for mode, settings in (("embedded", embedded), ("server", server)):
                engine = Engine(settings, embedder, pointer="staging")
                result[mode][size] = measure(engine, args.rounds)
                result[mode][size]["chunks"] = len(engine.index.get())
                print(
                    f"[{size}] {mode}: p50 {result[mode][size]['ask_wall_ms']['p50']} ms, retrieve p50 "
                    f"{result[mode][size]['phases_ms']['retrieve']['p50']} ms",
                    file=sys.stderr,
                    flush=True,
                )
                del engine
            if size in args.incremental.split(","):
                result["incremental"][size] = one_changed_page(
                    size, server, embedded, embedder, args.incremental_rounds
                )
                print(f"[{size}] one changed page: {result['incremental'][size]}", file=sys.stderr, flush=True)
            result["server_rss_mb"] = round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1)
            result["seed_embedder"] = args.seed_embedder
            save(args.out, result)
    finally:
        stop_process(proc, 10)
    for size in result["server"]:
        e, s = result["embedded"][size], result["server"][size]
        result["server"][size]["p50_vs_embedded"] = round(s["ask_wall_ms"]["p50"] / e["ask_wall_ms"]["p50"], 2)
        result["server"][size]["retrieve_p50_vs_embedded"] = round(
            s["phases_ms"]["retrieve"]["p50"] / max(e["phases_ms"]["retrieve"]["p50"], 1e-9), 2
        )
    save(args.out, result)
    if not args.no_plot:
        from bench.latency import plot

        plot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
