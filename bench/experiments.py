"""Measured candidate changes for modules the benchmarks do not own, before/after in one run.

    python -m bench.experiments [--sizes real,1000,10000] [--rounds 3] [--backend torch]

1. Page loading: `yaml.safe_load` (pure Python) vs `yaml.load(..., Loader=yaml.CSafeLoader)` (libyaml) for the
   front matter, and the instruction-line check with one combined regex instead of one search per pattern, in
   chatbot/loading.py, timed (CPU seconds) as `load_folder` over the corpus; the pages must be identical.
2. Dense search: the Chroma HNSW query vs an exact numpy search over the version's vectors (loaded once per
   index version): time per query, overlap of the 20 candidates, and `Engine.ask` end to end with each (the
   exact search is swapped in behind the same `collection.query` call, so retrieve() itself is unchanged).
3. Lexical typo correction: `LexicalIndex._closest` scanning the whole vocabulary per unknown word vs the same
   difflib match over a vocabulary bucketed once by first letter and length; same corrections required.
Results: bench/out/experiments.json.
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import sys
import time

from bench.common import QUESTIONS, SIZES, corpus_dir, ensure_store, make_embedder, save, stats
from chatbot.store import ExactVectors


def bucketed_closest(lexical):
    """The typo fixer of LexicalIndex._closest, with the vocabulary bucketed once by (first letter, length)."""
    buckets: dict[tuple[str, int], list[str]] = {}
    for word in sorted(lexical.vocab):
        buckets.setdefault((word[0], len(word)), []).append(word)

    def closest(token: str) -> str | None:
        if token in lexical.vocab or len(token) < 4 or token.isdigit():
            return token if token in lexical.vocab else None
        near = [w for n in range(len(token) - 2, len(token) + 3) for w in buckets.get((token[0], n), ())]
        match = difflib.get_close_matches(token, near, n=1, cutoff=0.75)
        return match[0] if match else None

    return closest


def exp_yaml(size: str, rounds: int) -> dict:
    """load_folder CPU seconds: as it is, with libyaml, and with libyaml plus one combined instruction regex."""
    import re

    import yaml

    from chatbot import loading

    folder = corpus_dir(size)
    original_yaml, original_patterns = yaml.safe_load, loading._instruction_patterns
    fast_yaml = lambda text: yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: E731
    patterns = original_patterns()
    combined = [re.compile("|".join(f"(?:{p.pattern})" for p in patterns), re.I)]
    variants = {
        "as_is": (original_yaml, original_patterns),
        "CSafeLoader": (fast_yaml, original_patterns),
        "CSafeLoader+one_regex": (fast_yaml, lambda: combined),
    }
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    pages = {}
    try:
        for _ in range(rounds):
            for name, (yaml_loader, pattern_fn) in variants.items():
                yaml.safe_load, loading._instruction_patterns = yaml_loader, pattern_fn
                started, cpu0 = time.perf_counter(), time.process_time()
                pages[name], _ = loading.load_folder(folder, 256_000)
                cpu[name].append(time.process_time() - cpu0)
                wall[name].append(time.perf_counter() - started)
    finally:
        yaml.safe_load, loading._instruction_patterns = original_yaml, original_patterns

    def key(found):
        return [(p.path, p.meta, p.title, p.text, p.sha256) for p in found]

    return {
        "pages": len(pages["as_is"]),
        "load_folder_cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "load_folder_wall_s": {k: round(statistics.median(v), 3) for k, v in wall.items()},
        "identical_pages": all(key(pages[k]) == key(pages["as_is"]) for k in variants),
    }


def exp_dense_and_lexical(size: str, rounds: int, embedder) -> dict:
    from bench.latency import clear_caches, measure
    from chatbot.answer import Engine
    from chatbot.lexical import expand_query

    settings = ensure_store(size, "torch", embedder)
    engine = Engine(settings, embedder, pointer="staging")
    index = engine.index.get()
    chroma = index.store.collection(index.version, manifest=index.manifest)  # Chroma's own search
    started = time.perf_counter()
    exact = ExactVectors(chroma, index.order, chroma)  # what the engine uses for a version this small
    load_s = time.perf_counter() - started
    vectors = {q: embedder.query_vector(q) for q in QUESTIONS}
    t_chroma, t_exact, overlap = [], [], []
    for _ in range(rounds):
        for vec in vectors.values():
            started = time.perf_counter()
            a = chroma.query(query_embeddings=[vec], n_results=20, include=["distances"])
            t_chroma.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            b = exact.query(query_embeddings=[vec], n_results=20, include=["distances"])
            t_exact.append((time.perf_counter() - started) * 1000)
            overlap.append(len(set(a["ids"][0]) & set(b["ids"][0])) / max(1, len(b["ids"][0])))
    # lexical: cold query tokens (typo fixer caches cleared) and BM25 scoring
    lexical = index.lexical
    original_fix = lexical._fix
    fast_fix = bucketed_closest(lexical)
    t_tokens, t_tokens_fast, t_scores, same_tokens = [], [], [], True
    from functools import lru_cache

    for _ in range(rounds):
        for q in QUESTIONS:
            text = expand_query(q)
            lexical._fix = lru_cache(maxsize=4096)(lexical._closest)
            started = time.perf_counter()
            slow = lexical.query_tokens(text)
            t_tokens.append((time.perf_counter() - started) * 1000)
            lexical._fix = lru_cache(maxsize=4096)(fast_fix)
            started = time.perf_counter()
            quick = lexical.query_tokens(text)
            t_tokens_fast.append((time.perf_counter() - started) * 1000)
            same_tokens &= slow == quick
            if slow:
                started = time.perf_counter()
                lexical.model.get_scores(slow)
                t_scores.append((time.perf_counter() - started) * 1000)
    lexical._fix = original_fix
    # end to end: the same engine with Chroma, then with the exact search behind collection.query
    index.collection = chroma
    before = measure(engine, rounds)
    index.collection = exact
    after = measure(engine, rounds)
    clear_caches(engine)
    return {
        "chunks": len(index),
        "vocab": len(lexical.vocab),
        "dense_query_ms": {"chroma": stats(t_chroma), "exact_numpy": stats(t_exact)},
        "exact_matrix_load_s": round(load_s, 3),
        "exact_matrix_mb": round(exact.matrix.nbytes / 2**20, 1),
        "top20_overlap_chroma_vs_exact": round(statistics.fmean(overlap), 4),
        "lexical_query_tokens_cold_ms": {"full_scan": stats(t_tokens), "bucketed": stats(t_tokens_fast)},
        "lexical_same_tokens": same_tokens,
        "bm25_get_scores_ms": stats(t_scores),
        "ask_wall_ms": {"chroma": before["ask_wall_ms"], "exact_numpy": after["ask_wall_ms"]},
        "retrieve_ms": {"chroma": before["phases_ms"]["retrieve"], "exact_numpy": after["phases_ms"]["retrieve"]},
        "forward_pass_ms": {"chroma_run": before["forward_pass_ms"], "exact_run": after["forward_pass_ms"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of: yaml,search")
    args = parser.parse_args(argv)
    skip = set(args.skip.split(","))
    embedder = make_embedder("torch")
    result: dict = {"yaml": {}, "search": {}}
    for size in args.sizes.split(","):
        if "yaml" not in skip and size != "real":
            result["yaml"][size] = exp_yaml(size, args.rounds)
            print(f"[{size}] yaml: {result['yaml'][size]}", file=sys.stderr, flush=True)
        if "search" not in skip:
            found = exp_dense_and_lexical(size, args.rounds, embedder)
            result["search"][size] = found
            short = {k: found[k] for k in ("dense_query_ms", "top20_overlap_chroma_vs_exact", "ask_wall_ms")}
            print(f"[{size}] search: {short}", file=sys.stderr, flush=True)
        save("experiments", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
