"""Two app replicas on one Chroma server and one PostgreSQL, on loopback: a publish reaching both, 50 clients
spread over both, and one replica killed in the middle of a load run.

    python -m bench.replicas [--clients 50] [--rounds 4] [--publishes 3] [--kill-rounds 8] [--out replicas]

Starts a real PostgreSQL (tests/support.start_postgres), one `chroma run` (tests/support.start_chroma), stages and
publishes a copy of content/ once through the safety gate in server mode (CHROMA_HOST, CHATBOT_DATABASE_URL,
one CHATBOT_COLLECTION), then two `python app.py` replicas on two ports with the same store, Chroma server and
database, each with its default settings. Then:
(a) publish: one page of the copy is edited (its `reviewed_on` date and one sentence, different each round), staged
    and checked by the safety gate; then, while each replica is asked the same question back to back (a new session
    each time) and has answered it from the old version, `publish` makes it live (`lifecycle.stage`, `check`,
    `publish`: the consoles' sequence). Per replica, in seconds from `publish` returning: when the questions asked
    began to get the new version (the answer's source line carries the new date), and when the first such answer
    arrived; `--publishes` rounds, median and max;
(b) load: `--clients` `gradio_client` sessions, one replica each (client i on replica i mod 2: sticky sessions),
    started together, each asking `--rounds` patient questions in turn via api_name="/chat": errors (exceptions,
    empty replies, "busy", "unavailable" or "rate limited" notices) and latency p50/p95;
(c) kill: the same sessions with `--kill-rounds` questions each; once half of all questions are answered, the
    second replica gets SIGKILL. Errors on the survivor (must be 0), its answers after the kill, and the requests
    that went to the dead one (answered before, failed after) are counted separately.
Results: bench/out/<out>.json and a short table on stdout. Everything stays on 127.0.0.1; every request has a
timeout and every process started here is stopped at the end. The proof is also tests/test_replicas.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from bench.app_load import is_error
from bench.common import PYTHON, QUESTIONS, ROOT, WORK, child_env, save, stats, stop_process, wait_port
from chatbot.lifecycle import check, publish, stage
from chatbot.settings import Settings
from tests.support import CONTENT, free_port, publish_content, settings_for, start_chroma, start_postgres

PAGE = "aftercare.md"  # the page each publish edits
QUESTION = "When can I wash my hair after SMP?"  # answered from PAGE, whose source line shows its reviewed_on date
FIRST_REVIEW = date(2026, 11, 20)  # PAGE's reviewed_on in content/
LAST_SECTION_END = "including any medicines, creams and retouch sessions."  # PAGE's last sentence
ACTOR = "bench-clinician"
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def kill(self) -> None:
        """SIGKILL, as a crashed machine or an OOM kill would end it: no shutdown of any kind."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


@dataclass
class Cluster:
    settings: Settings  # the editor's and clinician's side: the same store, Chroma server, collection and database
    replicas: list[Replica] = field(default_factory=list)
    first_publish_s: float = 0.0  # the first build of the content copy and its gate
    started_s: float = 0.0  # from the replicas' start to both answering /healthz


# ------------------------------------------------------------------ starting the parts


def replica_env(settings: Settings, port: int, data_dir: Path) -> dict[str, str]:
    """app.py's environment: the store, the Chroma server, the collection and the database of `settings`; every
    other setting its default (nothing inherited from the caller's CHATBOT_* or CHROMA_* variables)."""
    inherited = {k: v for k, v in child_env().items() if not k.startswith(("CHATBOT_", "CHROMA_"))}
    return {
        **inherited,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "CHATBOT_HOST": "127.0.0.1",
        "CHATBOT_PORT": str(port),
        "CHATBOT_CONTENT_DIR": str(settings.content_dir),
        "CHATBOT_STORE_DIR": str(settings.store_dir),
        "CHATBOT_DATA_DIR": str(data_dir),
        "CHATBOT_ONNX_DIR": str(settings.onnx_dir),
        "CHROMA_HOST": str(settings.chroma_host),
        "CHROMA_PORT": str(settings.chroma_port),
        "CHATBOT_COLLECTION": settings.collection,
        "CHATBOT_DATABASE_URL": settings.database_url,
    }


def start_replica(settings: Settings, name: str, root: Path) -> Replica:
    port = free_port()
    data = root / f"var-{name}"
    data.mkdir(parents=True, exist_ok=True)
    log = open(root / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the replica
    proc = subprocess.Popen(
        [PYTHON, "app.py"], cwd=ROOT, env=replica_env(settings, port, data), stdout=log, stderr=subprocess.STDOUT
    )
    return Replica(name, port, proc)


def healthy(replica: Replica) -> bool:
    try:
        with urllib.request.urlopen(replica.url + "healthz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_ready(replicas: list[Replica], root: Path, timeout_s: float = 240) -> None:
    """Every replica listens and answers /healthz (the model is loaded and the live index opens)."""
    deadline = time.monotonic() + timeout_s
    for replica in replicas:
        if not wait_port(replica.port, max(1.0, deadline - time.monotonic()), replica.proc):
            raise RuntimeError(f"replica {replica.name} did not start; see {root / (replica.name + '.log')}")
        while not healthy(replica):
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.name} is not healthy; see {root / (replica.name + '.log')}")
            time.sleep(0.2)


@contextlib.contextmanager
def cluster(root: Path, database_url: str, embedder, replicas: int = 2) -> Iterator[Cluster]:
    """A copy of content/ published once through the gate in server mode, `replicas` app.py processes on it, and
    the Chroma server they share; all stopped at the end (the database is the caller's)."""
    root.mkdir(parents=True, exist_ok=True)
    content = root / "content"
    shutil.copytree(CONTENT, content)
    chroma_port = free_port()
    chroma = start_chroma(root / "chroma-data", chroma_port)
    running: list[Replica] = []
    try:
        settings = settings_for(
            content,
            root / "store",
            chroma_host="127.0.0.1",
            chroma_port=chroma_port,
            collection=f"replicas-{uuid.uuid4().hex[:8]}",
            database_url=database_url,
        )
        started = time.perf_counter()
        publish_content(settings, embedder, ACTOR)
        published = time.perf_counter()
        running.extend(start_replica(settings, f"replica-{i + 1}", root) for i in range(replicas))
        wait_ready(running, root)
        yield Cluster(settings, running, round(published - started, 2), round(time.perf_counter() - published, 2))
    finally:
        for replica in running:
            if replica.proc.poll() is None:
                stop_process(replica.proc, 15)
        stop_process(chroma, 15)


# ------------------------------------------------------------------ (a) a publish reaching both replicas


def edit_page(content: Path, round_no: int) -> str:
    """A harmless edit of PAGE, different each round: a new `reviewed_on` date (what the answer's source line
    shows) and a new last sentence (so the version also has new chunks, whose vectors the ingest adds to the
    shared collection). Returns the text an answer from the new version carries."""
    page = content / PAGE
    text = page.read_text()
    reviewed = (FIRST_REVIEW + timedelta(days=round_no)).isoformat()
    text = re.sub(r"(?m)^reviewed_on: .*$", f"reviewed_on: {reviewed}", text, count=1)
    text = re.sub(
        re.escape(LAST_SECTION_END) + r".*$",
        f"{LAST_SECTION_END} Keep this aftercare page with your appointment card (revision {round_no}).",
        text.rstrip("\n"),
        count=1,
        flags=re.S,
    )
    page.write_text(text + "\n")
    return f"last reviewed on {reviewed}"


def chat_client(url: str):
    """A `gradio_client` session that waits for the server as a browser would, up to REQUEST_TIMEOUT_S per HTTP
    call (httpx's default, 5 s, made a few queue joins fail on this 2-core machine at load average 8)."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": REQUEST_TIMEOUT_S})


def ask(client, question: str, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[bool, str]:
    """(answered, the reply or why it failed): a failure is an exception, an empty reply or a notice."""
    try:
        text = client.submit(question, api_name="/chat").result(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error
        return False, f"{exc.__class__.__name__}: {str(exc)[:80]}"
    return (False, f"notice: {str(text)[:80]}") if is_error(text) else (True, text)


@dataclass
class Poll:
    started: float  # time.monotonic()
    ended: float
    answered: bool
    new: bool  # the answer came from the new version


def poll_versions(client, marker: str, polls: list[Poll], timeout_s: float) -> None:
    """Ask QUESTION back to back, a new session each time, until an answer contains `marker` (or `timeout_s`);
    every answer is appended to `polls`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client.reset_session()
        started = time.monotonic()
        answered, text = ask(client, QUESTION, timeout_s)
        polls.append(Poll(started, time.monotonic(), answered, answered and marker in text))
        if polls[-1].new:
            return


def wait_for(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the replicas did not answer before the publish")
        time.sleep(0.02)


def switch(polls: list[Poll], done: float) -> dict:
    """When one replica's answers changed version, in seconds from `done` (the publish returning): the start of
    the last question answered from the old version and of the first answered from the new one (any question
    asked after that gets the new version), the first new answer's arrival, and the poll latencies."""
    old = [p for p in polls if p.answered and not p.new]
    new = next((p for p in polls if p.new), None)
    return {
        "last_old_asked_s": round(old[-1].started - done, 3) if old else None,
        "first_new_asked_s": None if new is None else round(new.started - done, 3),
        "first_new_answered_s": None if new is None else round(new.ended - done, 3),
        "old_answer_ms": round(statistics.median((p.ended - p.started) * 1000 for p in old), 1) if old else None,
        "first_new_answer_ms": None if new is None else round((new.ended - new.started) * 1000, 1),
        "questions": len(polls),
    }


def publish_round(cluster: Cluster, embedder, round_no: int, timeout_s: float = 30.0) -> dict:
    """Edit PAGE, stage it and run the safety gate; then, while each replica is asked QUESTION back to back (and
    has answered it from the old version), publish; per replica, when its answers changed version (`switch`)."""
    clients = [chat_client(r.url) for r in cluster.replicas]  # connected first: not part of the measurement
    polls: list[list[Poll]] = [[] for _ in clients]
    try:
        marker = edit_page(cluster.settings.content_dir, round_no)
        started = time.perf_counter()
        report = stage(cluster.settings, lambda: embedder, ACTOR)
        staged = time.perf_counter()
        gate = check(cluster.settings, embedder, ACTOR)
        if not gate.passed:
            raise RuntimeError(f"the safety gate refused the edit of {PAGE}: {gate.text()}")
        gated = time.perf_counter()
        with ThreadPoolExecutor(len(clients)) as pool:
            pollers = [pool.submit(poll_versions, c, marker, p, timeout_s) for c, p in zip(clients, polls, strict=True)]
            wait_for(lambda: all(any(q.answered and not q.new for q in p) for p in polls), timeout_s)
            publishing = time.perf_counter()
            version, _ = publish(cluster.settings, ACTOR, gate)
            done = time.monotonic()
            published = time.perf_counter()
            for poller in pollers:
                poller.result()
    finally:
        for client in clients:
            with contextlib.suppress(Exception):  # closing is best effort
                client.close()
    switches = {r.name: switch(p, done) for r, p in zip(cluster.replicas, polls, strict=True)}
    asked = [s["first_new_asked_s"] for s in switches.values()]
    answered = [s["first_new_answered_s"] for s in switches.values()]
    return {
        "round": round_no,
        "version": version,
        "pages_changed": report.changed,
        "chunks_written": report.written,
        "stage_s": round(staged - started, 2),
        "gate_s": round(gated - staged, 2),
        "publish_s": round(published - publishing, 3),
        "replicas": switches,
        "both_asked_s": None if None in asked else max(asked),
        "both_answered_s": None if None in answered else max(answered),
    }


# ------------------------------------------------------------------ (b), (c) load, and a replica killed during it


@dataclass
class Request:
    replica: int
    started: float  # time.monotonic()
    ended: float
    answered: bool
    why: str = ""


@contextlib.contextmanager
def chat_sessions(cluster: Cluster, clients: int) -> Iterator[list]:
    """`clients` connected `gradio_client` sessions, client i on replica i mod len(replicas) (sticky sessions, as
    a load balancer must keep them); closed at the end."""
    replicas = cluster.replicas
    with ThreadPoolExecutor(min(clients, 16)) as pool:
        sessions = list(pool.map(lambda i: chat_client(replicas[i % len(replicas)].url), range(clients)))
    try:
        yield sessions
    finally:
        for session in sessions:
            with contextlib.suppress(Exception):  # closing is best effort; a dead replica's sessions fail to close
                session.close()


def load_run(
    cluster: Cluster,
    sessions: list,
    rounds: int,
    kill: int | None = None,
    kill_after: float = 0.5,
    timeout_s: float = 300.0,
) -> dict:
    """Every session (from `chat_sessions`) asks `rounds` questions in turn, all started together. `kill`: the
    index of a replica to SIGKILL once a `kill_after` share of all the questions are answered."""
    clients, replicas = len(sessions), cluster.replicas
    barrier = threading.Barrier(clients + 1)
    requests: list[Request] = []
    lock = threading.Lock()
    reached = threading.Event()
    answers = [0]  # answered so far, by every client
    deadline = time.monotonic() + timeout_s

    def work(i: int) -> None:
        barrier.wait()
        for j in range(rounds):
            if time.monotonic() > deadline:
                return
            started = time.monotonic()
            answered, text = ask(sessions[i], QUESTIONS[(i * 7 + j) % len(QUESTIONS)])
            request = Request(i % len(replicas), started, time.monotonic(), answered, "" if answered else text)
            with lock:
                requests.append(request)
                answers[0] += answered
                if answers[0] >= clients * rounds * kill_after:
                    reached.set()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.monotonic()
    killed_at = None
    if kill is not None:
        reached.wait(timeout_s)
        killed_at = time.monotonic()
        replicas[kill].kill()
    for thread in threads:
        thread.join()
    return summarise(cluster, requests, clients, rounds, time.monotonic() - started, started, kill, killed_at)


def summarise(
    cluster: Cluster,
    requests: list[Request],
    clients: int,
    rounds: int,
    wall: float,
    started: float,
    kill: int | None,
    killed_at: float | None,
) -> dict:
    """Errors and latency overall and per replica; with a kill, the survivors' errors and answers after it and
    the dead replica's requests before and after it."""
    survivors = [r for r in requests if r.replica != kill]
    answered = [r for r in survivors if r.answered]
    result: dict = {
        "clients": clients,
        "rounds": rounds,
        "wall_s": round(wall, 2),
        "requests": len(survivors),
        "answered": len(answered),
        "errors": len(survivors) - len(answered),
        "error_examples": sorted({r.why for r in survivors if not r.answered})[:5],
        "answers_per_s": round(len(answered) / wall, 2) if wall else None,
        "latency_ms": stats([(r.ended - r.started) * 1000 for r in answered]),
        "per_replica": {
            replica.name: {
                "requests": sum(r.replica == i for r in requests),
                "errors": sum(r.replica == i and not r.answered for r in requests),
            }
            for i, replica in enumerate(cluster.replicas)
        },
    }
    if kill is not None and killed_at is not None:
        dead = [r for r in requests if r.replica == kill]
        result["kill"] = {
            "killed": cluster.replicas[kill].name,
            "killed_after_s": round(killed_at - started, 2),
            "survivor_asked_after_kill": sum(r.started >= killed_at for r in answered),
            "survivor_answered_after_kill": sum(r.ended >= killed_at for r in answered),
            "dead_answered_before_kill": sum(r.answered for r in dead),
            "dead_failed": sum(not r.answered for r in dead),
            "dead_failed_examples": sorted({r.why for r in dead if not r.answered})[:3],
        }
    return result


# ------------------------------------------------------------------ the benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4, help="questions per client in the load run")
    parser.add_argument("--publishes", type=int, default=3)
    parser.add_argument("--kill-rounds", type=int, default=8, help="questions per client in the kill run")
    parser.add_argument("--out", default="replicas", help="results: bench/out/<out>.json")
    args = parser.parse_args(argv)
    from chatbot.embedding import Embedder

    load_start = os.getloadavg()[0]
    root = WORK / "replicas"
    shutil.rmtree(root, ignore_errors=True)
    database_url, stop_postgres = start_postgres()
    try:
        embedder = Embedder.from_settings(Settings.from_env(env={}))
        with cluster(root, database_url, embedder) as running:
            print(
                f"content published in {running.first_publish_s} s, two replicas ready in {running.started_s} s",
                file=sys.stderr,
                flush=True,
            )
            publishes = [publish_round(running, embedder, n + 1) for n in range(args.publishes)]
            for p in publishes:
                print(
                    f"publish {p['version']}: gate {p['gate_s']} s; both replicas on it for questions asked "
                    f"{p['both_asked_s']} s after the publish, first answers in {p['both_answered_s']} s",
                    file=sys.stderr,
                )
            with chat_sessions(running, args.clients) as sessions:
                load = load_run(running, sessions, args.rounds)
                load["replica_rss_mb"] = {r.name: rss_mb(r.proc.pid) for r in running.replicas}
                killed = load_run(running, sessions, args.kill_rounds, kill=len(running.replicas) - 1)
            result = report(running, publishes, load, killed, load_start)
    finally:
        stop_postgres()
    save(args.out, result)
    print_table(result)
    return 0


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def report(running: Cluster, publishes: list[dict], load: dict, killed: dict, load_start: float) -> dict:
    """The JSON of the run (bench.common.save adds the machine and the load average at the end)."""
    asked = [p["both_asked_s"] for p in publishes if p["both_asked_s"] is not None]
    answered = [p["both_answered_s"] for p in publishes if p["both_answered_s"] is not None]
    return {
        "replicas": [r.name for r in running.replicas],
        "first_publish_s": running.first_publish_s,
        "replicas_ready_s": running.started_s,
        "settings": {
            "concurrency": running.settings.concurrency,
            "queue_size": running.settings.queue_size,
            "rate_limit_per_minute": running.settings.rate_limit_per_minute,
        },
        "publish": {
            "rounds": publishes,
            "both_asked_s_median": round(statistics.median(asked), 3) if asked else None,
            "both_asked_s_max": max(asked) if asked else None,
            "both_answered_s_median": round(statistics.median(answered), 3) if answered else None,
            "both_answered_s_max": max(answered) if answered else None,
            "missed": len(publishes) - len(asked),
        },
        "load": load,
        "kill": killed,
        "load_avg_1m_start": round(load_start, 2),
    }


def print_table(result: dict) -> None:
    publish_, load, killed = result["publish"], result["load"], result["kill"]
    k = killed["kill"]
    rows = [
        (
            "publish -> questions asked get the new version",
            f"on both replicas after median {publish_['both_asked_s_median']} s, max {publish_['both_asked_s_max']} s "
            f"({len(publish_['rounds'])} publishes, {publish_['missed']} missed)",
        ),
        (
            "publish -> first new answers arrive",
            f"from both replicas after median {publish_['both_answered_s_median']} s, max "
            f"{publish_['both_answered_s_max']} s",
        ),
        (
            f"{load['clients']} clients x {load['rounds']} questions",
            f"{load['errors']} errors of {load['requests']}, "
            f"p50 {load['latency_ms']['p50']} ms, p95 {load['latency_ms']['p95']} ms, "
            f"{load['answers_per_s']} answers/s",
        ),
        (
            f"kill {k['killed']} after {k['killed_after_s']} s",
            f"survivor: {killed['errors']} errors of {killed['requests']}, "
            f"{k['survivor_answered_after_kill']} answered after the kill ({k['survivor_asked_after_kill']} asked "
            f"after it); dead one: "
            f"{k['dead_answered_before_kill']} answered before, {k['dead_failed']} failed",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
