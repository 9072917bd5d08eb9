"""Cold start to first answer, and process memory at rest.

    python -m bench.coldstart [--repeats 3] [--backends torch,onnx] [--size real]

- Command line: `python -m chatbot ask QUESTION --json` in a new process, wall time (the store is built).
- In-process phases, in a new process per repeat: interpreter start, imports, model load, index open,
  first answer, a second (warm) answer; then RSS at rest and peak RSS.
Results: bench/out/coldstart.json, docs/img/coldstart.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench.common import PYTHON, ROOT, child_env, ensure_store, save

QUESTION = "How long does SMP last?"
PHASES = ("interpreter", "imports", "model_load", "index_open", "first_answer")


def worker(backend: str, size: str) -> dict:
    import psutil

    start = psutil.Process().create_time()
    marks = {"interpreter": time.time() - start}
    t = time.perf_counter()
    from bench.common import make_embedder  # noqa: F401 - part of what a real start imports
    from chatbot.answer import Engine

    marks["imports"] = time.perf_counter() - t
    t = time.perf_counter()
    embedder = make_embedder(backend)
    marks["model_load"] = time.perf_counter() - t
    t = time.perf_counter()
    settings = ensure_store(size, backend, embedder)
    engine = Engine(settings, embedder, pointer="staging")
    engine.index.get()
    marks["index_open"] = time.perf_counter() - t
    t = time.perf_counter()
    first = engine.ask(QUESTION)
    marks["first_answer"] = time.perf_counter() - t
    t = time.perf_counter()
    engine.ask("What should I do after the procedure?")
    marks["second_answer"] = time.perf_counter() - t
    import gc
    import resource

    gc.collect()
    return {
        **{k: round(v, 3) for k, v in marks.items()},
        "to_first_answer_s": round(time.time() - start, 3),
        "rss_at_rest_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_imported": "torch" in sys.modules,
        "first_mode": first.mode,
    }


def cli_once(backend: str, size: str) -> float:
    from bench.common import store_dir

    cmd = [PYTHON, "-m", "chatbot", "ask", QUESTION, "--json", "--store", str(store_dir(size, backend))]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(CHATBOT_EMBED_BACKEND=backend), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    json.loads(done.stdout)
    return round(wall, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--size", default="real")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.size)))
        return 0
    backends = args.backends.split(",")
    for backend in backends:
        ensure_store(args.size, backend)
    runs: dict[str, list[dict]] = {b: [] for b in backends}
    cli: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(args.repeats):  # interleaved
        for backend in backends:
            cmd = [PYTHON, "-m", "bench.coldstart", "--worker", backend, "--size", args.size]
            done = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            runs[backend].append(json.loads(done.stdout.strip().splitlines()[-1]))
            cli[backend].append(cli_once(backend, args.size))
    result: dict = {"size": args.size, "repeats": args.repeats, "backends": {}}
    for backend in backends:
        keys = [k for k, v in runs[backend][0].items() if isinstance(v, float | int) and not isinstance(v, bool)]
        result["backends"][backend] = {
            "median": {k: round(statistics.median(r[k] for r in runs[backend]), 3) for k in keys},
            "torch_imported": runs[backend][0]["torch_imported"],
            "cli_ask_wall_s": {"p50": statistics.median(cli[backend]), "all": cli[backend]},
            "runs": runs[backend],
        }
        print(backend, json.dumps(result["backends"][backend]["median"]), file=sys.stderr)
    result["note"] = "`python -m chatbot ask` builds its Embedder from settings; see docs/benchmarks.md"
    save("coldstart", result)
    plot(result)
    return 0


def plot(result: dict) -> None:
    from bench.common import pyplot, save_plot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    names = list(result["backends"])
    left = [0.0] * len(names)
    for phase in PHASES:
        widths = [result["backends"][b]["median"][phase] for b in names]
        axes[0].barh(names, widths, left=left, label=phase)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    axes[0].set_xlabel("seconds from process start (median)")
    axes[0].set_title("cold start to first answer")
    axes[0].legend(fontsize=7)
    axes[1].bar(names, [result["backends"][b]["median"]["rss_at_rest_mb"] for b in names], label="at rest")
    axes[1].set_ylabel("MB")
    axes[1].set_title("process memory (RSS) at rest")
    save_plot(fig, "coldstart")


if __name__ == "__main__":
    sys.exit(main())
