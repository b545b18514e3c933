"""The repository ports, one per aggregate: domain objects in, domain objects out.

The Postgres adapter (adapters/postgres/repositories/) implements them inside one
transaction; tests/unit has in-memory fakes. Every method runs in the unit of work's
transaction, so what one writes, the next one reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ...domain.model import (
    Certificate,
    CertificateStatus,
    Connection,
    ConnectionStatus,
    CustomDomain,
    CustomDomainStatus,
    Operation,
    OperationStatus,
    Service,
    ServiceConfiguration,
)

# A listing position: (created_at, id) of the last item of the previous page.
Cursor = tuple[datetime, str]


class AccountRepository(Protocol):
    async def lock(self, account_id: str) -> None:
        """Creates the account on first use and locks it until commit. Serialises the
        account's quota-checked creations so concurrent ones cannot exceed a quota."""
        ...


class ServiceRepository(Protocol):
    async def get(
        self, account_id: str, service_id: str, *, for_update: bool = False
    ) -> Service | None:
        """With its configuration. `for_update` locks the service row until commit: the
        lock that serialises every mutation of one service."""
        ...

    async def live_arn_with_name(self, account_id: str, name: str) -> str | None: ...

    async def count_live(self, account_id: str) -> int: ...

    async def list_live(self, account_id: str, after: Cursor | None, limit: int) -> list[Service]:
        """Newest first, (created_at, service_id) descending, after the cursor."""
        ...

    async def add(self, service: Service) -> Service:
        """Inserts the service (and its configuration); sets created_at/updated_at from
        the database clock."""
        ...

    async def save(self, service: Service) -> None:
        """Writes the service's state and bumps its version (and so its etag)."""
        ...

    async def mark_deleted(self, service: Service, tombstone_seconds: int) -> None:
        """Tombstones the service: DELETED, its name and quota slot free, purged by the
        reaper `tombstone_seconds` from now."""
        ...

    async def save_configuration(self, service_id: str, config: ServiceConfiguration) -> None: ...

    async def delete_configuration(self, service_id: str) -> list[str]:
        """Removes the service's configuration records; returns the kinds removed."""
        ...

    async def live_arns_using_connection(self, connection_arn: str) -> list[str]: ...


class OperationRepository(Protocol):
    async def add(self, op: Operation) -> Operation:
        """Inserts the operation; sets started_at/updated_at from the database clock."""
        ...

    async def get(
        self, account_id: str, operation_id: str, *, for_update: bool = False
    ) -> Operation | None: ...

    async def list_for_service(
        self, account_id: str, service_id: str, after: Cursor | None, limit: int
    ) -> list[Operation]:
        """Newest first, (started_at, operation_id) descending, after the cursor."""
        ...

    async def mark_step(self, operation_id: str, step: str, attempt: int) -> None:
        """IN_PROGRESS at `step` of attempt `attempt`; clears the next attempt time."""
        ...

    async def note_retry(
        self,
        operation_id: str,
        last_error: str,
        attempt: int,
        retry_in_seconds: float,
        window_left_seconds: float | None = None,
    ) -> None:
        """Records a failed attempt and when the next one is due (database clock), and,
        for a transient failure, when the job stops retrying (now + window_left)."""
        ...

    async def finish(
        self,
        operation_id: str,
        status: OperationStatus,
        attempt: int,
        *,
        error: dict[str, Any] | None = None,
        deletion_report: dict[str, Any] | None = None,
    ) -> None:
        """Ends the operation with a final `status`. At commit, every WaitOperation
        waiting on it wakes (the adapter notifies; the fake wakes its waiters)."""
        ...


class RequestIdRepository(Protocol):
    async def claim(
        self, account_id: str, request_id: str, fingerprint: str, result_kind: str, result_id: str
    ) -> tuple[str, str, str] | None:
        """Records the key; when it exists already, returns the first call's
        (fingerprint, result_kind, result_id) instead. Concurrent first calls serialise,
        so exactly one of them records."""
        ...


class ConnectionRepository(Protocol):
    async def get_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> Connection | None: ...

    async def get(self, account_id: str, connection_id: str) -> Connection | None: ...

    async def live_arn_with_name(self, account_id: str, name: str) -> str | None: ...

    async def count_live(self, account_id: str) -> int: ...

    async def add(self, connection: Connection) -> Connection: ...

    async def list_page(
        self, account_id: str, name: str | None, after: Cursor | None, limit: int
    ) -> list[Connection]:
        """Newest first, tombstones included (App Runner lists DELETED connections)."""
        ...

    async def set_status(self, connection: Connection, status: ConnectionStatus) -> None: ...

    async def mark_deleted(self, connection: Connection, tombstone_seconds: int) -> None: ...


class CertificateRepository(Protocol):
    """Certificate records: one per account and domain name, linked to the service the
    domain is associated with, or unlinked and retained until `expires_at`."""

    async def get(self, certificate_id: str) -> Certificate | None: ...

    async def get_for_domain(
        self, account_id: str, domain_name: str, *, for_update: bool = False
    ) -> Certificate | None: ...

    async def insert_if_absent(self, cert: Certificate) -> bool:
        """Inserts the record unless the account already has one for the domain; the
        answer is always about committed state."""
        ...

    async def link(
        self,
        cert: Certificate,
        service_id: str,
        service_arn: str,
        status: CertificateStatus,
        records: list[dict[str, str]],
    ) -> None:
        """Links a retained record to a service again: its retention window ends."""
        ...

    async def retain(self, certificate_ids: list[str], retention_seconds: int) -> list[Certificate]:
        """Unlinks the records from their service and starts their retention window;
        returns them, by domain name."""
        ...

    async def set_validation(
        self, certificate_id: str, status: CertificateStatus, records: list[dict[str, str]]
    ) -> None: ...

    async def purge_if_expired(self, certificate_id: str) -> Certificate | None:
        """Deletes the record if it is unlinked and its retention has ended, by the same
        rule as the reaper; returns it if it was deleted."""
        ...

    async def list_page(
        self, account_id: str, domain_name: str | None, after: str | None, limit: int
    ) -> list[Certificate]:
        """By domain name, after `after`."""
        ...


class CustomDomainRepository(Protocol):
    async def for_service(self, service_id: str) -> list[CustomDomain]: ...

    async def get(self, service_id: str, domain_name: str) -> CustomDomain | None: ...

    async def page_for_service(
        self, service_id: str, after: str | None, limit: int
    ) -> list[CustomDomain]: ...

    async def count_for_service(self, service_id: str) -> int: ...

    async def add(self, domain: CustomDomain) -> CustomDomain: ...

    async def set_status(
        self, service_id: str, domain_name: str, status: CustomDomainStatus
    ) -> None: ...

    async def remove(self, service_id: str, domain_name: str) -> str | None:
        """Deletes the association; returns its certificate id (None if there was none)."""
        ...

    async def remove_all(self, service_id: str) -> list[str]:
        """Deletes every association of the service; returns their certificate ids."""
        ...

    async def awaiting_validation(
        self, account_id: str | None, after: tuple[datetime, str, str] | None, limit: int
    ) -> list[tuple[CustomDomain, Certificate]]:
        """Associations waiting for DNS validation, with their certificate records, in
        (created_at, service_id, domain_name) order after `after`."""
        ...


class JobRepository(Protocol):
    """The jobs of the unit of work's transaction: enqueued with the state change that
    needs them, and completed (fenced by the lease) with the outcome they write."""

    async def enqueue(
        self,
        *,
        kind: str,
        payload: dict[str, Any],
        max_attempts: int,
        operation_id: str | None = None,
        service_id: str | None = None,
        account_id: str | None = None,
        progress: dict[str, Any] | None = None,
    ) -> int:
        """Adds a queued job; workers are woken at commit. Returns its id."""
        ...

    async def take_failed_progress(self, kind: str, service_id: str) -> dict[str, Any] | None:
        """Removes the failed `kind` jobs of the service and returns the newest one's
        progress, so that a new job resumes where it stopped."""
        ...

    async def complete(self, job_id: int, lease_token: str) -> None:
        """Deletes the job if `lease_token` still holds its lease; else raises LeaseLost."""
        ...

    async def mark_failed(self, job_id: int, lease_token: str, error: str) -> None:
        """Marks the job failed (kept, with its progress) if `lease_token` still holds its
        lease; else raises LeaseLost."""
        ...


@dataclass(frozen=True)
class PurgedCertificate:
    account_id: str
    certificate_arn: str
    domain_name: str


@dataclass(frozen=True)
class PurgedConnection:
    account_id: str
    connection_arn: str
    connection_name: str


@dataclass(frozen=True)
class PurgedService:
    account_id: str
    service_arn: str
    service_name: str
    service_id: str


@dataclass(frozen=True)
class PurgedServices:
    services: list[PurgedService]
    # Their operations and failed jobs, deleted with them.
    operations: int
    jobs: int


class RetentionRepository(Protocol):
    """Purges of what is kept for a retention window. Each call deletes at most `batch`
    rows that are due by the database clock, skipping rows another reaper holds; the
    caller commits each batch with the events it records."""

    async def purge_expired_certificates(self, batch: int) -> list[PurgedCertificate]: ...

    async def purge_connection_tombstones(self, batch: int) -> list[PurgedConnection]: ...

    async def purge_service_tombstones(self, batch: int) -> PurgedServices: ...

    async def purge_ended_operations(self, older_than_seconds: float, batch: int) -> int: ...

    async def purge_request_ids(self, older_than_seconds: float, batch: int) -> int: ...

    async def purge_orphaned_failed_jobs(self, batch: int) -> int: ...

    async def prune_delivered_events(self, older_than_seconds: float, batch: int) -> int: ...


class TagRepository(Protocol):
    """The tags of resources, by ARN."""

    async def for_resource(self, resource_arn: str) -> dict[str, str]: ...

    async def put(self, account_id: str, resource_arn: str, tags: dict[str, str]) -> None:
        """Adds the tags, replacing the value of keys the resource already has."""
        ...

    async def remove(self, resource_arn: str, keys: list[str]) -> list[str]:
        """Removes the keys the resource has; returns those it had."""
        ...

    async def delete_all(self, resource_arn: str) -> int: ...
