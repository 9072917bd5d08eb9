"""Lexical side of retrieval: BM25 over the same chunks as Chroma, with stemming,
typo-tolerant query terms and a reviewable patient-vocabulary expansion (prompts/patient_words.yaml)."""

from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import Stemmer

from chatbot.language import has_devanagari, to_latin
from chatbot.wording import load

WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
STOPWORDS = frozenset(
    """a an and are as at be but by can could do does for from had has have how i if in into is it its me my
    of on or our so that the their them then there these they this to was we were what when where which who
    will with would you your yours am been being did doing just should than too very ke ka ki hai hain kya""".split()
)
_stemmer = Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """'Don't wash for 48 hours' -> ['don't', 'wash', 'for', '48', 'hours']; Devanagari is read in Latin letters."""
    return WORD.findall((to_latin(text) if has_devanagari(text) else text).lower())


def tokens(text: str) -> list[str]:
    """Stemmed content tokens; numbers kept, stopwords dropped."""
    return _stemmer.stemWords([w for w in words(text) if w not in STOPWORDS])


@lru_cache(maxsize=1)
def patient_words() -> dict[str, str]:
    """Colloquial word -> clinic words, e.g. 'hurt' -> 'pain local anaesthesia'."""
    data = load("patient_words.yaml")
    return {str(k).lower(): str(v) for k, v in data["expansions"].items()}


@lru_cache(maxsize=1)
def _patient_patterns() -> list[tuple[str, re.Pattern[str], str]]:
    return [(phrase, re.compile(rf"\b{re.escape(phrase)}"), add) for phrase, add in patient_words().items()]


def expand_query(question: str) -> str:
    """Add the clinic's words for the patient's words (a word starting with the phrase); the original words stay
    first."""
    lowered = " ".join(words(question))
    extra = [add for phrase, pattern, add in _patient_patterns() if phrase in lowered and pattern.search(lowered)]
    return question if not extra else f"{question} {' '.join(extra)}"


class LexicalIndex:
    """BM25 (Lucene variant, k1 1.5, b 0.75) over chunk texts; position i in the index is chunk_ids[i].

    Stored as term frequencies, term-major: (term, doc, tf) triples. The scores follow from them in one
    vectorised pass, so an ingest that changes one page keeps every other chunk's row and tokenises only
    the new chunks (`updated`), instead of re-tokenising and re-indexing the whole corpus.
    """

    K1, B = 1.5, 0.75
    FILE = "bm25.npz"

    def __init__(self, vocab: list[str], term: np.ndarray, doc: np.ndarray, tf: np.ndarray, chunk_ids: list[str]):
        self.terms = vocab
        self.term_id = {t: i for i, t in enumerate(vocab)}
        self.chunk_ids = chunk_ids
        self._term, self._doc, self._tf = term, doc, tf
        n_docs = len(chunk_ids)
        df = np.bincount(term, minlength=len(vocab))
        doc_len = np.bincount(doc, weights=tf, minlength=n_docs)
        avg_len = float(doc_len.mean()) if n_docs else 1.0
        idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        norm = self.K1 * ((1 - self.B) + self.B * doc_len / max(avg_len, 1e-9))
        self._score = (idf[term] * tf / (norm[doc] + tf)).astype(np.float32)
        self._start = np.concatenate(([0], np.cumsum(df))).astype(np.int64)  # entries of term t: start[t]:start[t+1]
        self.vocab = {t for t, n in zip(vocab, df, strict=True) if n}
        self._by_letter: dict[str, list[str]] = {}
        for word in sorted(self.vocab):
            self._by_letter.setdefault(word[0], []).append(word)
        self._fix = lru_cache(maxsize=4096)(self._closest)

    @classmethod
    def build(cls, texts: list[str], chunk_ids: list[str]) -> LexicalIndex:
        return cls._from_tokens([], [tokens(t) for t in texts], range(len(texts)), chunk_ids)

    def updated(self, texts: dict[str, str], chunk_ids: list[str]) -> LexicalIndex:
        """The index over `chunk_ids`: chunks this index has keep their row; the others are tokenised from
        `texts` (chunk id -> text), which must hold every chunk id this index does not."""
        old_row = {cid: i for i, cid in enumerate(self.chunk_ids)}
        new_row = np.full(len(self.chunk_ids), -1, dtype=np.int64)
        for i, cid in enumerate(chunk_ids):
            if cid in old_row:
                new_row[old_row[cid]] = i
        kept = new_row[self._doc] >= 0
        fresh = [i for i, cid in enumerate(chunk_ids) if cid not in old_row]
        known = (self._term[kept], new_row[self._doc[kept]], self._tf[kept])
        vocab = self.terms
        live = np.flatnonzero(np.bincount(known[0], minlength=len(vocab)))
        if 2 * len(live) < len(vocab):  # most words are gone with their chunks: forget them
            remap = np.full(len(vocab), -1, dtype=np.int64)
            remap[live] = np.arange(len(live))
            vocab, known = [vocab[i] for i in live], (remap[known[0]], known[1], known[2])
        return self._from_tokens(vocab, [tokens(texts[chunk_ids[i]]) for i in fresh], fresh, chunk_ids, known)

    @classmethod
    def _from_tokens(cls, vocab: list[str], token_lists: list[list[str]], rows, chunk_ids: list[str], known=None):
        """Document rows[k] gets token_lists[k]; `known` holds the (term, doc, tf) triples of the other rows."""
        term_id = {t: i for i, t in enumerate(vocab)}
        ids = [term_id.setdefault(t, len(term_id)) for toks in token_lists for t in toks]
        docs = np.repeat(np.asarray(rows, dtype=np.int64), [len(toks) for toks in token_lists])
        n = max(len(chunk_ids), 1)
        keys, counts = np.unique(np.asarray(ids, dtype=np.int64) * n + docs, return_counts=True)
        empty = np.empty(0, dtype=np.int64)
        known_term, known_doc, known_tf = known or (empty, empty, empty)
        term = np.concatenate([known_term, keys // n])
        doc = np.concatenate([known_doc, keys % n])
        tf = np.concatenate([known_tf, counts]).astype(np.float64)
        order = np.lexsort((doc, term))
        return cls(list(term_id), term[order], doc[order], tf[order], chunk_ids)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / self.FILE, term=self._term, doc=self._doc, tf=self._tf.astype(np.int32))
        (folder / "vocab.json").write_text(json.dumps(self.terms, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path, chunk_ids: list[str]) -> LexicalIndex:
        """Raises FileNotFoundError for a folder written by an older version (rebuild it from the texts)."""
        with np.load(folder / cls.FILE) as data:
            term, doc, tf = data["term"], data["doc"], data["tf"].astype(np.float64)
        vocab = json.loads((folder / "vocab.json").read_text())
        if len(doc) and (int(doc.max()) >= len(chunk_ids) or int(term.max()) >= len(vocab)):
            raise ValueError(f"{folder}: the BM25 index does not match the chunks")
        return cls(vocab, term, doc, tf, chunk_ids)

    def _closest(self, token: str) -> str | None:
        """A misspelt word ('asprin') -> the nearest indexed word ('aspirin'), or None."""
        if token in self.vocab or len(token) < 4 or token.isdigit():
            return token if token in self.vocab else None
        near = [v for v in self._by_letter.get(token[0], ()) if abs(len(v) - len(token)) <= 2]
        match = difflib.get_close_matches(token, near, n=1, cutoff=0.75)
        return match[0] if match else None

    def query_tokens(self, text: str) -> list[str]:
        found = []
        for word in words(text):
            if word in STOPWORDS:
                continue
            stem = _stemmer.stemWord(word)
            fixed = self._fix(stem) or self._fix(word)
            if fixed:
                found.append(fixed)
        return found

    def unknown_words(self, text: str) -> list[str]:
        """Words of a question that no indexed text has, even misspelt ('swimming' when no page mentions it)."""
        return [
            w
            for w in words(text)
            if w not in STOPWORDS
            and len(w) >= 4
            and not w.isdigit()
            and not (self._fix(_stemmer.stemWord(w)) or self._fix(w))
        ]

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every chunk for the query (zeros when no query word is indexed); a repeated query
        word counts once per repetition."""
        scores = np.zeros(len(self.chunk_ids), dtype=np.float32)
        for word in self.query_tokens(text):
            t = self.term_id[word]
            start, end = self._start[t], self._start[t + 1]
            np.add.at(scores, self._doc[start:end], self._score[start:end])
        return scores
