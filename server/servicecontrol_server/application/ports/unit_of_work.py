"""The unit-of-work port: one transaction that commits domain changes, jobs and outbox
events together, or none of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from ...domain.model import Event, Operation, Service
from .repositories import (
    AccountRepository,
    CertificateRepository,
    ConfigResourceRepository,
    ConnectionRepository,
    CustomDomainRepository,
    JobRepository,
    OperationRepository,
    RequestIdRepository,
    RetentionRepository,
    ServiceRepository,
    TagRepository,
    VpcRepository,
)


@dataclass
class OperationJob:
    """The job that carries out an operation: JobRepository.enqueue's arguments, the
    operation, service and account being the operation's own."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 1
    progress: dict[str, Any] | None = None


class UnitOfWork(Protocol):
    """`async with uow: ...; await uow.commit()`. Leaving without commit rolls back.

    Raises domain.errors.BackendUnavailable when the database cannot be reached, on entry,
    on any repository call or on commit: callers never see a driver's exception."""

    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def services(self) -> ServiceRepository: ...

    @property
    def operations(self) -> OperationRepository: ...

    @property
    def request_ids(self) -> RequestIdRepository: ...

    @property
    def connections(self) -> ConnectionRepository: ...

    @property
    def custom_domains(self) -> CustomDomainRepository: ...

    @property
    def certificates(self) -> CertificateRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def retention(self) -> RetentionRepository: ...

    @property
    def tags(self) -> TagRepository: ...

    @property
    def config_resources(self) -> ConfigResourceRepository: ...

    @property
    def vpc(self) -> VpcRepository: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def record(self, event: Event) -> None:
        """Queues an outbox event; it is written with the transaction's other changes."""
        ...

    async def now(self) -> datetime:
        """The database clock: the one time source of every rule about time."""
        ...

    async def flush_events(self) -> None:
        """Writes the recorded events now, inside the current transaction."""
        ...

    async def start_operation(
        self, operation: Operation, job: OperationJob, *, saving: Service | None = None
    ) -> None:
        """Adds `operation` and enqueues its `job` (after saving `saving`'s state, when
        given), in this transaction. The writes may be held until commit and sent with it
        (they need no answer before then): when commit returns, `saving`'s version and
        updated_at are the saved row's."""
        ...

    async def commit(self) -> None:
        """Commits everything. Raises LeaseLost, having committed nothing, when a job's
        completion held until now (JobRepository.complete) found the lease gone."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
