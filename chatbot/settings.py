"""One frozen Settings object, built from environment variables (and CLI flags) at the edge."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and the fix."""


def _int(env: dict[str, str], name: str, default: int, low: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number; set it like {name}={default}") from None
    if value < low:
        raise SettingsError(f"{name}={value} is too small; use at least {low}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number; set it like {name}={default}") from None


def _choice(env: dict[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def parse_staff_users(raw: str) -> dict[str, tuple[str, str]]:
    """'ana:pw:clinician,bo:pw' -> {'ana': ('pw', 'clinician'), 'bo': ('pw', 'editor')}."""
    users: dict[str, tuple[str, str]] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise SettingsError(
                f"CHATBOT_STAFF_USERS entry {parts[0]!r} is malformed; use 'user:password' or 'user:password:role'"
            )
        role = parts[2] if len(parts) == 3 else "editor"
        if role not in ("editor", "clinician"):
            raise SettingsError(
                f"CHATBOT_STAFF_USERS role {role!r} for {parts[0]!r} is unknown; use editor or clinician"
            )
        users[parts[0]] = (parts[1], role)
    return users


@dataclass(frozen=True)
class Settings:
    content_dir: Path = ROOT / "content"
    store_dir: Path = ROOT / ".chroma"
    chroma_host: str | None = None
    chroma_port: int = 8000
    collection: str = "clinic-smp"
    model_path: Path | None = None
    embed_backend: str = "onnx"  # "torch": sentence-transformers on PyTorch, same vectors (chatbot/embedding.py)
    onnx_dir: Path = ROOT / ".onnx"  # the one-time ONNX export of the model, cached
    max_file_bytes: int = 256_000
    chunk_chars: int = 1000
    top_k: int = 4
    relevance_floor: float = 0.55  # fused score; chosen on the answers dev set (not-covered vs covered)
    keep_versions: int = 3
    store_timeout_s: float = 5.0
    exact_max_rows: int = 20_000  # a version with at most this many vectors is searched exactly, in memory
    llm: str = "none"
    llm_timeout_s: float = 20.0
    openai_base_url: str | None = None
    ollama_base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    clinic_name: str = "AK Clinics"
    clinic_phone: str = ""
    clinic_email: str = ""
    emergency_number: str = "112"
    crisis_line: str = "Tele-MANAS 14416"
    staff_users: dict[str, tuple[str, str]] = field(default_factory=dict)
    data_dir: Path = ROOT / "var"
    database_url: str = field(default="", repr=False)  # postgresql://user:pw@host:5432/db for the logs; "": SQLite
    retention_days: int = 90
    max_question_chars: int = 500
    rate_limit_per_minute: int = 20
    max_upload_bytes: int = 256_000
    queue_size: int = 64
    concurrency: int = 4
    serve_overdue: bool = True
    housekeeping_s: float = 60.0  # how often the app forgets idle Gradio sessions and returns free memory

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from environment variables; keyword overrides (CLI flags) win."""
        env = dict(os.environ if env is None else env)
        host = env.get("CHROMA_HOST") or None
        llm = env.get("CHATBOT_LLM", "none").strip() or "none"
        if llm != "none" and not llm.startswith(("ollama:", "openai:", "fake:")):
            raise SettingsError(f"CHATBOT_LLM={llm!r} is not understood; use none, ollama:<model> or openai:<model>")
        values: dict[str, object] = dict(
            content_dir=Path(env.get("CHATBOT_CONTENT_DIR") or cls.content_dir),
            store_dir=Path(env.get("CHATBOT_STORE_DIR") or cls.store_dir),
            chroma_host=host,
            chroma_port=_int(env, "CHROMA_PORT", 8000, 1),
            collection=env.get("CHATBOT_COLLECTION", cls.collection),
            model_path=Path(env["CHATBOT_MODEL_PATH"]) if env.get("CHATBOT_MODEL_PATH") else None,
            embed_backend=_choice(env, "CHATBOT_EMBED_BACKEND", cls.embed_backend, ("torch", "onnx")),
            onnx_dir=Path(env.get("CHATBOT_ONNX_DIR") or cls.onnx_dir),
            max_file_bytes=_int(env, "CHATBOT_MAX_FILE_BYTES", cls.max_file_bytes, 1),
            top_k=_int(env, "CHATBOT_TOP_K", cls.top_k, 1),
            relevance_floor=_float(env, "CHATBOT_RELEVANCE_FLOOR", cls.relevance_floor),
            store_timeout_s=_float(env, "CHATBOT_STORE_TIMEOUT", cls.store_timeout_s),
            exact_max_rows=_int(env, "CHATBOT_EXACT_MAX_ROWS", cls.exact_max_rows, 0),
            llm=llm,
            llm_timeout_s=_float(env, "CHATBOT_LLM_TIMEOUT", cls.llm_timeout_s),
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            ollama_base_url=env.get("OLLAMA_BASE_URL") or None,
            host=env.get("CHATBOT_HOST", cls.host),
            port=_int(env, "CHATBOT_PORT", cls.port, 1),
            clinic_name=env.get("CHATBOT_CLINIC_NAME", cls.clinic_name),
            clinic_phone=env.get("CHATBOT_CLINIC_PHONE", ""),
            clinic_email=env.get("CHATBOT_CLINIC_EMAIL", ""),
            staff_users=parse_staff_users(env.get("CHATBOT_STAFF_USERS", "")),
            data_dir=Path(env.get("CHATBOT_DATA_DIR") or cls.data_dir),
            database_url=env.get("CHATBOT_DATABASE_URL", "").strip(),
            retention_days=_int(env, "CHATBOT_RETENTION_DAYS", cls.retention_days, 1),
            max_question_chars=_int(env, "CHATBOT_MAX_QUESTION_CHARS", cls.max_question_chars, 20),
            rate_limit_per_minute=_int(env, "CHATBOT_RATE_LIMIT", cls.rate_limit_per_minute, 1),
            queue_size=_int(env, "CHATBOT_QUEUE_SIZE", cls.queue_size, 1),
            concurrency=_int(env, "CHATBOT_CONCURRENCY", cls.concurrency, 1),
            serve_overdue=env.get("CHATBOT_SERVE_OVERDUE", "1") not in ("0", "false", "no"),
            housekeeping_s=max(0.5, _float(env, "CHATBOT_HOUSEKEEPING_S", cls.housekeeping_s)),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def clinic_contact(self) -> str:
        """How a patient reaches the clinic, in words, from whatever details are configured."""
        details = [d for d in (self.clinic_phone, self.clinic_email) if d]
        return f"{self.clinic_name} ({', '.join(details)})" if details else self.clinic_name
