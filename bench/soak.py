"""Load and soak: N concurrent patient conversations against `python app.py` on loopback, for a bounded time,
with the app's memory (RSS) sampled every few seconds.

    python -m bench.soak                             # the 10-minute soak: 10 sessions, RSS every 10 s
    python -m bench.soak --sessions 50 --seconds 60  # the load run: 50 sessions for 60 s
    python -m bench.soak --url http://127.0.0.1:7860/ --seconds 60   # against an app that is already running
    python -m bench.soak --trace /tmp/soak-trace     # and what grows: object counts at 1/3, 2/3 and the end

Each session is what one browser tab does: its own `session_hash`, so its own server-side conversation state,
driving the chat's streaming UI event (the one the page uses; it carries the history) over Gradio's queue
protocol with plain HTTP. A conversation is a first question and a follow-up ("how long does it take?",
"is that painful?") that is answered from that session's own history; every answer must equal the one the same
conversation got when asked alone at the start (sequential baseline) and contain the conversation's fact, so
an answer or a history crossing between sessions counts as an error. Each conversation starts a new session
(a page reload), so the per-session rate limit is never what is measured.

Memory: RSS every --every seconds, the growth, and the least-squares slope (MB/min) of the first and the second
half of the run (and the last quarter); memory that plateaus has a slope near zero late in the run. With
--trace DIR, app.py runs inside a small bootstrap that acts only on signals from this script (nothing new on the
network, no overhead in between): SIGUSR1, at a third, two thirds and the end of the run, appends to
DIR/memory.jsonl the RSS, the change in live Python objects per type since the first and the previous dump, and
the sizes of Gradio's per-session and per-event bookkeeping; at the end SIGUSR2 runs glibc's malloc_trim and
records RSS before and after (what it gives back was free memory kept by malloc, not live data). `tracemalloc`
was tried for this and left out: it slowed the app about 50-fold under this load (11 -> 0.2 answers/s), so a
run could not get past Gradio's 1,000-session store in bounded time.

Results: a table on stdout and bench/out/soak.json (or --out). Traffic stays on 127.0.0.1; the run is bounded
by --seconds (and every request by a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import (
    CONTENT,
    OUT,
    PYTHON,
    ROOT,
    WORK,
    child_env,
    free_port,
    machine,
    percentile,
    stop_process,
    wait_port,
)
from chatbot.settings import Settings

# (first question, follow-up that only makes sense with the first, a fact only the history-aware answer has)
CONVERSATIONS = [
    ("Can I go to the gym after SMP?", "how long does it take?", "24 hours"),
    ("Will the SMP colour fade?", "how long does it take?", "retouch"),
    ("Can women get SMP?", "how long does it take?", "Female pattern baldness"),
    ("Can women get SMP?", "is that painful?", "Female pattern baldness"),
    ("Will the SMP colour fade?", "is that painful?", "retouch"),
    ("What does the cost depend on?", "is that painful?", "depends on a few factors"),
    ("Can I go to the gym after SMP?", "is that painful?", "headband"),
    ("Does SMP hurt?", "and after that?", "48 hours"),
    ("Can women get SMP?", "is it safe?", "Female pattern baldness"),
]
REQUEST_TIMEOUT_S = 120.0


class ChatError(RuntimeError):
    """A turn that did not end in an answer (HTTP error, queue full, failed event, timeout)."""

    def __init__(self, message: str, status: int | None = None, body: str = "", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body = body
        self.headers = headers or {}


def chat_fn_index(config: dict) -> int:
    """The id of the event the page fires when a patient presses Enter in the question box."""
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    for dep in config["dependencies"]:
        triggers = [t[1] for t in dep["targets"]]
        if "submit" in triggers and [elem.get(i) for i in dep["inputs"]][:2] == ["question", "chat"]:
            return dep["id"]
    raise LookupError("the chat's submit event is not in the app config")


def apply_diff(value, diff: list):
    """Gradio's streaming diffs (sse_v3): [[action, path, value], ...] applied to the previous output."""
    from gradio_client.utils import apply_diff as gradio_apply_diff

    return gradio_apply_diff(value, diff)


def message_text(message: dict) -> str:
    """A chat message's text: Gradio 6 sends content as a list of parts ({"type": "text", "text": ...})."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return json.dumps(content)


@dataclass
class Turn:
    question: str
    answer: str  # the first assistant message of the turn (the answer, escaped Markdown), "" on error
    ms: float
    sources: int = 0  # collapsed source messages shown with the answer


@dataclass
class UiSession:
    """One browser tab: its own session hash, server-side state and chat messages."""

    client: httpx.AsyncClient
    fn_index: int
    session_hash: str = field(default_factory=lambda: secrets.token_hex(8))
    messages: list = field(default_factory=list)

    async def ask(self, question: str, timeout_s: float = REQUEST_TIMEOUT_S) -> Turn:
        started = time.perf_counter()
        try:
            outputs = await asyncio.wait_for(self._run(question), timeout_s)
        except TimeoutError:
            raise ChatError(f"no answer within {timeout_s:.0f} s") from None
        before = len(self.messages)
        self.messages = outputs[1]
        new = [m for m in self.messages[before:] if m.get("role") == "assistant"]
        if not new:
            raise ChatError(f"no assistant message (outputs: {json.dumps(outputs)[:200]})")
        answer = message_text(new[0])
        ms = (time.perf_counter() - started) * 1000
        return Turn(question, answer, ms, sum(1 for m in new[1:] if m.get("metadata")))

    async def _run(self, question: str) -> list:
        return await run_event(self.client, self.fn_index, [question, self.messages, None], self.session_hash)


async def run_event(client: httpx.AsyncClient, fn_index: int, data: list, session_hash: str) -> list:
    """What the page does for one event: join the queue, then read the session's event stream until the
    event completes. Returns the event's outputs (streamed updates applied)."""
    payload = {"data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None, "session_hash": session_hash}
    joined = await client.post("gradio_api/queue/join", json=payload)
    if joined.status_code != 200:
        status, text = joined.status_code, joined.text
        raise ChatError(f"queue/join {status}: {text[:160]}", status, text, dict(joined.headers))
    event_id = joined.json()["event_id"]
    outputs = None
    async with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        if stream.status_code != 200:
            raise ChatError(f"queue/data {stream.status_code}", stream.status_code)
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            kind = msg.get("msg")
            if kind == "close_stream":
                break
            if msg.get("event_id") not in (None, event_id):
                continue
            if kind == "process_generating":
                update = msg["output"]["data"]
                if outputs is None:
                    outputs = list(update)  # the first update is whole, the next ones are diffs
                else:
                    outputs = [apply_diff(o, d) for o, d in zip(outputs, update, strict=True)]
            elif kind == "process_completed":
                if not msg.get("success", False):
                    raise ChatError(f"event failed: {json.dumps(msg.get('output'))[:200]}")
                final = msg["output"].get("data")
                if final and outputs is None:
                    outputs = list(final)
                break
            elif kind in ("unexpected_error", "queue_full", "server_stopped"):
                raise ChatError(f"{kind}: {msg.get('message', '')[:160]}")
    if outputs is None:
        raise ChatError("the event ended without output")
    return outputs


async def fetch_config(client: httpx.AsyncClient) -> dict:
    response = await client.get("config")
    response.raise_for_status()
    return response.json()


async def baseline(url: str, conversations=CONVERSATIONS) -> list[tuple[str, str]]:
    """Each conversation alone, one after the other: the answers a concurrent run must reproduce."""
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        fn = chat_fn_index(await fetch_config(client))
        expected = []
        for first, follow_up, fact in conversations:
            session = UiSession(client, fn)
            one = await session.ask(first)
            two = await session.ask(follow_up)
            if fact not in two.answer:
                raise AssertionError(f"baseline: {fact!r} missing from the follow-up answer of {first!r}")
            expected.append((one.answer, two.answer))
        return expected


async def run_load(
    url: str,
    sessions: int,
    seconds: float,
    expected: list[tuple[str, str]],
    conversations=CONVERSATIONS,
    on_tick=None,
) -> dict:
    """`sessions` concurrent tabs, each running conversations back to back until `seconds` have passed.
    Every turn is checked against `expected` (answers of the same conversation asked alone)."""
    limits = httpx.Limits(max_connections=2 * sessions + 4, max_keepalive_connections=2 * sessions + 4)
    latencies: list[float] = []
    errors: list[str] = []
    crossings: list[str] = []
    conversations_done = 0
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        fn = chat_fn_index(await fetch_config(client))
        started = time.monotonic()
        deadline = started + seconds

        async def tab(i: int) -> None:
            nonlocal conversations_done
            k = i
            while time.monotonic() < deadline:
                n = k % len(conversations)
                first, follow_up, fact = conversations[n]
                session = UiSession(client, fn)  # a new conversation is a new page: its own session
                try:
                    for turn_no, question in enumerate((first, follow_up)):
                        turn = await session.ask(question)
                        latencies.append(turn.ms)
                        if turn.answer != expected[n][turn_no]:
                            crossings.append(f"session {i} conversation {n} turn {turn_no}: {turn.answer[:120]!r}")
                    if fact not in turn.answer:
                        crossings.append(f"session {i} conversation {n}: {fact!r} missing")
                    conversations_done += 1
                except (ChatError, httpx.HTTPError) as exc:
                    errors.append(f"session {i}: {exc.__class__.__name__}: {str(exc)[:160]}")
                k += sessions

        async def ticker() -> None:
            while on_tick and time.monotonic() < deadline:
                await asyncio.sleep(1)
                on_tick(time.monotonic() - started, len(latencies), len(errors))

        tasks = [asyncio.create_task(tab(i)) for i in range(sessions)]
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*tasks)
        tick.cancel()
        wall = time.monotonic() - started
    return {
        "sessions": sessions,
        "seconds": seconds,
        "wall_s": round(wall, 2),
        "answers": len(latencies),
        "conversations": conversations_done,
        "errors": len(errors),
        "crossings": len(crossings),
        "error_examples": sorted(set(errors))[:5],
        "crossing_examples": crossings[:5],
        "answers_per_s": round(len(latencies) / wall, 2) if wall else 0.0,
        "latency_ms": latency_stats(latencies),
    }


def latency_stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(statistics.median(values)),
        "p95": round(percentile(values, 95)),
        "max": round(max(values)),
    }


# ------------------------------------------------------------------ the app process and its memory


def ensure_store() -> Path:
    """A store of the real content/ of our own (under BENCH_WORK), built once."""
    from bench.common import settings_for
    from chatbot.store import VersionStore

    store = WORK / "store-soak"
    settings = settings_for(CONTENT, store)
    if VersionStore(settings).pointer("live") is None:
        from chatbot.embedding import Embedder
        from chatbot.lifecycle import stage_and_publish

        print(f"building {store} (through the safety gate) ...", file=sys.stderr, flush=True)
        embedder = Embedder()
        stage_and_publish(settings, lambda: embedder, "soak benchmark", publish_now=True)
    return store


# Runs app.py (argv: dump directory). On SIGUSR1 it writes a line to DIR/memory.jsonl: RSS, the number of live
# Python objects per type and its change since the first and the previous dump, and the sizes of Gradio's
# per-session and per-event bookkeeping. SIGUSR2 runs glibc's malloc_trim and records RSS before and after.
# Nothing runs between signals (no tracing overhead). Used only with --trace.
TRACE_BOOTSTRAP = r"""
import collections, ctypes, gc, json, os, runpy, signal, sys, time
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
kept = {}  # type counts at the first and at the previous dump


def rss_mb():
    return round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def log(row):
    with open(out / "memory.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def name(o):
    t = type(o)
    module, qualname = getattr(t, "__module__", None), getattr(t, "__qualname__", None)
    return f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else t.__name__


def gradio_sizes(objects):
    sizes = collections.Counter()
    for o in objects:
        name_ = name(o)
        if name_ == "gradio.state_holder.StateHolder":
            sizes["state_holder.session_data"] += len(o.session_data)
        elif name_ == "gradio.queueing.Queue":
            sizes["queue.pending_messages_per_session"] += len(o.pending_messages_per_session)
            sizes["queue.pending_event_ids_session"] += len(o.pending_event_ids_session)
            sizes["queue.event_ids_to_events"] += len(o.event_ids_to_events)
        elif name_ == "gradio.routes.App":
            sizes["app.iterators"] += len(o.iterators)
            sizes["app.iterators_to_reset"] += len(o.iterators_to_reset)
        elif name_ == "gradio.blocks.Blocks":
            sizes["blocks.pending_diff_streams"] += len(getattr(o, "pending_diff_streams", ()))
            sizes["blocks.pending_streams"] += len(getattr(o, "pending_streams", ()))
    return dict(sorted(sizes.items()))


def changes(now, then, n=12):
    diff = {k: now.get(k, 0) - then.get(k, 0) for k in set(now) | set(then)}
    return dict(sorted(((k, v) for k, v in diff.items() if v), key=lambda kv: -abs(kv[1]))[:n])


def dump(signum, frame):
    try:  # a signal handler's exception would surface in the app's event loop
        measure()
    except Exception as exc:
        log({"error": repr(exc)})


def measure():
    started = time.perf_counter()
    gc.collect()
    objects = gc.get_objects()
    counts = collections.Counter(name(o) for o in objects)
    first, prev = kept.setdefault("first", counts), kept.get("prev", counts)
    kept["prev"] = counts
    log({
        "rss_mb": rss_mb(),
        "objects": len(objects),
        "gradio": gradio_sizes(objects),
        "types_since_first": changes(counts, first),
        "types_since_previous": changes(counts, prev),
        "dump_s": round(time.perf_counter() - started, 1),
    })
    del objects


def trim(signum, frame):
    before = rss_mb()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    log({"malloc_trim": True, "rss_before_mb": before, "rss_after_mb": rss_mb()})


signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGUSR2, trim)
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
"""


def start_app(port: int, trace: Path | None = None) -> subprocess.Popen:
    data = WORK / "var-soak"
    data.mkdir(parents=True, exist_ok=True)
    env = child_env(
        CHATBOT_HOST="127.0.0.1",
        CHATBOT_PORT=str(port),
        CHATBOT_STORE_DIR=str(ensure_store()),
        CHATBOT_DATA_DIR=str(data),
        CHATBOT_CONTENT_DIR=str(CONTENT),
    )
    for name in ("CHATBOT_STAFF_USERS", "CHROMA_HOST", "CHATBOT_LLM"):
        env.pop(name, None)
    log = open(WORK / "app-soak.log", "w")  # noqa: SIM115 - lives as long as the app
    command = [PYTHON, "app.py"]
    if trace is not None:
        trace.mkdir(parents=True, exist_ok=True)
        (trace / "memory.jsonl").unlink(missing_ok=True)
        command = [PYTHON, "-c", TRACE_BOOTSTRAP, str(trace)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def trace_dump(pid: int, trace: Path, wait_s: float = 0.0, sig: int = signal.SIGUSR1) -> None:
    """Signal the app under --trace (SIGUSR1: dump, SIGUSR2: malloc_trim); with wait_s, wait until its line is
    written."""
    log = trace / "memory.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) > before:
            return
        time.sleep(0.5)


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def soak(
    url: str, pid: int | None, sessions: int, seconds: float, every: float, trace: Path | None = None
) -> dict:
    print(f"baseline: {len(CONVERSATIONS)} conversations, one at a time ...", file=sys.stderr, flush=True)
    expected = await baseline(url)
    samples: list[dict] = []
    next_sample = [0.0]
    dumps = [seconds / 3, 2 * seconds / 3] if trace else []  # and one at the end

    def on_tick(elapsed: float, answers: int, errors: int) -> None:
        if elapsed + 0.5 < next_sample[0]:
            return
        next_sample[0] += every
        if dumps and elapsed >= dumps[0]:
            trace_dump(pid, trace)
            dumps.pop(0)
        row = {"t_s": round(elapsed), "answers": answers, "errors": errors}
        if pid:
            row["rss_mb"] = rss_mb(pid)
        samples.append(row)
        rss = f"{row['rss_mb']:8.1f}" if pid else "       -"
        print(f"{row['t_s']:6d} {rss} {answers:8d} {errors:7d}", flush=True)

    print("   t_s   rss_mb  answers  errors", flush=True)
    if pid:
        samples.append({"t_s": 0, "answers": 0, "errors": 0, "rss_mb": rss_mb(pid)})
        print(f"{0:6d} {samples[0]['rss_mb']:8.1f} {0:8d} {0:7d}", flush=True)
        next_sample[0] = every
    result = await run_load(url, sessions, seconds, expected, on_tick=on_tick)
    if pid:
        samples.append({"t_s": round(result["wall_s"]), **{k: result[k] for k in ("answers", "errors")}})
        samples[-1]["rss_mb"] = rss_mb(pid)
    if trace:
        trace_dump(pid, trace, wait_s=300)
        trace_dump(pid, trace, wait_s=60, sig=signal.SIGUSR2)
        rows = [json.loads(line) for line in (trace / "memory.jsonl").read_text().splitlines()]
        result["dumps"] = [r for r in rows if not r.get("malloc_trim")]
        result["malloc_trim"] = next((r for r in rows if r.get("malloc_trim")), None)
    # Every conversation (and each of the baseline's) was a new Gradio session.
    result["gradio_sessions"] = result["conversations"] + len(CONVERSATIONS)
    result["samples"] = samples
    rss = [s["rss_mb"] for s in samples if "rss_mb" in s]
    if len(rss) >= 6:
        first, last = statistics.fmean(rss[:3]), statistics.fmean(rss[-3:])
        points = [(s["t_s"], s["rss_mb"]) for s in samples if "rss_mb" in s]
        mid = samples[-1]["t_s"] / 2
        result["memory"] = {
            "first3_mb": round(first, 1),
            "last3_mb": round(last, 1),
            "growth_mb": round(last - first, 1),
            "growth_pct": round(100 * (last - first) / first, 1),
            "max_mb": max(rss),
            "first_half_mb_per_min": round(60 * slope([p for p in points if p[0] <= mid]), 2),
            "second_half_mb_per_min": round(60 * slope([p for p in points if p[0] >= mid]), 2),
            "last_quarter_mb_per_min": round(60 * slope([p for p in points if p[0] >= 1.5 * mid]), 2),
        }
    return result


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) points: y units per t unit."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent conversations (browser tabs)")
    parser.add_argument("--seconds", type=float, default=600, help="how long the load runs")
    parser.add_argument("--every", type=float, default=10, help="seconds between memory samples")
    parser.add_argument("--url", help="an app that is already running (default: start app.py on a free port)")
    parser.add_argument("--pid", type=int, help="with --url: the app's process id, for memory samples")
    parser.add_argument("--out", type=Path, default=OUT / "soak.json")
    parser.add_argument("--trace", type=Path, help="dump the app's object counts to this directory (see above)")
    args = parser.parse_args(argv)
    if args.trace and args.url:
        print("error: --trace starts its own app (no --url)", file=sys.stderr)
        return 2
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        print("error: loopback only (http://127.0.0.1:PORT/)", file=sys.stderr)
        return 2
    proc = None
    started = time.perf_counter()
    try:
        if args.url:
            url, pid, ready_s = args.url.rstrip("/") + "/", args.pid, None
        else:
            port = free_port()
            proc = start_app(port, args.trace)
            if not wait_port(port, 300, proc):
                print(f"app.py did not start; see {WORK / 'app-soak.log'}", file=sys.stderr)
                return 1
            url, pid, ready_s = f"http://127.0.0.1:{port}/", proc.pid, round(time.perf_counter() - started, 1)
        result = asyncio.run(soak(url, pid, args.sessions, args.seconds, args.every, args.trace))
    finally:
        if proc is not None:
            stop_process(proc, 20)
    backend = None if args.url else os.environ.get("CHATBOT_EMBED_BACKEND") or Settings.embed_backend
    result = {"benchmark": "soak", "machine": machine(), "app_ready_s": ready_s, "embed_backend": backend, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    lat = result["latency_ms"]
    print(
        f"\n{result['sessions']} sessions x {result['wall_s']} s: {result['answers']} answers "
        f"({result['answers_per_s']}/s), {result['conversations']} conversations, errors {result['errors']}, "
        f"crossings {result['crossings']}, p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms"
    )
    if "memory" in result:
        mem = result["memory"]
        print(
            f"RSS first 3 samples {mem['first3_mb']} MB, last 3 {mem['last3_mb']} MB "
            f"({mem['growth_mb']:+} MB, {mem['growth_pct']:+}%), max {mem['max_mb']} MB; "
            f"slope first half {mem['first_half_mb_per_min']:+}, second half {mem['second_half_mb_per_min']:+}, "
            f"last quarter {mem['last_quarter_mb_per_min']:+} MB/min; {result['gradio_sessions']} Gradio sessions"
        )
    for row in result.get("dumps", []):
        if "error" in row:
            print(f"dump failed: {row['error']}")
            continue
        print(f"dump: RSS {row['rss_mb']} MB, {row['objects']} objects, Gradio {row['gradio']}")
        print(f"      types since the previous dump: {row['types_since_previous']}")
    if result.get("malloc_trim"):
        trim = result["malloc_trim"]
        print(f"malloc_trim: RSS {trim['rss_before_mb']} -> {trim['rss_after_mb']} MB")
    for example in result["error_examples"] + result["crossing_examples"]:
        print("  ", example)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if result["errors"] == 0 and result["crossings"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
