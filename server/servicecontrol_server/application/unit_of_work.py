"""The unit-of-work port the use cases depend on."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from ..adapters.postgres.repositories import (
    AccountRepository,
    CertificateRepository,
    ConnectionRepository,
    CustomDomainRepository,
    OperationRepository,
    RequestIdRepository,
    ServiceRepository,
)
from ..domain.model import Event


class UnitOfWork(Protocol):
    accounts: AccountRepository
    services: ServiceRepository
    operations: OperationRepository
    request_ids: RequestIdRepository
    connections: ConnectionRepository
    custom_domains: CustomDomainRepository
    certificates: CertificateRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def record(self, event: Event) -> None: ...

    async def enqueue_job(self, **kwargs: Any) -> int: ...

    async def take_failed_progress(self, kind: str, service_id: str) -> dict[str, Any] | None: ...

    async def now(self) -> Any: ...

    async def flush_events(self) -> None:
        """Writes the recorded events now, inside the current transaction."""
        ...

    async def commit(self) -> None: ...
