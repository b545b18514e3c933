"""The region a request acts in: set by the API layer around each call (the SigV4
credential scope, the `x-servicecontrol-region` metadata, the console's picker), read by
the use cases. Every regional resource belongs to one region: its ARN names it, names
are unique and lists, counts and quotas are per account and region. Work that is not a
request (jobs, the reaper, operator commands on an ARN) acts on a resource in whatever
region its ARN names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from ..domain.errors import FieldViolation, RegionNotServed
from ..settings import Settings

_REGION: ContextVar[str | None] = ContextVar("servicecontrol_region", default=None)


def request_region(settings: Settings) -> str:
    """The region of the request being served; the default region outside of one."""
    return _REGION.get() or settings.region


def region_of_request() -> str | None:
    """The region of the request being served; None outside of one."""
    return _REGION.get()


def arn_region(arn: str) -> str:
    """The region an ARN names ("" for none)."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""


@contextlib.contextmanager
def in_region(region: str) -> Iterator[str]:
    token = _REGION.set(region)
    try:
        yield region
    finally:
        with contextlib.suppress(ValueError):
            _REGION.reset(token)


def served_region(settings: Settings, wanted: str, field: str) -> str:
    """`wanted` if served, the default region if empty; otherwise RegionNotServed."""
    if not wanted:
        return settings.region
    if wanted not in settings.served_regions:
        served = ", ".join(settings.served_regions)
        error = RegionNotServed(
            [FieldViolation(field, f"region {wanted[:40]!r} is not served here (served: {served})")]
        )
        error.metadata = {"region": wanted[:40], "servedRegions": served}
        raise error
    return wanted
