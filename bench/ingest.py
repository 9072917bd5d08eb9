"""Ingest throughput, peak memory and incremental re-ingest, per corpus size.

    python -m bench.ingest [--sizes real,1000,10000] [--backend torch|onnx] [--batch-size 16] [--rounds 3]

Per size, in a fresh subprocess each (so peak RSS is that ingest's own):
- full ingest into an empty store: seconds, chunks/s, time in the embedding model vs the rest, peak RSS;
- a no-op re-ingest (nothing changed): the fixed cost of checking every page;
- incremental (synthetic sizes): one page changed, re-ingested `--rounds` times with the model already loaded
  (as the staff console's re-index does), one round profiled, then once through `python ingest.py` (cold CLI).
The stores are kept under BENCH_WORK for the latency benchmarks. Results: bench/out/ingest-<backend>.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, SIZES, child_env, corpus_dir, load, make_embedder, save, settings_for, store_dir

CHANGED_PAGE = "guide-00007.md"


class TimedEmbedder:
    """Wraps an Embedder to time the model's share of an ingest."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.seconds = 0.0
        self.chunks = 0

    def encode(self, texts, progress: bool = False):
        started = time.perf_counter()
        vectors = self.embedder.encode(texts, progress)
        self.seconds += time.perf_counter() - started
        self.chunks += len(texts)
        return vectors


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _du_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def _toggle(page: Path, round_no: int) -> None:
    """One realistic edit: a bullet added to (or taken from) the page's last list."""
    text = page.read_text()
    marker = "\n- Bring your latest reports to the review visit"
    if marker in text:
        page.write_text(text[: text.index(marker)] + "\n")
    else:
        page.write_text(text.rstrip("\n") + f"{marker} (edit {round_no}).\n")


def worker_full(args: argparse.Namespace) -> dict:
    from chatbot.indexing import ingest

    settings = settings_for(Path(args.content), Path(args.store))
    shutil.rmtree(settings.store_dir, ignore_errors=True)
    holder: dict = {}

    def get_embedder():
        started = time.perf_counter()
        holder["embedder"] = TimedEmbedder(make_embedder(args.backend, batch_size=args.batch_size))
        holder["load_s"] = time.perf_counter() - started
        return holder["embedder"]

    started, cpu = time.perf_counter(), _cpu_s()
    report = ingest(settings, get_embedder)
    total = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    peak = _peak_rss_mb()
    started = time.perf_counter()
    noop = ingest(settings, get_embedder)
    noop_s = time.perf_counter() - started
    timed = holder["embedder"]
    pages = sum(len(getattr(report, k)) for k in ("added", "changed", "unchanged"))
    return {
        "pages": pages,
        "chunks": report.total,
        "seconds": round(total, 2),
        "cpu_s": round(cpu, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "model_load_s": round(holder["load_s"], 2),
        "embed_s": round(timed.seconds, 2),
        "other_s": round(total - timed.seconds - holder["load_s"], 2),
        "chunks_per_s": round(report.total / total, 1),
        "embed_chunks_per_s": round(timed.chunks / max(timed.seconds, 1e-9), 1),
        "peak_rss_mb": peak,
        "noop_reingest_s": round(noop_s, 2),
        "noop_changed_anything": bool(noop.written or noop.deleted),
        "store_mb": _du_mb(settings.store_dir),
    }


def worker_incremental(args: argparse.Namespace) -> dict:
    from chatbot.indexing import ingest

    settings = settings_for(Path(args.content), Path(args.store))
    embedder = make_embedder(args.backend, batch_size=args.batch_size)
    page = Path(args.content) / CHANGED_PAGE
    warm, cpu, written = [], [], []
    for round_no in range(args.rounds):
        _toggle(page, round_no)
        started, cpu0 = time.perf_counter(), _cpu_s()
        report = ingest(settings, lambda: embedder)
        warm.append(round(time.perf_counter() - started, 3))
        cpu.append(round(_cpu_s() - cpu0, 3))
        written.append(report.written)
    _toggle(page, 99)
    profiler = cProfile.Profile()
    profiler.enable()
    started = time.perf_counter()
    ingest(settings, lambda: embedder)
    profiled_s = time.perf_counter() - started
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    return {
        "warm_s": warm,
        "warm_cpu_s": cpu,
        "chunks_written": written,
        "profiled_s": round(profiled_s, 3),
        "profile": text.getvalue()[-6000:],
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_worker(kind: str, size: str, args: argparse.Namespace) -> dict:
    cmd = [
        PYTHON,
        "-m",
        "bench.ingest",
        "--worker",
        kind,
        "--content",
        str(corpus_dir(size)),
        "--store",
        str(store_dir(size, args.backend)),
        "--backend",
        args.backend,
        "--batch-size",
        str(args.batch_size),
        "--rounds",
        str(args.rounds),
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} ingest of {size} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 2)
    return result


def _cli_once(size: str, args: argparse.Namespace) -> dict:
    """One changed page through the real command line: a new process that loads the model first."""
    content = corpus_dir(size)
    _toggle(content / CHANGED_PAGE, 7)
    cmd = [PYTHON, "ingest.py", str(content), "--store", str(store_dir(size, args.backend)), "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=ROOT, env=child_env(CHATBOT_EMBED_BACKEND=args.backend), capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ingest.py failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "ingest_s": report["seconds"], "written": report["chunks"]["written"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true", help="reuse the stores left by an earlier run")
    parser.add_argument("--worker", choices=("full", "incremental"), help=argparse.SUPPRESS)
    parser.add_argument("--content", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker_full(args) if args.worker == "full" else worker_incremental(args)
        print(json.dumps(result))
        return 0
    name = f"ingest-{args.backend}" + ("" if args.batch_size == 16 else f"-bs{args.batch_size}")
    results = (load(name) or {}).get("sizes", {})
    for size in args.sizes.split(","):
        entry = results.get(size, {})
        if not args.skip_full or "full" not in entry:
            print(f"[{size}] full ingest ({args.backend}) ...", file=sys.stderr, flush=True)
            entry["full"] = _run_worker("full", size, args)
            print(f"[{size}] {json.dumps(entry['full'])}", file=sys.stderr, flush=True)
        if size != "real":
            print(f"[{size}] incremental ...", file=sys.stderr, flush=True)
            entry["incremental"] = _run_worker("incremental", size, args)
            entry["incremental"]["cli"] = _cli_once(size, args)
            inc = {k: v for k, v in entry["incremental"].items() if k != "profile"}
            print(f"[{size}] {json.dumps(inc)}", file=sys.stderr, flush=True)
        results[size] = entry
        save(name, {"backend": args.backend, "batch_size": args.batch_size, "sizes": results})
    plot()
    return 0


def plot() -> None:
    from bench.common import pyplot, save_plot

    runs = {b: load(f"ingest-{b}") for b in ("torch", "onnx")}
    runs = {b: r for b, r in runs.items() if r}
    if not runs:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    width = 0.8 / len(runs)
    for j, (backend, run) in enumerate(runs.items()):
        sizes = [s for s in SIZES if s in run["sizes"] and "full" in run["sizes"][s]]
        xs = [SIZES.index(s) + j * width for s in sizes]
        full = [run["sizes"][s]["full"] for s in sizes]
        cpu_ms = [1000 * f["cpu_s"] / f["chunks"] if f.get("cpu_s") else 0 for f in full]
        axes[0].bar(xs, cpu_ms, width, label=backend)
        for x, f, y in zip(xs, full, cpu_ms, strict=True):
            axes[0].annotate(
                f"{f['chunks_per_s']}/s\nload {f.get('load_avg_1m', '?')}", (x, y), ha="center", va="bottom", fontsize=7
            )
        axes[1].bar(xs, [f["peak_rss_mb"] for f in full], width, label=backend)
        inc_sizes = [s for s in sizes if "incremental" in run["sizes"][s]]
        incs = [
            sorted(run["sizes"][s]["incremental"]["warm_s"])[len(run["sizes"][s]["incremental"]["warm_s"]) // 2]
            for s in inc_sizes
        ]
        axes[2].bar([SIZES.index(s) + j * width for s in inc_sizes], incs, width, label=f"{backend} (model loaded)")
        clis = [run["sizes"][s]["incremental"]["cli"]["wall_s"] for s in inc_sizes]
        axes[2].plot(
            [SIZES.index(s) + j * width for s in inc_sizes],
            clis,
            "x",
            markersize=9,
            label=f"{backend}: python ingest.py",
        )
    labels = ["real (8 pages)", "1,000 pages", "10,000 pages"]
    for ax, title in zip(
        axes, ("full ingest, CPU ms/chunk", "full ingest, peak RSS (MB)", "one changed page, seconds"), strict=True
    ):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(3)], labels)
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[2].axhline(5, color="red", linestyle="--", linewidth=1)
    save_plot(fig, "ingest")


if __name__ == "__main__":
    sys.exit(main())
