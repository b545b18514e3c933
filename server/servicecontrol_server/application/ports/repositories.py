"""The repository ports, one per aggregate: domain objects in, domain objects out.

The Postgres adapter (adapters/postgres/repositories/) implements them inside one
transaction; tests/unit has in-memory fakes. Every method runs in the unit of work's
transaction, so what one writes, the next one reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ...domain.config_resources import ConfigKind, ConfigResource
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
from ...domain.vpc import VpcConnector, VpcIngressConnection

# A listing position: (created_at, id) of the last item of the previous page.
Cursor = tuple[datetime, str]


@dataclass(frozen=True)
class ServiceRemoval:
    """What tombstoning a service removed with it (ServiceRepository.tombstone)."""

    # The kinds of configuration record removed ("service_configuration",
    # "compute_instance").
    configuration_records: list[str]
    # The certificate records of its custom domains, unlinked and retained, by domain name.
    retained_certificates: list[Certificate]
    # Whether ingress connections of the service that are not DELETED remain: the
    # caller deletes those itself (they carry events of their own).
    live_ingress: bool


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

    async def get_locked_with_ingress(
        self, account_id: str, service_id: str
    ) -> tuple[Service | None, list[VpcIngressConnection]]:
        """`get(for_update=True)`, then (read once the lock is held, so nothing committed
        by the lock's previous holder is missed) the service's ingress connections that
        are not deleted, as `VpcRepository.live_ingress_for_service` returns them:
        DeleteService's reads, which an adapter may send together."""
        ...

    async def live_arn_with_name(self, account_id: str, region: str, name: str) -> str | None: ...

    async def count_live(self, account_id: str, region: str) -> int: ...

    async def list_live(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[Service]:
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

    async def tombstone(
        self, service: Service, tombstone_seconds: int, certificate_retention_seconds: int
    ) -> ServiceRemoval:
        """What a finished delete writes, at once: removes the service's configuration
        records, its custom domains (their certificate records unlinked and retained for
        `certificate_retention_seconds`) and its tags, then tombstones it as
        mark_deleted does. Call it with the service row locked (get(for_update=True))."""
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

    async def mark_step(
        self, operation_id: str, step: str, attempt: int, *, durable: bool = True
    ) -> None:
        """IN_PROGRESS at `step` of attempt `attempt`; clears the next attempt time.

        durable=False: the transaction's commit does not wait for its write to reach the
        disk, so a crash of the database may undo the whole transaction. Only for a
        transaction that writes nothing but progress a later attempt writes again."""
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
        waiting on it wakes (the adapter notifies; the fake wakes its waiters). The write
        may be held until the commit and sent with it."""
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

    async def live_arn_with_name(self, account_id: str, region: str, name: str) -> str | None: ...

    async def count_live(self, account_id: str, region: str) -> int: ...

    async def add(self, connection: Connection) -> Connection: ...

    async def list_page(
        self, account_id: str, region: str, name: str | None, after: Cursor | None, limit: int
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
        self, account_id: str, region: str, domain_name: str, *, for_update: bool = False
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
        self, account_id: str, region: str, domain_name: str | None, after: str | None, limit: int
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

    async def binding(
        self, account_id: str | None, limit: int
    ) -> list[tuple[CustomDomain, Certificate]]:
        """Associations whose issued certificate is being bound (BINDING_CERTIFICATE),
        with their certificate records, oldest first."""
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
        """Deletes the job if `lease_token` still holds its lease; else raises LeaseLost.
        The delete may be held until the unit of work's commit and sent with it: the
        commit then raises LeaseLost, having committed nothing."""
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


# A position in a configuration listing: (name, revision) of the last item shown.
ConfigPosition = tuple[str, int]


class ConfigResourceRepository(Protocol):
    """Auto scaling and observability configuration revisions. Every read fills in the
    derived `latest` (the highest ACTIVE revision of its name) and
    `has_associated_service` (a live service uses it)."""

    async def ensure_default(self, default: ConfigResource) -> None:
        """Inserts the account's built-in configuration unless its row exists (in any
        status: a deleted one does not come back)."""
        ...

    async def get(
        self, account_id: str, kind: ConfigKind, config_id: str, *, for_update: bool = False
    ) -> ConfigResource | None:
        """The revision with that id, ACTIVE or INACTIVE."""
        ...

    async def active_revisions(
        self,
        account_id: str,
        region: str,
        kind: ConfigKind,
        name: str,
        *,
        for_update: bool = False,
    ) -> list[ConfigResource]:
        """The name's ACTIVE revisions, lowest revision first."""
        ...

    async def count_active_names(self, account_id: str, region: str, kind: ConfigKind) -> int: ...

    async def get_default(
        self, account_id: str, region: str, kind: ConfigKind, *, for_update: bool = False
    ) -> ConfigResource | None: ...

    async def add(self, config: ConfigResource) -> ConfigResource:
        """Inserts the revision; sets created_at from the database clock."""
        ...

    async def mark_inactive(self, config: ConfigResource) -> None:
        """INACTIVE, not the default, deleted_at from the database clock."""
        ...

    async def set_default(
        self, account_id: str, region: str, kind: ConfigKind, config: ConfigResource
    ) -> None:
        """Makes `config` the only default of its kind in its account and region."""
        ...

    async def list_page(
        self,
        account_id: str,
        region: str,
        kind: ConfigKind,
        name: str | None,
        latest_only: bool,
        after: ConfigPosition | None,
        limit: int,
    ) -> list[ConfigResource]:
        """ACTIVE revisions by (name, revision), after the position; only each name's
        highest when `latest_only`."""
        ...

    async def services_using(
        self, account_id: str, arn: str, after: str | None, limit: int
    ) -> list[str]:
        """The ARNs of the live services whose configuration uses the revision, by ARN."""
        ...

    async def in_use(self, arns: list[str]) -> bool:
        """Whether a live service uses one of the revisions, or a service update waiting
        to be applied will."""
        ...


class VpcRepository(Protocol):
    """VPC connectors, VPC ingress connections, and the network configuration of services
    (kept with the service's configuration and deleted with it)."""

    # ----- connectors -----

    async def connector_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> VpcConnector | None:
        """`for_update` locks the connector until commit: a service taking it up and
        its delete take turns."""
        ...

    async def connector(self, account_id: str, connector_id: str) -> VpcConnector | None: ...

    async def active_connector_arn_with_name(
        self, account_id: str, region: str, name: str
    ) -> str | None: ...

    async def last_connector_revision(self, account_id: str, region: str, name: str) -> int:
        """The highest revision the name has had (0 for none), tombstones included."""
        ...

    async def count_active_connectors(self, account_id: str, region: str) -> int: ...

    async def add_connector(self, connector: VpcConnector) -> VpcConnector:
        """Inserts it; sets created_at from the database clock."""
        ...

    async def list_connectors(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[VpcConnector]:
        """Newest first, INACTIVE ones included until purged."""
        ...

    async def deactivate_connector(self, connector: VpcConnector, tombstone_seconds: int) -> None:
        """INACTIVE, deleted now, purged `tombstone_seconds` from now."""
        ...

    async def services_using_connector(self, connector_arn: str) -> list[str]:
        """The ARNs of non-deleted services whose egress goes through the connector."""
        ...

    # ----- a service's network configuration -----

    async def save_network(self, service_id: str, network: dict[str, Any]) -> None:
        """Records the network configuration with the service's configuration (which
        must exist); the service's next read carries it."""
        ...

    # ----- ingress connections -----

    async def ingress_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> VpcIngressConnection | None: ...

    async def ingress(self, account_id: str, connection_id: str) -> VpcIngressConnection | None: ...

    async def live_ingress_arn_with_name(
        self, account_id: str, region: str, name: str
    ) -> str | None: ...

    async def live_ingress_for_service(self, service_id: str) -> list[VpcIngressConnection]:
        """The service's ingress connections that are not DELETED."""
        ...

    async def add_ingress(self, connection: VpcIngressConnection) -> VpcIngressConnection: ...

    async def list_ingress(
        self,
        account_id: str,
        region: str,
        service_arn: str | None,
        vpc_endpoint_id: str | None,
        after: Cursor | None,
        limit: int,
    ) -> list[VpcIngressConnection]:
        """Newest first, DELETED ones included until purged, filtered by service and by
        VPC endpoint when given."""
        ...

    async def update_ingress(self, connection: VpcIngressConnection) -> None:
        """Writes its VPC configuration and status."""
        ...

    async def mark_ingress_deleted(
        self, connection: VpcIngressConnection, tombstone_seconds: int
    ) -> None: ...

    # ----- retention (the reaper) -----

    async def purge_connector_tombstones(self, batch: int) -> list[VpcConnector]:
        """Deletes at most `batch` INACTIVE connectors past their purge time (database
        clock), skipping rows another reaper holds; returns them."""
        ...

    async def purge_ingress_tombstones(self, batch: int) -> list[VpcIngressConnection]:
        """The same, for DELETED ingress connections."""
        ...
