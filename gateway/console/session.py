"""Console sessions: held in this process's memory. The browser gets an opaque id in an
HttpOnly, SameSite=Strict cookie; the secret never leaves the server. With several worker
processes each session is also a row of a file in the run folder (gateway/workers.py), which
holds only stored_id(id): whoever reads that file cannot present a session as a cookie."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.console.s3client import Credentials

COOKIE = "s3gw_console"
LOGIN_COOKIE = "s3gw_console_login"  # double-submit token for the login form (login CSRF)
ABSOLUTE_LIFETIME = 12 * 3600.0  # however active, a session ends after this


def stored_id(session_id: str) -> str:
    """What is written down for a session instead of its id (the cookie's value): SHA-256 of
    it. The id has 256 random bits, so no salt or slow hash is needed; a row is looked up by
    this hash, whose value a guesser cannot steer, so the lookup's timing tells nothing."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class Session:
    id: str = field(repr=False)
    credentials: Credentials
    account: str
    csrf: str = field(repr=False)
    created: float
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for the next page

    @property
    def access_key(self) -> str:
        return self.credentials.access_key

    def say(self, kind: str, text: str) -> None:
        self.flash.append((kind, text))
        del self.flash[:-5]


class Sessions:
    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, deque[float]] = {}

    def create(self, credentials: Credentials, account: str) -> Session:
        self.sweep()
        now = time.time()
        session = Session(id=secrets.token_urlsafe(32), credentials=credentials,
                          account=account, csrf=secrets.token_urlsafe(32), created=now,
                          expires=now + self.idle_seconds)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.time()
        if now > session.expires or now > session.created + ABSOLUTE_LIFETIME:
            self._sessions.pop(session_id, None)
            return None
        session.expires = now + self.idle_seconds  # sliding: idle sessions end
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def sweep(self) -> None:
        now = time.time()
        for sid in [s.id for s in self._sessions.values()
                    if now > s.expires or now > s.created + ABSOLUTE_LIFETIME]:
            self._sessions.pop(sid, None)

    # Failed logins per client address: a few per minute, then refused for a while.
    MAX_FAILURES = 10
    FAILURE_WINDOW = 300.0

    def login_blocked(self, client: str) -> bool:
        window = self._failures.get(client)
        if not window:
            return False
        cutoff = time.time() - self.FAILURE_WINDOW
        while window and window[0] < cutoff:
            window.popleft()
        return len(window) >= self.MAX_FAILURES

    def login_failed(self, client: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()
        self._failures.setdefault(client, deque(maxlen=self.MAX_FAILURES)).append(time.time())
