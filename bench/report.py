"""Print the Markdown tables of docs/benchmarks.md from the JSON results in bench/out/.

python -m bench.report > /tmp/tables.md
"""

from __future__ import annotations

import statistics
import sys

from bench.common import SIZES, load

LABEL = {"real": "real content/", "1000": "1,000 pages", "10000": "10,000 pages"}


def _f(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def _median(values) -> float | None:
    return statistics.median(values) if values else None


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def scale_table(backend: str = "torch") -> str:
    ingest = (load(f"ingest-{backend}") or {}).get("sizes", {})
    latency = (load(f"latency-{backend}") or {}).get("sizes", {})
    head = [
        "corpus",
        "pages",
        "chunks",
        "full ingest (CPU s; load avg)",
        "chunks/s",
        "peak RSS",
        "1 changed page, model loaded (CPU s)",
        "1 changed page (`ingest.py`)",
        "question p50 / p95",
        "p50 ÷ forward pass",
        "p50 ÷ p50 real",
    ]
    rows = []
    for size in SIZES:
        full = ingest.get(size, {}).get("full", {})
        inc = ingest.get(size, {}).get("incremental", {})
        lat = latency.get(size, {})
        wall = lat.get("ask_wall_ms", {})
        rows.append(
            [
                LABEL[size],
                _f(full.get("pages"), 0),
                _f(full.get("chunks") or lat.get("chunks"), 0),
                f"{_f(full.get('seconds'), 0, ' s')} ({_f(full.get('cpu_s'), 0)}; {_f(full.get('load_avg_1m'), 1)})"
                if full
                else "–",
                _f(full.get("chunks_per_s"), 1),
                _f(full.get("peak_rss_mb"), 0, " MB"),
                f"{_f(_median(inc.get('warm_s')), 1, ' s')} ({_f(_median(inc.get('warm_cpu_s')), 1)})" if inc else "–",
                _f(inc.get("cli", {}).get("wall_s"), 1, " s") if inc else "–",
                f"{_f(wall.get('p50'), 1)} / {_f(wall.get('p95'), 1)} ms" if wall else "–",
                _f(lat.get("ratio_p50_to_forward"), 2, "×"),
                _f(lat.get("p50_vs_real"), 2, "×"),
            ]
        )
    return table(head, rows)


def phase_table(backend: str = "torch") -> str:
    latency = (load(f"latency-{backend}") or {}).get("sizes", {})
    head = [
        "corpus",
        "forward pass p50",
        "embed p50",
        "triage p50",
        "retrieve p50 / p95",
        "compose p50",
        "answered p50 / p95",
        "all questions p50 / p95",
        "index open",
    ]
    rows = []
    for size in SIZES:
        lat = latency.get(size)
        if not lat:
            continue
        ph = lat["phases_ms"]
        rows.append(
            [
                LABEL[size],
                _f(lat["forward_pass_ms"]["p50"], 1, " ms"),
                _f(ph["embed"]["p50"], 1, " ms"),
                _f(ph["triage"]["p50"], 1, " ms"),
                f"{_f(ph['retrieve']['p50'], 1)} / {_f(ph['retrieve']['p95'], 1)} ms",
                _f(ph["compose"]["p50"], 1, " ms"),
                f"{_f(lat['answered_total_ms']['p50'], 1)} / {_f(lat['answered_total_ms']['p95'], 1)} ms",
                f"{_f(lat['ask_wall_ms']['p50'], 1)} / {_f(lat['ask_wall_ms']['p95'], 1)} ms",
                _f(lat.get("index_open_s"), 2, " s"),
            ]
        )
    return table(head, rows)


def backend_table() -> str:
    emb = load("embedding") or {}
    cold = (load("coldstart") or {}).get("backends", {})
    cps, cpu, fwd = emb.get("chunks_per_s", {}), emb.get("cpu_ms_per_chunk", {}), emb.get("query_forward_ms_p50", {})
    head = [
        "backend",
        "chunks/s batch 16: 1 thread / 2 threads / 2 side by side",
        "chunks/s batch 64, 2 threads",
        "CPU ms per chunk, batch 16, 1 thread",
        "forward pass p50: 1 thread / 2 threads",
        "question p50 (real)",
        "cold start to 1st answer",
        "RSS at rest",
    ]
    rows = []
    for backend in ("torch", "onnx"):
        lat = (load(f"latency-{backend}") or {}).get("sizes", {}).get("real", {})
        med = cold.get(backend, {}).get("median", {})
        side = _f(cps.get(f"{backend}/bs16/t0"), 1) if backend == "onnx" else "–"
        rows.append(
            [
                backend,
                f"{_f(cps.get(f'{backend}/bs16/t1'), 1)} / {_f(cps.get(f'{backend}/bs16/t2'), 1)} / {side}",
                _f(cps.get(f"{backend}/bs64/t2"), 1),
                _f(cpu.get(f"{backend}/bs16/t1"), 1),
                f"{_f(fwd.get(f'{backend}/1'), 1)} / {_f(fwd.get(f'{backend}/2'), 1)} ms",
                _f(lat.get("ask_wall_ms", {}).get("p50"), 1, " ms"),
                _f(med.get("to_first_answer_s"), 1, " s"),
                _f(med.get("rss_at_rest_mb"), 0, " MB"),
            ]
        )
    load_avg = emb.get("machine", {}).get("load_avg_1m")
    return table(head, rows) + f"\n\n(`bench/embedding.py` run at load average {load_avg}.)"


def server_table() -> str:
    data = load("chroma-server") or {}
    head = [
        "corpus",
        "embedded p50 / p95",
        "server p50 / p95",
        "retrieve p50 embedded → server",
        "server ÷ embedded",
        "server setup",
    ]
    rows = []
    for size in SIZES:
        e, s = data.get("embedded", {}).get(size), data.get("server", {}).get(size)
        if not (e and s):
            continue
        setup = data.get("setup", {}).get(size, {})
        how = (
            f"full ingest {setup['full_ingest_s']} s"
            if "full_ingest_s" in setup
            else f"vectors copied {setup.get('seed_copy_s', '–')} s"
        )
        rows.append(
            [
                LABEL[size],
                f"{_f(e['ask_wall_ms']['p50'])} / {_f(e['ask_wall_ms']['p95'])} ms",
                f"{_f(s['ask_wall_ms']['p50'])} / {_f(s['ask_wall_ms']['p95'])} ms",
                f"{_f(e['phases_ms']['retrieve']['p50'])} → {_f(s['phases_ms']['retrieve']['p50'])} ms",
                _f(s.get("p50_vs_embedded"), 2, "×"),
                how,
            ]
        )
    out = table(head, rows)
    for size, inc in data.get("incremental", {}).items():
        out += (
            f"\n\nOne changed page at {LABEL[size]}: {inc['embedded_s']} s embedded, {inc['server_s']} s with "
            "the Chroma server (model loaded)."
        )
    return out


def app_table() -> str:
    data = load("app-load") or {}
    head = ["clients", "requests", "errors", "answers/s", "p50", "p95", "app CPU s", "app RSS"]
    rows = [
        [
            str(lv["clients"]),
            str(lv["requests"]),
            str(lv["errors"]),
            _f(lv["answers_per_s"], 1),
            _f(lv["latency_ms"]["p50"], 0, " ms"),
            _f(lv["latency_ms"]["p95"], 0, " ms"),
            _f(lv.get("server_cpu_s")),
            _f(lv.get("server_rss_mb"), 0, " MB"),
        ]
        for lv in data.get("levels", [])
    ]
    return table(head, rows)


def main() -> int:
    for title, fn in (
        ("Scale (onnx, default)", lambda: scale_table("onnx")),
        ("Phases (onnx)", lambda: phase_table("onnx")),
        ("Scale (torch)", scale_table),
        ("Phases (torch)", phase_table),
        ("Backends", backend_table),
        ("Chroma server", server_table),
        ("App", app_table),
    ):
        print(f"### {title}\n\n{fn()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
