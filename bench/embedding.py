"""Embedding throughput and query forward-pass latency: torch vs onnx, batch sizes, thread counts.

    python -m bench.embedding [--pages 60] [--rounds 3] [--batch-sizes 8,16,32,64,128] [--threads 1,2]

Configurations are interleaved round by round (A B C A B C ...), so background load hits them alike;
medians over rounds are reported, plus CPU seconds per chunk (less sensitive to other processes).
"onnx/.../t0" is the onnx default for ingest-sized inputs (>= 200 texts; 60 pages give ~270 chunks): 2 batches
side by side, each on a single-threaded run.
Results: bench/out/embedding.json, docs/img/embedding.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CONTENT, QUESTIONS, make_embedder, pyplot, save, save_plot


def chunk_texts(pages: int) -> list[str]:
    from bench.synth import write_corpus
    from chatbot.chunking import chunk_page
    from chatbot.loading import load_folder

    folder = Path(tempfile.mkdtemp(prefix="emb-"))
    write_corpus(folder, pages, seed=3)
    found, _ = load_folder(folder, 256_000)
    real, _ = load_folder(CONTENT, 256_000)
    return [c.embedding_text() for p in found + real for c in chunk_page(p, 1000)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="8,16,32,64,128")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--backends", default="torch,onnx")
    args = parser.parse_args(argv)
    texts = chunk_texts(args.pages)
    backends = args.backends.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    load_s: dict[str, float] = {}
    embedders = {}
    for backend in backends:
        started = time.perf_counter()
        embedders[backend] = make_embedder(backend)
        load_s[backend] = round(time.perf_counter() - started, 2)
    import torch

    configs = [(b, bs, t) for b in backends for bs in sizes for t in threads]
    if "onnx" in backends:  # 0: the onnx default, batches side by side on single-threaded runs
        configs += [("onnx", bs, 0) for bs in sizes]
    throughput: dict[str, list[float]] = {}
    cpu_per_chunk: dict[str, list[float]] = {}
    query_ms: dict[str, list[float]] = {f"{b}/{t}": [] for b in backends for t in threads}
    for backend in backends:  # warm-up
        embedders[backend].encode(texts[:32])
    for round_no in range(args.rounds):
        print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for backend, batch, nthreads in configs:
            _set_threads(embedders[backend], backend, nthreads, torch)
            embedders[backend].batch_size = batch
            started, cpu = time.perf_counter(), time.process_time()
            embedders[backend].encode(texts)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            key = f"{backend}/bs{batch}/t{nthreads}"
            throughput.setdefault(key, []).append(len(texts) / wall)
            cpu_per_chunk.setdefault(key, []).append(cpu / len(texts) * 1000)
        for backend in backends:
            for nthreads in threads:
                _set_threads(embedders[backend], backend, nthreads, torch)
                for q in QUESTIONS:
                    started = time.perf_counter()
                    embedders[backend]._encode_one(f"{q} ({round_no})")
                    query_ms[f"{backend}/{nthreads}"].append((time.perf_counter() - started) * 1000)
    result = {
        "texts": len(texts),
        "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
        "model_load_s": load_s,
        "chunks_per_s": {k: round(statistics.median(v), 1) for k, v in throughput.items()},
        "cpu_ms_per_chunk": {k: round(statistics.median(v), 2) for k, v in cpu_per_chunk.items()},
        "query_forward_ms_p50": {k: round(statistics.median(v), 2) for k, v in query_ms.items()},
        "rounds": args.rounds,
        "raw_chunks_per_s": {k: [round(x, 1) for x in v] for k, v in throughput.items()},
    }
    if "torch" in embedders and "onnx" in embedders:
        a, b = embedders["torch"].encode(texts[:64]), embedders["onnx"].encode(texts[:64])
        result["min_cosine_torch_vs_onnx"] = round(float((a * b).sum(1).min()), 6)
    save("embedding", result)
    plot(result, backends, sizes, threads)
    return 0


def _set_threads(embedder, backend: str, nthreads: int, torch) -> None:
    """torch: set_num_threads at run time; onnx: a session per thread count (cached on the embedder)."""
    if backend == "torch":
        torch.set_num_threads(nthreads)
        return
    cache = embedder.__dict__.setdefault("_bench_batches", {0: embedder._batch})
    if nthreads not in cache:
        from chatbot.embedding import Embedder

        other = Embedder(backend="onnx", cache_dir=embedder.onnx_path.parent.parent, threads=nthreads)
        cache[nthreads] = other._batch
    embedder._batch = cache[nthreads]


def plot(result: dict, backends: list[str], sizes: list[int], threads: list[int]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for backend in backends:
        for nthreads in threads:
            ys = [result["chunks_per_s"][f"{backend}/bs{bs}/t{nthreads}"] for bs in sizes]
            axes[0].plot(sizes, ys, "o-", label=f"{backend}, {nthreads} thread(s)")
    if "onnx" in backends:
        ys = [result["chunks_per_s"][f"onnx/bs{bs}/t0"] for bs in sizes]
        axes[0].plot(sizes, ys, "s--", label="onnx, 2 batches side by side (default)")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("batch size")
    axes[0].set_title(f"chunk embedding, chunks/s (median of {result['rounds']})")
    axes[0].legend(fontsize=8)
    keys = list(result["query_forward_ms_p50"])
    axes[1].bar(keys, [result["query_forward_ms_p50"][k] for k in keys], color="tab:green")
    axes[1].set_title("one question's forward pass, ms (p50)")
    axes[1].set_xlabel("backend / threads")
    save_plot(fig, "embedding")


if __name__ == "__main__":
    sys.exit(main())
