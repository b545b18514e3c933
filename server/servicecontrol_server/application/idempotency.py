"""Request ids (AIP-155): the same id with the same request gets the first call's answer;
the same id with a different request is refused. Shared by every mutating use case."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..domain import names
from ..domain.errors import FieldViolation, RequestIdReused
from .ports import UnitOfWork


def request_id_violations(request_id: str) -> list[FieldViolation]:
    if request_id and not names.is_uuid(request_id):
        return [FieldViolation("request_id", "must be a UUID")]
    return []


def fingerprint(*parts: Any) -> str:
    """A digest of everything that makes two requests the same request."""

    def default(value: Any) -> Any:
        return value.__dict__ if hasattr(value, "__dict__") else str(value)

    body = json.dumps(parts, sort_keys=True, default=default)
    return hashlib.sha256(body.encode()).hexdigest()


async def first_result(
    uow: UnitOfWork,
    account_id: str,
    request_id: str,
    request_fingerprint: str,
    result_kind: str,
    result_id: str,
) -> str | None:
    """Records `request_id` in the caller's transaction. Returns None for a first call
    (the caller goes on and commits), or the first call's result id for a repeat."""
    if not request_id:
        return None
    first = await uow.request_ids.claim(
        account_id, request_id.lower(), request_fingerprint, result_kind, result_id
    )
    if first is None:
        return None
    first_fingerprint, _, first_id = first
    if first_fingerprint != request_fingerprint:
        raise RequestIdReused(
            f"request_id {request_id} was used for a different request.",
            {"requestId": request_id},
        )
    return first_id
