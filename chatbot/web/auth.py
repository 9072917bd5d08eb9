"""Sign-in for the consoles: CHATBOT_STAFF_USERS with constant-time password checks, and a lockout after
too many wrong passwords."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from chatbot.settings import Settings
from chatbot.web.chat import RateLimiter

log = logging.getLogger("chatbot.web.auth")


class LoginGuard(RateLimiter):
    """After `attempts` wrong passwords for one user name within `window_s`, that name is refused, right
    password or not, until its oldest counted failure is `window_s` old: password guessing on the consoles gets
    5 tries per 15 minutes. The rate limiter's sliding window, keyed by user name; the most recent
    `max_names` names only."""

    def __init__(self, attempts: int = 5, window_s: float = 900.0, max_names: int = 1000):
        super().__init__(attempts, window_s, max_names)

    def locked(self, name: str, now: float | None = None) -> bool:
        return self.used(name, now) >= self.per_minute

    def failed(self, name: str, now: float | None = None) -> None:
        self.allow(name, now)


def staff_login(settings: Settings, guard: LoginGuard | None = None) -> Callable[[str, str], bool]:
    """Gradio auth: a user from CHATBOT_STAFF_USERS with the right password (constant-time compare), and
    not locked out by too many wrong passwords."""
    guard = guard if guard is not None else LoginGuard()  # not `or`: an empty guard is falsy

    def check(username: str, password: str) -> bool:
        entry = settings.staff_users.get(username)
        right = entry is not None and hmac.compare_digest(entry[0].encode(), (password or "").encode())
        if guard.locked(username):
            log.warning("console login refused: too many wrong passwords for this user name; wait 15 minutes")
            return False
        if not right:
            guard.failed(username)
        return right

    return check
