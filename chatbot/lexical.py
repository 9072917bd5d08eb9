"""Lexical side of retrieval: BM25 (bm25s) over the same chunks as Chroma, with stemming,
typo-tolerant query terms and a reviewable patient-vocabulary expansion (prompts/patient_words.yaml)."""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
import yaml

PROMPTS = Path(__file__).parent / "prompts"
WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
STOPWORDS = frozenset(
    """a an and are as at be but by can could do does for from had has have how i if in into is it its me my
    of on or our so that the their them then there these they this to was we were what when where which who
    will with would you your yours am been being did doing just should than too very ke ka ki hai hain kya""".split()
)
_stemmer = Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """'Don't wash for 48 hours' -> ['don't', 'wash', 'for', '48', 'hours']."""
    return WORD.findall(text.lower())


def tokens(text: str) -> list[str]:
    """Stemmed content tokens; numbers kept, stopwords dropped."""
    return _stemmer.stemWords([w for w in words(text) if w not in STOPWORDS])


@lru_cache(maxsize=1)
def patient_words() -> dict[str, str]:
    """Colloquial word -> clinic words, e.g. 'hurt' -> 'pain local anaesthesia'."""
    data = yaml.safe_load((PROMPTS / "patient_words.yaml").read_text())
    return {str(k).lower(): str(v) for k, v in data["expansions"].items()}


def expand_query(question: str) -> str:
    """Add the clinic's words for the patient's words; the original words stay first."""
    extra = []
    lowered = " ".join(words(question))
    for phrase, addition in patient_words().items():
        if re.search(rf"\b{re.escape(phrase)}", lowered):
            extra.append(addition)
    return question if not extra else f"{question} {' '.join(extra)}"


class LexicalIndex:
    """BM25 over chunk texts; position i in the index is chunk_ids[i]."""

    def __init__(self, model: bm25s.BM25, chunk_ids: list[str]):
        self.model = model
        self.chunk_ids = chunk_ids
        self.vocab = {v for v in (model.vocab_dict or {}) if v}
        self._fix = lru_cache(maxsize=4096)(self._closest)

    @classmethod
    def build(cls, texts: list[str], chunk_ids: list[str]) -> LexicalIndex:
        model = bm25s.BM25()
        model.index([tokens(t) or ["empty"] for t in texts], show_progress=False)
        return cls(model, chunk_ids)

    def save(self, folder: Path) -> None:
        self.model.save(str(folder))

    @classmethod
    def load(cls, folder: Path, chunk_ids: list[str]) -> LexicalIndex:
        return cls(bm25s.BM25.load(str(folder), load_corpus=False), chunk_ids)

    def _closest(self, token: str) -> str | None:
        """A misspelt word ('asprin') -> the nearest indexed word ('aspirin'), or None."""
        if token in self.vocab or len(token) < 4 or token.isdigit():
            return token if token in self.vocab else None
        near = [v for v in self.vocab if v[0] == token[0] and abs(len(v) - len(token)) <= 2]
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

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every chunk for the query (zeros when no query word is indexed)."""
        query = self.query_tokens(text)
        if not query:
            return np.zeros(len(self.chunk_ids), dtype=np.float32)
        return self.model.get_scores(query)
