"""Opaque page tokens (AIP-158): a keyset position, bound to the listing and its
filters, signed so that a client cannot forge or alter one. Keyset positions keep pages
stable while rows are inserted concurrently: a new row never shifts a later page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from ..domain.errors import FieldViolation, InvalidPageToken, InvalidRequest


class PageTokens:
    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def encode(self, listing: str, filters: dict[str, Any], position: list[Any]) -> str:
        body = json.dumps(
            {"l": listing, "f": _digest(filters), "p": position}, separators=(",", ":")
        ).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode(self, token: str, listing: str, filters: dict[str, Any]) -> list[Any] | None:
        """None for an empty token (first page); InvalidPageToken for anything not issued
        by this server for this listing with these filters."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:16], raw[16:]
            if not hmac.compare_digest(
                mac, hmac.new(self._key, body, hashlib.sha256).digest()[:16]
            ):
                raise ValueError("signature")
            data = json.loads(body)
        except (ValueError, TypeError) as exc:
            raise InvalidPageToken("page_token is not valid.") from exc
        if data.get("l") != listing or data.get("f") != _digest(filters):
            raise InvalidPageToken(
                "page_token was issued for a different request; other fields must not change "
                "between pages."
            )
        position = data.get("p")
        if not isinstance(position, list):
            raise InvalidPageToken("page_token is not valid.")
        return position


def time_position(created_at: datetime, key: str) -> list[Any]:
    return [created_at.isoformat(), key]


def parse_time_position(position: list[Any] | None) -> tuple[datetime, str] | None:
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position[0]), str(position[1])
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidPageToken("page_token is not valid.") from exc


def page_size(requested: int, maximum: int, field: str = "page_size") -> int:
    """0 means the maximum; larger values are lowered to it (AIP-158); negatives are refused."""
    if requested < 0:
        raise InvalidRequest([FieldViolation(field, "must not be negative")])
    return min(requested or maximum, maximum)


def _digest(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]
