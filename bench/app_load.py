"""App throughput: N concurrent chat clients on loopback against the real app (`python app.py`).

    python -m bench.app_load [--clients 1,10,50] [--per-client 8] [--size real] [--backend onnx|torch]

Starts app.py on a free loopback port with its own data dir (default settings otherwise: queue size,
concurrency, rate limit), makes N `gradio_client.Client`s (one session each), starts them together and has
each ask `--per-client` patient questions in turn via api_name="/chat". Counts answers per second, latency
p50/p95 as a client sees it, and errors (exceptions, "unavailable" or "rate limited" notices, empty
replies). All traffic stays on 127.0.0.1 and the run is bounded in count and time.
Results: bench/out/app-load.json, docs/img/app_load.png.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    PYTHON,
    QUESTIONS,
    ROOT,
    WORK,
    child_env,
    ensure_store,
    free_port,
    pyplot,
    save,
    save_plot,
    stats,
    stop_process,
    wait_port,
)

NOTICES = ("temporarily unavailable", "questions in the last minute", "very busy right now")


def start_app(store, port: int, backend: str) -> subprocess.Popen:
    data = WORK / "var-app"
    data.mkdir(parents=True, exist_ok=True)
    env = child_env(
        CHATBOT_HOST="127.0.0.1",
        CHATBOT_PORT=str(port),
        CHATBOT_STORE_DIR=str(store),
        CHATBOT_DATA_DIR=str(data),
        CHATBOT_EMBED_BACKEND=backend,
        GRADIO_ANALYTICS_ENABLED="False",
    )
    env.pop("CHATBOT_STAFF_USERS", None)
    env.pop("CHROMA_HOST", None)
    log = open(WORK / "app.log", "w")  # noqa: SIM115 - lives as long as the app
    return subprocess.Popen([PYTHON, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def is_error(text) -> bool:
    if not isinstance(text, str) or not text.strip():
        return True
    lowered = text.lower()
    return any(n in lowered for n in NOTICES)


def run_level(url: str, n: int, per_client: int, timeout_s: float) -> dict:
    from gradio_client import Client

    with ThreadPoolExecutor(min(n, 16)) as pool:  # connect first, untimed
        clients = list(pool.map(lambda _: Client(url, verbose=False, analytics_enabled=False), range(n)))
    barrier = threading.Barrier(n)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s

    def work(i: int) -> None:
        client = clients[i]
        barrier.wait()
        for j in range(per_client):
            if time.monotonic() > deadline:
                with lock:
                    errors.append("timeout: run deadline reached")
                return
            question = QUESTIONS[(i * 7 + j) % len(QUESTIONS)]
            started = time.perf_counter()
            try:
                text = client.predict(question, api_name="/chat")
                failed = is_error(text)
                why = f"notice: {str(text)[:80]}" if failed else ""
            except Exception as exc:  # noqa: BLE001 - every failure is a counted error
                failed, why = True, f"{exc.__class__.__name__}: {str(exc)[:80]}"
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if failed:
                    errors.append(why)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for client in clients:
        with contextlib.suppress(Exception):  # closing is best effort
            client.close()
    answered = len(latencies) - len(errors)
    return {
        "clients": n,
        "requests": len(latencies),
        "answered": answered,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "wall_s": round(wall, 2),
        "answers_per_s": round(answered / wall, 2),
        "latency_ms": stats(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--size", default="real")
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    parser.add_argument("--timeout", type=float, default=300, help="per level, seconds")
    args = parser.parse_args(argv)
    if not (ROOT / "app.py").exists():
        print("app.py is not there yet", file=sys.stderr)
        return 1
    import psutil

    settings = ensure_store(args.size, args.backend)
    port = free_port()
    started = time.perf_counter()
    proc = start_app(settings.store_dir, port, args.backend)
    levels = []
    try:
        if not wait_port(port, 300, proc):
            raise RuntimeError(f"app.py did not start; see {WORK / 'app.log'}")
        ready_s = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}/"
        server = psutil.Process(proc.pid)
        run_level(url, 1, 2, 60)  # warm-up
        for n in (int(x) for x in args.clients.split(",")):
            cpu0 = sum(server.cpu_times()[:2])
            level = run_level(url, n, args.per_client, args.timeout)
            level["server_cpu_s"] = round(sum(server.cpu_times()[:2]) - cpu0, 2)
            level["server_rss_mb"] = round(server.memory_info().rss / 2**20, 1)
            levels.append(level)
            print(
                f"N={n}: {level['answers_per_s']} answers/s, p50 {level['latency_ms']['p50']} ms, "
                f"p95 {level['latency_ms']['p95']} ms, errors {level['errors']}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        stop_process(proc, 15)
    save(
        "app-load",
        {
            "size": args.size,
            "backend": args.backend,
            "per_client": args.per_client,
            "app_ready_s": round(ready_s, 2),
            "settings": {
                "concurrency": settings.concurrency,
                "queue_size": settings.queue_size,
                "rate_limit_per_minute": settings.rate_limit_per_minute,
            },
            "client_pid_cpus": os.cpu_count(),
            "levels": levels,
        },
    )
    plot(levels)
    return 0


def plot(levels: list[dict]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ns = [str(lv["clients"]) for lv in levels]
    axes[0].bar(ns, [lv["answers_per_s"] for lv in levels])
    axes[0].set_xlabel("concurrent clients")
    axes[0].set_title("answers per second")
    axes[1].bar([i - 0.2 for i in range(len(ns))], [lv["latency_ms"]["p50"] for lv in levels], 0.4, label="p50")
    axes[1].bar([i + 0.2 for i in range(len(ns))], [lv["latency_ms"]["p95"] for lv in levels], 0.4, label="p95")
    axes[1].set_xticks(range(len(ns)), ns)
    axes[1].set_xlabel("concurrent clients")
    axes[1].set_title("latency seen by a client (ms)")
    axes[1].legend()
    for i, lv in enumerate(levels):
        axes[0].annotate(f"{lv['errors']} errors", (i, lv["answers_per_s"]), ha="center", va="bottom", fontsize=8)
    save_plot(fig, "app_load")


if __name__ == "__main__":
    sys.exit(main())
