"""Retrieval: dense (Chroma) + lexical (BM25) over the same rows, fused by a weighted sum of scores.

A row is a section chunk or one of its patient questions (chunking.py). A question row votes for the section it
points at: a section scores the best of its own text and its questions, on each side. Reciprocal rank fusion
was measured too: the weighted sum of the cosine and the scaled BM25 score found the expected section more often."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatbot.chunking import Chunk
from chatbot.lexical import LexicalIndex, expand_query, tokens
from chatbot.settings import Settings
from chatbot.store import StoreError, VersionStore

CANDIDATES = 40  # rows from each side: a section's questions are rows too
DENSE_WEIGHT = 0.8  # fused = 0.8 * cosine + 0.2 * BM25 scaled to [0, 1]; best top-1 section on the dev set
LEXICAL_DAMP = 3.0  # BM25 scores are scaled by max(top score, 3) so that one weak word match is not a full score


@dataclass(frozen=True)
class Hit:
    """A retrieved section chunk and its scores."""

    chunk: Chunk
    dense: float  # cosine similarity, 0 when the dense side did not return it
    lexical: float  # BM25 score, 0 when no query word matched
    fused: float  # weighted sum of both, in [0, 1]
    matched: str = ""  # the patient question of this section that matched best, if one did

    @property
    def chunk_id(self) -> str:
        return self.chunk.id

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def title(self) -> str:
        return self.chunk.title

    @property
    def section(self) -> str:
        return self.chunk.section

    @property
    def source(self) -> str:
        return self.chunk.source


def inverse_document_frequency(texts: list[str]) -> dict[str, float]:
    """How rare each (stemmed) word is across chunks: log(1 + N / df). Computed once per index version."""
    df: dict[str, int] = {}
    for text in texts:
        for token in set(tokens(text)):
            df[token] = df.get(token, 0) + 1
    return {token: math.log(1 + len(texts) / n) for token, n in df.items()}


def open_lexical(folder: Path, chunks: list[Chunk]) -> LexicalIndex:
    """The version's BM25 index. One written by an older release (bm25s files, no bm25.npz) is indexed again in
    memory; a missing folder is damage, and raises."""
    if folder.is_dir() and not (folder / LexicalIndex.FILE).exists() and any(folder.iterdir()):
        return LexicalIndex.build([c.embedding_text() for c in chunks], [c.id for c in chunks])
    return LexicalIndex.load(folder, [c.id for c in chunks])


class Index:
    """One opened index version: Chroma collection, BM25 and the chunk texts, all read-only."""

    def __init__(self, store: VersionStore, version: str):
        self.store = store
        self.version = version
        path = store.path(version)
        try:
            chunks = store.read_chunks(version)
            self.manifest = store.read_manifest(version)
            self.lexical = open_lexical(path / "lexical", chunks)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"{path}: index files are damaged ({exc.__class__.__name__}); rebuild with 'python ingest.py --rebuild'"
            ) from None
        self.chunks = {c.id: c for c in chunks}
        self.order = [c.id for c in chunks]
        self.position = {cid: i for i, cid in enumerate(self.order)}
        sections = [c for c in chunks if not c.is_question]
        self.section_of = {c.id: c.section_id for c in chunks}  # a question -> its section chunk
        self.questions: dict[str, list[str]] = {}
        for c in chunks:
            if c.is_question:
                self.questions.setdefault(c.parent, []).append(c.text)
        self.sections = [c.id for c in sections]  # in page order
        self.idf = inverse_document_frequency([c.text for c in sections])
        self.collection = store.vectors(version, self.order, self.manifest)  # server mode: this version's only

    def __len__(self) -> int:
        return len(self.order)

    def neighbours(self, chunk_id: str, n: int = 3) -> list[str]:
        """Section chunks next to this one on the same page: the one before, then the ones after."""
        source = self.chunks[chunk_id].source
        same = [c for c in self.sections if self.chunks[c].source == source]
        if chunk_id not in same:
            return []
        i = same.index(chunk_id)
        return (same[i - 1 : i] + same[i + 1 :])[:n]


class LiveIndex:
    """Follows a pointer ('live' or 'staging'): a newly published version is picked up on the next question."""

    def __init__(self, settings: Settings, pointer: str = "live"):
        self.store = VersionStore(settings)
        self.pointer = pointer
        self._lock = threading.Lock()
        self._seen = -1
        self._index: Index | None = None

    def get(self) -> Index:
        stamp = self.store.pointer_mtime(self.pointer)
        if self._index is None or stamp != self._seen:
            with self._lock:
                if self._index is None or stamp != self._seen:
                    version = self.store.pointer(self.pointer)
                    if version is None:
                        raise StoreError(f"{self.store.root}: no index yet; run 'python ingest.py' to build it")
                    if self._index is None or self._index.version != version:
                        self._index = Index(self.store, version)
                    self._seen = stamp
        return self._index


def retrieve(index: Index, question: str, query_vec: np.ndarray, k: int = 4) -> list[Hit]:
    """Top-k sections for a question; `query_vec` is the question's embedding (computed once by the caller)."""
    n = min(CANDIDATES, len(index))
    if n == 0:
        return []
    dense = index.collection.query(query_embeddings=[query_vec], n_results=n, include=["distances"])
    lexical = index.lexical.scores(expand_query(question))
    lexical_norm = np.minimum(1.0, lexical / max(float(lexical.max()), LEXICAL_DAMP))
    top_lexical = np.argpartition(-lexical, n - 1)[:n] if n < len(lexical) else range(len(lexical))
    dense_best: dict[str, Vote] = {}
    for cid, distance in zip(dense["ids"][0], dense["distances"][0], strict=True):
        _vote(dense_best, index, cid, 1.0 - float(distance))
    lexical_best: dict[str, Vote] = {}
    for i in top_lexical:
        if lexical[i] > 0:
            _vote(lexical_best, index, index.order[i], float(lexical_norm[i]), float(lexical[i]))
    none = Vote(0.0, "", 0.0)
    fused = {
        section: (
            DENSE_WEIGHT * dense_best.get(section, none).score
            + (1 - DENSE_WEIGHT) * lexical_best.get(section, none).score
        )
        for section in set(dense_best) | set(lexical_best)
    }
    best = sorted(fused, key=lambda c: (-round(fused[c], 6), index.position[c]))[:k]  # ties: page order
    return [
        Hit(
            chunk=index.chunks[cid],
            dense=round(dense_best.get(cid, none).score, 4),
            lexical=round(lexical_best.get(cid, none).raw, 4),
            fused=round(fused[cid], 5),
            matched=dense_best.get(cid, none).question or lexical_best.get(cid, none).question,
        )
        for cid in best
    ]


@dataclass(frozen=True)
class Vote:
    score: float
    question: str  # the patient question that gave the score, "" for the section's own text
    raw: float  # the unscaled BM25 score (lexical side)


def _vote(best: dict[str, Vote], index: Index, row_id: str, score: float, raw: float = 0.0) -> None:
    """Keep, per section, its best score over its own text and its questions."""
    section = index.section_of.get(row_id)
    if section is None or section not in index.chunks:
        return
    if section not in best or score > best[section].score:
        chunk = index.chunks[row_id]
        best[section] = Vote(score, chunk.text if chunk.is_question else "", raw)
