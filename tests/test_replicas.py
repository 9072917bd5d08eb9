"""Two app replicas (`python app.py`) on one `chroma run` and one PostgreSQL, on loopback (issue 15): a publish
reaches both within a second, 50 concurrent clients spread over both get no errors, and when one replica is
killed in the middle of a load run the other keeps answering. The same proof, with more rounds and the figures
of docs/benchmarks.md, is `python -m bench.replicas`; the helpers are that module's."""

from __future__ import annotations

import pytest

from bench.replicas import Cluster, chat_sessions, cluster, load_run, publish_round

pytestmark = pytest.mark.slow

CLIENTS = 50


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres_server, embedder) -> Cluster:
    """content/ published once through the gate in server mode, and two replicas serving it."""
    with cluster(tmp_path_factory.mktemp("replicas"), postgres_server, embedder) as running:
        yield running


def test_a_publish_reaches_both_replicas_within_a_second(replicas, embedder):
    result = publish_round(replicas, embedder, 1)
    print(f"\npublished {result['version']} (gate {result['gate_s']} s): {result['replicas']}")
    assert result["pages_changed"] == ["aftercare.md"] and result["chunks_written"] >= 1
    assert result["both_answered_s"] is not None, f"a replica still answers from the old version: {result['replicas']}"
    assert result["both_asked_s"] < 1.0, f"a question asked 1 s after the publish got the old version: {result}"


def test_fifty_clients_get_no_errors_and_the_survivor_of_a_kill_keeps_answering(replicas):
    with chat_sessions(replicas, CLIENTS) as sessions:
        load = load_run(replicas, sessions, rounds=2)
        print(f"\n{CLIENTS} clients: {load['errors']} errors, latency {load['latency_ms']}, {load['per_replica']}")
        assert load["requests"] == 2 * CLIENTS and load["errors"] == 0, load["error_examples"]
        assert all(r["requests"] == CLIENTS for r in load["per_replica"].values())

        killed = load_run(replicas, sessions, rounds=2, kill=1, kill_after=0.25)
    kill = killed["kill"]
    print(f"kill: {kill}; survivor: {killed['errors']} errors of {killed['requests']}")
    assert killed["requests"] == CLIENTS and killed["errors"] == 0, killed["error_examples"]  # 25 clients x 2
    assert kill["survivor_asked_after_kill"] > 0, "the survivor was asked nothing after the kill"
    assert kill["dead_failed"] > 0, "the kill did not land in the middle of the load run"
