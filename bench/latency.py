"""Question latency per corpus size: p50/p95 of each phase (embed, triage, retrieve, compose) and end to end,
and its ratio to one query-embedding forward pass measured in the same run.

    python -m bench.latency [--sizes real,1000,10000] [--backend onnx|torch] [--rounds 5]
                            [--profile 10000] [--store-backend torch]

Every round asks the fixed list of patient questions (bench/common.py) with the query and typo caches
cleared first, as if every question were new; before each question, the same question's forward pass alone
is timed, so background load hits both alike. The stores are those left by `python -m bench.ingest`
(built here if missing). Results: bench/out/latency-<backend>.json, docs/img/latency.png;
`--profile SIZE` writes a cProfile of one round to bench/out/profile-ask-<size>-<backend>.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

from bench.common import QUESTIONS, SIZES, ensure_store, load, make_embedder, save, stats

PHASES = ("embed", "triage", "retrieve", "compose")


def clear_caches(engine) -> None:
    engine.embedder._query.cache_clear()
    index = engine.index.get()
    fix = getattr(index.lexical, "_fix", None)
    if fix is not None and hasattr(fix, "cache_clear"):
        fix.cache_clear()


def measure(engine, rounds: int, questions: list[str] = QUESTIONS) -> dict:
    """Per-question forward pass and ask(), interleaved; returns the statistics and the mode mix."""
    embedder = engine.embedder
    for q in questions:  # warm-up: first calls pay one-off costs (HNSW load, BM25 arrays, caches)
        engine.ask(q)
    forward, total, wall, cpu = [], [], [], []
    answered_total = []
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    modes: dict[str, int] = {}
    for _ in range(rounds):
        clear_caches(engine)
        for q in questions:
            started = time.perf_counter()
            embedder._encode_one(q)  # uncached: the cost of one forward pass for this very question
            forward.append((time.perf_counter() - started) * 1000)
            started, cpu0 = time.perf_counter(), time.process_time()
            answer = engine.ask(q)
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu0) * 1000)
            total.append(answer.latency_ms)
            modes[answer.mode] = modes.get(answer.mode, 0) + 1
            if answer.mode != "triage":
                answered_total.append(answer.latency_ms)
                for phase in PHASES:
                    phases[phase].append(answer.timings_ms.get(phase, 0.0))
    fwd = stats(forward)
    end_to_end = stats(wall)
    return {
        "questions": len(questions),
        "rounds": rounds,
        "forward_pass_ms": fwd,
        "ask_wall_ms": end_to_end,
        "ask_cpu_ms": stats(cpu),
        "ask_timings_total_ms": stats(total),
        "answered_total_ms": stats(answered_total),
        "phases_ms": {p: stats(v) for p, v in phases.items()},
        "ratio_p50_to_forward": round(end_to_end["p50"] / fwd["p50"], 2),
        "ratio_p95_to_forward_p50": round(end_to_end["p95"] / fwd["p50"], 2),
        "modes": modes,
    }


def profile_round(engine, name: str) -> None:
    clear_caches(engine)
    profiler = cProfile.Profile()
    profiler.enable()
    for q in QUESTIONS:
        engine.ask(q)
    profiler.disable()
    text = io.StringIO()
    stats_ = pstats.Stats(profiler, stream=text)
    stats_.sort_stats("cumulative").print_stats(40)
    stats_.sort_stats("tottime").print_stats(25)
    save(name, {"profile": text.getvalue()})  # JSON, like every result in bench/out/ (git-ignored)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", help="also profile one round at this size")
    parser.add_argument(
        "--store-backend", help="use the stores built with this backend (the vectors of both agree to 1e-6)"
    )
    args = parser.parse_args(argv)
    from chatbot.answer import Engine

    embedder = make_embedder(args.backend)
    name = f"latency-{args.backend}"
    results = (load(name) or {}).get("sizes", {})
    for size in args.sizes.split(","):
        settings = ensure_store(size, args.store_backend or args.backend, embedder)
        started = time.perf_counter()
        engine = Engine(settings, embedder, pointer="staging")
        index = engine.index.get()
        open_s = time.perf_counter() - started
        print(f"[{size}] {len(index)} chunks, index opened in {open_s:.2f} s", file=sys.stderr, flush=True)
        result = measure(engine, args.rounds)
        result.update(chunks=len(index), index_open_s=round(open_s, 2))
        results[size] = result
        print(
            f"[{size}] p50 {result['ask_wall_ms']['p50']} ms, p95 {result['ask_wall_ms']['p95']} ms, "
            f"forward {result['forward_pass_ms']['p50']} ms, ratio {result['ratio_p50_to_forward']}",
            file=sys.stderr,
            flush=True,
        )
        if args.profile == size:
            profile_round(engine, f"profile-ask-{size}-{args.backend}")
        del engine, index
    if "real" in results:
        for result in results.values():
            result["p50_vs_real"] = round(result["ask_wall_ms"]["p50"] / results["real"]["ask_wall_ms"]["p50"], 2)
    save(name, {"backend": args.backend, "sizes": results})
    plot()
    return 0


def plot() -> None:
    from bench.common import pyplot, save_plot

    runs = {b: load(f"latency-{b}") for b in ("torch", "onnx")}
    server = load("chroma-server")
    runs = {b: r for b, r in runs.items() if r}
    if not runs:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    labels = {"real": "real", "1000": "1,000 p.", "10000": "10,000 p."}
    bars = []
    for backend, run in runs.items():
        for size in SIZES:
            if size in run["sizes"]:
                bars.append((f"{labels[size]}\n{backend}", run["sizes"][size]))
    if server:
        for size in SIZES:
            if size in server.get("server", {}):
                bars.append((f"{labels[size]}\nserver", server["server"][size]))
    bottom = [0.0] * len(bars)
    xs = range(len(bars))
    for phase in PHASES:
        ys = [r["phases_ms"][phase]["p50"] for _, r in bars]
        axes[0].bar(xs, ys, bottom=bottom, label=phase)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    axes[0].plot(
        xs, [r["forward_pass_ms"]["p50"] for _, r in bars], "k_", markersize=22, mew=2, label="one forward pass"
    )
    axes[0].set_xticks(list(xs), [n for n, _ in bars], fontsize=7)
    axes[0].set_title("answered questions: p50 per phase (ms)")
    axes[0].legend(fontsize=7)
    axes[1].bar([x - 0.2 for x in xs], [r["ask_wall_ms"]["p50"] for _, r in bars], 0.4, label="p50")
    axes[1].bar([x + 0.2 for x in xs], [r["ask_wall_ms"]["p95"] for _, r in bars], 0.4, label="p95")
    axes[1].set_xticks(list(xs), [n for n, _ in bars], fontsize=7)
    axes[1].set_title("all questions end to end (ms)")
    axes[1].legend(fontsize=7)
    save_plot(fig, "latency")


if __name__ == "__main__":
    sys.exit(main())
