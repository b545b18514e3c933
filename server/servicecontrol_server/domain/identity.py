"""Who may call: accounts, API keys and their roles, and the caller of one request.

A key is an id plus a secret. The id is public (it is the AWS access key id and names the
key in the audit log); the secret is shown once, when the key is created."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .errors import DomainError

# Shaped like an AWS access key id: 20 upper-case letters and digits.
KEY_ID_PREFIX = "SCK"
KEY_ID_RE = re.compile(r"SCK[A-Z2-7]{17}")
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{40}")


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    account_id: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewKey:
    """A key just created: the only time its secret exists outside the sealed column."""

    key: ApiKey
    secret: str

    @property
    def token(self) -> str:
        """The gRPC bearer token."""
        return f"{self.key.key_id}.{self.secret}"


@dataclass
class Caller:
    """The authenticated caller of one request, and what the audit log records of it."""

    key_id: str
    account_id: str
    role: Role
    action: str
    request_id: str
    source: str
    mutating: bool
    # Set once the request's audit row is written (by the unit of work, at commit).
    audited: bool = field(default=False)


class NotAuthenticated(DomainError):
    """No key, an unknown key, a wrong secret or signature, or an expired or revoked key."""

    reason = "UNAUTHENTICATED_REQUEST"

    def __init__(self, message: str, kind: str = "unknown") -> None:
        super().__init__(message)
        # unknown | signature | expired: the AWS endpoint names each differently.
        self.kind = kind


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED_FOR_ACCOUNT"


def is_key_id(value: str) -> bool:
    return KEY_ID_RE.fullmatch(value) is not None


def split_token(token: str) -> tuple[str, str] | None:
    """`<key id>.<secret>` → (key id, secret); None when it is not shaped like one."""
    key_id, sep, secret = token.partition(".")
    if not sep or not is_key_id(key_id) or SECRET_RE.fullmatch(secret) is None:
        return None
    return key_id, secret
