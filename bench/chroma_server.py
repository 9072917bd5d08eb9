"""Chroma server vs embedded: the latency benchmark against a real `chroma run` on loopback.

    python -m bench.chroma_server [--sizes real,1000,10000] [--rounds 3] [--incremental 1000]

Starts `chroma run --path <BENCH_WORK>/chroma-server --host 127.0.0.1 --port <free>`, then per size:
- real content: a full ingest in server mode (CHROMA_HOST), timed;
- synthetic sizes: the server-mode store is seeded from the embedded one (same chunks, vectors copied
  through the HTTP API, no re-embedding), timed;
- the latency benchmark of bench/latency.py against the embedded store and against the server, same process;
- `--incremental SIZE`: one changed page re-ingested in server mode (a new version = a copy of the live
  collection on the server, then the change).
Results: bench/out/chroma-server.json (and the server bars in docs/img/latency.png).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
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
    """Copy the embedded store's live version into server mode: files as they are, vectors via HTTP."""
    from chatbot.store import VersionStore, _copy_collection

    source, target = VersionStore(embedded), VersionStore(server)
    version = source.pointer("live")
    shutil.rmtree(server.store_dir, ignore_errors=True)
    started = time.perf_counter()
    path = target.path(version)
    path.mkdir(parents=True)
    for name in ("chunks.jsonl", "manifest.json"):
        shutil.copy2(source.path(version) / name, path / name)
    shutil.copytree(source.path(version) / "lexical", path / "lexical")
    with contextlib.suppress(Exception):  # not there yet
        target._client().delete_collection(target._collection_name(version))
    _copy_collection(source.collection(version), target.collection(version, create=True))
    target.mark_complete(version)
    target.set_pointer(version)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--incremental", default="1000", help="sizes for the one-changed-page test ('' for none)")
    args = parser.parse_args(argv)
    import psutil

    from bench.ingest import CHANGED_PAGE, _toggle
    from chatbot.answer import Engine
    from chatbot.indexing import ingest

    embedder = make_embedder("torch")
    data = WORK / "chroma-server"
    shutil.rmtree(data, ignore_errors=True)
    proc, port = start_server(data)
    result: dict = {"embedded": {}, "server": {}, "setup": {}, "incremental": {}}
    try:
        for size in args.sizes.split(","):
            embedded = ensure_store(size, "torch", embedder)
            server = settings_for(
                corpus_dir(size), WORK / f"store-{size}-server", chroma_host="127.0.0.1", chroma_port=port
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
                page = corpus_dir(size) / CHANGED_PAGE
                _toggle(page, 42)
                started = time.perf_counter()
                ingest(server, lambda: embedder)
                server_s = time.perf_counter() - started
                _toggle(page, 43)
                started = time.perf_counter()
                ingest(embedded, lambda: embedder)
                embedded_s = time.perf_counter() - started
                result["incremental"][size] = {"server_s": round(server_s, 2), "embedded_s": round(embedded_s, 2)}
                print(f"[{size}] one changed page: {result['incremental'][size]}", file=sys.stderr, flush=True)
            result["server_rss_mb"] = round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1)
            save("chroma-server", result)
    finally:
        stop_process(proc, 10)
    for size in result["server"]:
        e, s = result["embedded"][size], result["server"][size]
        result["server"][size]["p50_vs_embedded"] = round(s["ask_wall_ms"]["p50"] / e["ask_wall_ms"]["p50"], 2)
        result["server"][size]["retrieve_p50_vs_embedded"] = round(
            s["phases_ms"]["retrieve"]["p50"] / max(e["phases_ms"]["retrieve"]["p50"], 1e-9), 2
        )
    save("chroma-server", result)
    from bench.latency import plot

    plot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
