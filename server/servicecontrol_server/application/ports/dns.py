"""The DNS port: how certificate validation records are looked up."""

from __future__ import annotations

from typing import Protocol


class DnsValidator(Protocol):
    async def check(self, record_name: str, record_value: str) -> bool | None:
        """True when `record_name` is a CNAME to `record_value`, False when it points
        elsewhere, None when it is not there (yet)."""
        ...
