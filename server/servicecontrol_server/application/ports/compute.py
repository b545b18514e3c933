"""The compute port: what runs a service's instances."""

from __future__ import annotations

from typing import Protocol


class ComputeError(Exception):
    """The compute driver failed; transient unless it says otherwise."""

    transient = True


class ComputeDriver(Protocol):
    """Runs a service's instances. Every call is idempotent: starting a running service
    or stopping a stopped (or never started) one does nothing and succeeds."""

    async def start(self, service_id: str, image_prefix: str | None) -> None: ...

    async def stop(self, service_id: str) -> None: ...

    async def release(self, service_id: str) -> None:
        """Forgets the service's compute entirely (on delete)."""
        ...
