"""Long-running server housekeeping: Gradio sessions that are gone, and memory glibc keeps after a burst."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging

log = logging.getLogger("chatbot.web.housekeeping")


def forget_idle_sessions(blocks) -> int:
    """Gradio 6 keeps a set of pending event ids per session it has ever seen, and empties it but never drops
    it (`Queue.pending_event_ids_session`, ~0.3 KB a session: the soak's slow memory growth). Drop the empty
    ones; Gradio makes a new set when that session asks again. Must run on the server's event loop, where
    Gradio reads and writes them, so it never interleaves with Gradio's own use."""
    pending = getattr(getattr(blocks, "_queue", None), "pending_event_ids_session", None)
    if not isinstance(pending, dict):
        return 0
    idle = [session for session, ids in pending.items() if not ids]
    for session in idle:
        pending.pop(session, None)
    return len(idle)


def _glibc(function: str, *args: int) -> None:
    """Call a glibc memory function; a no-op where the C library is not glibc."""
    with contextlib.suppress(OSError, AttributeError):
        getattr(ctypes.CDLL("libc.so.6"), function)(*args)


def release_free_memory() -> None:
    """Give memory that glibc keeps after a burst of traffic back to the system."""
    _glibc("malloc_trim", 0)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate at once their own malloc arenas (up to 8 per core); with the server's
    worker threads, free memory then fragments across them and RSS creeps up. Two arenas keep it compact."""
    _glibc("mallopt", -8, arenas)  # M_ARENA_MAX; before the worker threads start


def housekeeping(blocks: list, every_s: float):
    """The app's lifespan: every `every_s` seconds, forget idle Gradio sessions and release free memory."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every_s)
            forgotten = sum(forget_idle_sessions(b) for b in blocks)
            await asyncio.to_thread(release_free_memory)
            log.debug("housekeeping: %d idle sessions forgotten", forgotten)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return lifespan
