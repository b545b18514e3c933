"""Console sign-in sessions, held in the server's memory.

The cookie carries only a random session id; the API key it was opened with stays on the
server and is authenticated again on every request, so a revoked or expired key ends
its console sessions at the next click. Sessions do not survive a restart, and each
console process has its own (sign in again after either)."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "sc_session"


@dataclass
class Session:
    token: str
    csrf: str
    expires: float
    flashes: list[tuple[str, str]] = field(default_factory=list)
    # The region picked in the region selector; empty: the server's default region.
    region: str = ""

    def flash(self, kind: str, message: str) -> None:
        """A message for the next page shown: kind is "ok" or "error"."""
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, presented or "")


class SessionStore:
    def __init__(self, lifetime_seconds: float) -> None:
        self.lifetime = lifetime_seconds
        self._sessions: dict[str, Session] = {}

    def open(self, token: str) -> tuple[str, Session]:
        self._expire()
        session_id = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), time.monotonic() + self.lifetime)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None or session.expires <= time.monotonic():
            self._sessions.pop(session_id, None)
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
