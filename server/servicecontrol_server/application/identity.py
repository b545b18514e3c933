"""Accounts, API keys, authentication and the audit log.

Every call needs its key's row (`IdentityStore.get_key`); a server may keep rows for a
bounded moment (adapters/postgres/key_cache.py), so a revocation or an expiry applies
everywhere within that bound, and at once in the process that revoked. The secret, and
expiry by the database clock, are checked on every call, against whatever row is used."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..domain import names
from ..domain.errors import FieldViolation, InvalidRequest, NotFound
from ..domain.identity import (
    KEY_ID_PREFIX,
    ApiKey,
    NewKey,
    NotAuthenticated,
    Role,
    is_key_id,
    split_token,
)


@dataclass(frozen=True)
class StoredKey:
    key: ApiKey
    secret_hash: str
    secret_sealed: str
    # The database clock when the key was read: expiry is judged by it.
    now: datetime


@dataclass(frozen=True)
class AccountSummary:
    account_id: str
    created_at: datetime
    active_keys: int


@dataclass(frozen=True)
class AuditEntry:
    occurred_at: datetime | None
    key_id: str
    account_id: str
    action: str
    resource_arn: str
    operation_id: str
    request_id: str
    outcome: str
    source: str


class SecretBox(Protocol):
    """Authenticated encryption of key secrets under the key-encryption key."""

    def seal(self, plaintext: str, associated: str) -> str: ...

    def open(self, sealed: str, associated: str) -> str: ...


class IdentityStore(Protocol):
    async def create_account(self, account_id: str) -> bool: ...

    async def account_exists(self, account_id: str) -> bool: ...

    async def list_accounts(self) -> list[AccountSummary]: ...

    async def insert_key(
        self,
        key_id: str,
        account_id: str,
        role: Role,
        secret_hash: str,
        secret_sealed: str,
        expires_in_seconds: int | None,
    ) -> ApiKey: ...

    async def get_key(self, key_id: str) -> StoredKey | None: ...

    async def list_keys(self, account_id: str) -> list[ApiKey]: ...

    async def revoke_key(self, account_id: str, key_id: str) -> ApiKey | None: ...

    async def has_keys(self) -> bool: ...

    async def write_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(self, account_id: str, since: datetime | None) -> list[AuditEntry]: ...


class KeyNotFound(NotFound):
    reason = "KEY_NOT_FOUND"


class AccountNotFound(NotFound):
    reason = "ACCOUNT_NOT_FOUND"


def secret_hash(secret: str) -> str:
    # Secrets are 240 random bits: a plain digest is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_key_id() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode()
    return KEY_ID_PREFIX + raw[:17]


def _check_account(account_id: str) -> None:
    if not names.is_account_id(account_id):
        raise InvalidRequest([FieldViolation("account", "must be 12 digits")])


class Identity:
    def __init__(self, store: IdentityStore, box: SecretBox) -> None:
        self.store = store
        self.box = box

    # ----- operator commands -----

    async def create_account(self, account_id: str) -> bool:
        _check_account(account_id)
        return await self.store.create_account(account_id)

    async def list_accounts(self) -> list[AccountSummary]:
        return await self.store.list_accounts()

    async def create_key(
        self, account_id: str, role: Role, expires_in_seconds: int | None = None
    ) -> NewKey:
        _check_account(account_id)
        if expires_in_seconds is not None and expires_in_seconds <= 0:
            raise InvalidRequest([FieldViolation("expires_in", "must be positive")])
        if not await self.store.account_exists(account_id):
            raise AccountNotFound(f"Account {account_id} not found.", {"accountId": account_id})
        key_id = _new_key_id()
        secret = secrets.token_urlsafe(30)
        key = await self.store.insert_key(
            key_id,
            account_id,
            role,
            secret_hash(secret),
            self.box.seal(secret, key_id),
            expires_in_seconds,
        )
        return NewKey(key, secret)

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        _check_account(account_id)
        return await self.store.list_keys(account_id)

    async def revoke_key(self, account_id: str, key_id: str) -> ApiKey:
        _check_account(account_id)
        key = await self.store.revoke_key(account_id, key_id) if is_key_id(key_id) else None
        if key is None:
            raise KeyNotFound(f"Key {key_id[:40]} not found in account {account_id}.")
        return key

    async def audit(self, account_id: str, since: datetime | None) -> list[AuditEntry]:
        _check_account(account_id)
        return await self.store.list_audit(account_id, since)

    # ----- authentication -----

    async def active_key(self, key_id: str) -> StoredKey:
        """The key, if it exists and is neither revoked nor expired."""
        stored = await self.store.get_key(key_id) if is_key_id(key_id) else None
        if stored is None:
            raise NotAuthenticated("The API key is not valid.", "unknown")
        state = stored.key.state(stored.now)
        if state != "active":
            raise NotAuthenticated(f"The API key is {state}.", state)
        return stored

    async def authenticate_token(self, token: str) -> ApiKey:
        """The key a bearer token `<key id>.<secret>` proves."""
        parts = split_token(token)
        if parts is None:
            raise NotAuthenticated("The bearer token is not a ServiceControl API key.")
        key_id, secret = parts
        stored = await self.active_key(key_id)
        if not hmac.compare_digest(stored.secret_hash, secret_hash(secret)):
            raise NotAuthenticated("The API key is not valid.", "unknown")
        return stored.key

    async def signing_secret(self, key_id: str) -> tuple[ApiKey, str, datetime]:
        """For SigV4 verification: the active key, its secret and the database clock."""
        stored = await self.active_key(key_id)
        return stored.key, self.box.open(stored.secret_sealed, key_id), stored.now

    async def record_refusal(self, entry: AuditEntry) -> None:
        await self.store.write_audit(entry)
