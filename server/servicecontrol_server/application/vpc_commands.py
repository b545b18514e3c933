"""The VPC use cases: VPC connectors (revisions per name, ACTIVE until deleted, then
INACTIVE), VPC ingress connections (one per service, AVAILABLE once recorded), and the
rules a service's network configuration obeys. Each mutation is one transaction with
its outbox event. Nothing is provisioned: the records are what exists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..domain import events, names, vpc
from ..domain import tags as tag_rules
from ..domain.errors import (
    DomainError,
    FieldViolation,
    InvalidRequest,
    InvalidState,
    QuotaExceeded,
    ServiceNotFound,
    VpcConnectorInUse,
    VpcConnectorNameTaken,
    VpcConnectorNotActive,
    VpcConnectorNotFound,
    VpcIngressConnectionNameTaken,
    VpcIngressConnectionNotFound,
)
from ..domain.model import Service, ServiceStatus
from ..domain.vpc import (
    VpcConnector,
    VpcConnectorStatus,
    VpcIngressConnection,
    VpcIngressConnectionStatus,
)
from ..settings import Settings
from .arns import owned_arn, owned_resource_id
from .idempotency import fingerprint as request_fingerprint
from .idempotency import first_result, request_id_violations
from .pagination import PageTokens, page_size, parse_time_position, time_position
from .ports import UnitOfWork
from .regions import request_region
from .results import Page

MAX_CONNECTORS_PAGE = 100
MAX_INGRESS_PAGE = 100
# App Runner's quota: one VPC ingress connection per service.
INGRESS_PER_SERVICE = 1
# Services in these states have nothing an ingress connection could reach.
_INGRESS_SERVICE_STATES = frozenset(
    {ServiceStatus.RUNNING, ServiceStatus.PAUSED, ServiceStatus.OPERATION_IN_PROGRESS}
)


class VpcCommands:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: Settings) -> None:
        self.uow = uow_factory
        self.settings = settings
        self.tokens = PageTokens(settings.page_token_key)

    # ----- connectors -----

    async def create_vpc_connector(
        self,
        account_id: str,
        name: str,
        subnets: Sequence[str],
        security_groups: Sequence[str] = (),
        tags: Sequence[tuple[str, str]] = (),
        request_id: str = "",
        validate_only: bool = False,
    ) -> VpcConnector:
        subnets, security_groups = list(subnets), list(security_groups)
        violations = vpc.connector_violations(name, subnets, security_groups)
        violations += request_id_violations(request_id)
        violations += tag_rules.tag_violations(tags) + tag_rules.check_count({}, dict(tags))
        if violations:
            raise InvalidRequest(violations)
        region = request_region(self.settings)
        fingerprint = request_fingerprint(
            "CreateVpcConnector", region, name, subnets, security_groups, *tags
        )
        connector_id = names.new_resource_id()
        async with self.uow() as uow:
            # Serialises the account's creations: the name check, the revision and the
            # quota count cannot be passed by two concurrent calls at once.
            await uow.accounts.lock(account_id)
            first = await first_result(
                uow, account_id, request_id, fingerprint, "vpc_connector", connector_id
            )
            if first is not None:
                return await self._kept_connector(uow, account_id, first)
            existing = await uow.vpc.active_connector_arn_with_name(account_id, region, name)
            if existing:
                raise VpcConnectorNameTaken(
                    f"A VPC connector named {name} already exists: {existing}.",
                    {"vpcConnectorName": name, "vpcConnectorArn": existing},
                )
            usage = await uow.vpc.count_active_connectors(account_id, region)
            if usage >= self.settings.vpc_connector_quota:
                raise QuotaExceeded(
                    "VPC_CONNECTOR_QUOTA_EXCEEDED",
                    "VPC connectors",
                    self.settings.vpc_connector_quota,
                    usage,
                    f"account {account_id} in {region}",
                )
            revision = await uow.vpc.last_connector_revision(account_id, region, name) + 1
            connector = VpcConnector(
                connector_id=connector_id,
                account_id=account_id,
                name=name,
                revision=revision,
                arn=vpc.connector_arn(region, account_id, name, revision, connector_id),
                subnets=subnets,
                security_groups=security_groups,
                status=VpcConnectorStatus.ACTIVE,
                created_at=await uow.now(),
            )
            if validate_only:
                return connector
            await uow.vpc.add_connector(connector)
            await uow.tags.put(account_id, connector.arn, dict(tags))
            uow.record(events.vpc_connector_created(connector))
            await uow.commit()
        return connector

    async def describe_vpc_connector(self, account_id: str, arn: str) -> VpcConnector:
        """Any revision, INACTIVE ones included until purged."""
        self._owned(arn, "vpcconnector", "vpc_connector_arn", account_id)
        async with self.uow() as uow:
            connector = await uow.vpc.connector_by_arn(account_id, arn)
        if connector is None:
            raise connector_not_found(arn)
        return connector

    async def list_vpc_connectors(self, account_id: str, size: int, token: str) -> Page:
        limit = page_size(size, MAX_CONNECTORS_PAGE)
        region = request_region(self.settings)
        filters = {"account": account_id, "region": region}
        after = parse_time_position(self.tokens.decode(token, "vpc_connectors", filters))
        async with self.uow() as uow:
            items = await uow.vpc.list_connectors(account_id, region, after, limit + 1)
        return self._page(items, limit, "vpc_connectors", filters, lambda c: c.connector_id)

    async def delete_vpc_connector(
        self, account_id: str, arn: str, request_id: str = "", validate_only: bool = False
    ) -> VpcConnector:
        violations = request_id_violations(request_id)
        connector_id = self._owned(arn, "vpcconnector", "vpc_connector_arn", account_id, violations)
        fingerprint = request_fingerprint("DeleteVpcConnector", arn)
        async with self.uow() as uow:
            first = await first_result(
                uow, account_id, request_id, fingerprint, "vpc_connector", connector_id
            )
            if first is not None:
                return await self._kept_connector(uow, account_id, first)
            # Service creation and update lock the same row before taking the connector
            # up, so a service and this delete cannot both succeed.
            connector = await uow.vpc.connector_by_arn(account_id, arn, for_update=True)
            if connector is None or connector.status is VpcConnectorStatus.INACTIVE:
                raise connector_not_found(arn)
            users = await uow.vpc.services_using_connector(arn)
            if users:
                raise VpcConnectorInUse(
                    "Provided VPC connector arn is being used by other services. "
                    f"ARN: {arn}. Services: {', '.join(users)}.",
                    {"vpcConnectorArn": arn, "serviceArns": ",".join(users)},
                )
            if validate_only:
                return connector
            await uow.vpc.deactivate_connector(
                connector, self.settings.connection_tombstone_retention_seconds
            )
            await uow.tags.delete_all(arn)
            uow.record(events.vpc_connector_deleted(connector))
            await uow.commit()
        return connector

    # ----- ingress connections -----

    async def create_vpc_ingress_connection(
        self,
        account_id: str,
        service_arn: str,
        name: str,
        vpc_id: str,
        vpc_endpoint_id: str,
        tags: Sequence[tuple[str, str]] = (),
        request_id: str = "",
        validate_only: bool = False,
    ) -> VpcIngressConnection:
        arn = self._ingress_request(
            account_id, service_arn, name, vpc_id, vpc_endpoint_id, tags, request_id
        )
        fingerprint = request_fingerprint(
            "CreateVpcIngressConnection", service_arn, name, vpc_id, vpc_endpoint_id, *tags
        )
        connection_id = names.new_resource_id()
        region = request_region(self.settings)
        async with self.uow() as uow:
            await uow.accounts.lock(account_id)
            first = await first_result(
                uow, account_id, request_id, fingerprint, "vpc_ingress_connection", connection_id
            )
            if first is not None:
                return await self._kept_ingress(uow, account_id, first)
            # Locked as DeleteService and UpdateService lock it: the service cannot be
            # deleted or made public while this connection is being recorded.
            service = await uow.services.get(account_id, arn.resource_id, for_update=True)
            if (
                service is None
                or service.service_arn != service_arn
                or service.status is ServiceStatus.DELETED
            ):
                raise _service_not_found(service_arn)
            _check_ingress_target(service)
            existing = await uow.vpc.live_ingress_arn_with_name(account_id, region, name)
            if existing:
                raise VpcIngressConnectionNameTaken(
                    f"A VPC ingress connection named {name} already exists: {existing}.",
                    {"vpcIngressConnectionName": name, "vpcIngressConnectionArn": existing},
                )
            present = await uow.vpc.live_ingress_for_service(service.service_id)
            if len(present) >= INGRESS_PER_SERVICE:
                raise QuotaExceeded(
                    "VPC_INGRESS_CONNECTION_QUOTA_EXCEEDED",
                    "VPC ingress connections",
                    INGRESS_PER_SERVICE,
                    len(present),
                    f"service {service_arn} (it has {present[0].arn})",
                )
            connection = VpcIngressConnection(
                connection_id=connection_id,
                account_id=account_id,
                name=name,
                arn=vpc.ingress_connection_arn(region, account_id, name, connection_id),
                service_arn=service_arn,
                service_id=service.service_id,
                vpc_id=vpc_id,
                vpc_endpoint_id=vpc_endpoint_id,
                domain_name=f"{names.new_url_label()}.{self.settings.service_domain_for(region)}",
                # Recorded, not provisioned: there is nothing to wait for.
                status=VpcIngressConnectionStatus.AVAILABLE,
                created_at=await uow.now(),
            )
            if validate_only:
                return connection
            await uow.vpc.add_ingress(connection)
            await uow.tags.put(account_id, connection.arn, dict(tags))
            uow.record(events.vpc_ingress_connection_created(connection))
            await uow.commit()
        return connection

    async def describe_vpc_ingress_connection(
        self, account_id: str, arn: str
    ) -> VpcIngressConnection:
        """DELETED ones included until purged."""
        self._owned(arn, "vpcingressconnection", "vpc_ingress_connection_arn", account_id)
        async with self.uow() as uow:
            connection = await uow.vpc.ingress_by_arn(account_id, arn)
        if connection is None:
            raise ingress_not_found(arn)
        return connection

    async def list_vpc_ingress_connections(
        self,
        account_id: str,
        service_arn: str,
        vpc_endpoint_id: str,
        size: int,
        token: str,
    ) -> Page:
        if service_arn and names.parse_arn(service_arn, "service") is None:
            raise InvalidRequest([FieldViolation("filter.service_arn", "not a service ARN")])
        limit = page_size(size, MAX_INGRESS_PAGE)
        region = request_region(self.settings)
        filters = {
            "account": account_id,
            "region": region,
            "service": service_arn,
            "endpoint": vpc_endpoint_id,
        }
        after = parse_time_position(self.tokens.decode(token, "vpc_ingress", filters))
        async with self.uow() as uow:
            items = await uow.vpc.list_ingress(
                account_id, region, service_arn or None, vpc_endpoint_id or None, after, limit + 1
            )
        return self._page(items, limit, "vpc_ingress", filters, lambda c: c.connection_id)

    async def update_vpc_ingress_connection(
        self,
        account_id: str,
        arn: str,
        vpc_id: str,
        vpc_endpoint_id: str,
        request_id: str = "",
        validate_only: bool = False,
    ) -> VpcIngressConnection:
        violations = vpc.ingress_configuration_violations(vpc_id, vpc_endpoint_id)
        violations += request_id_violations(request_id)
        connection_id = self._owned(
            arn, "vpcingressconnection", "vpc_ingress_connection_arn", account_id, violations
        )
        fingerprint = request_fingerprint(
            "UpdateVpcIngressConnection", arn, vpc_id, vpc_endpoint_id
        )
        async with self.uow() as uow:
            first = await first_result(
                uow, account_id, request_id, fingerprint, "vpc_ingress_connection", connection_id
            )
            if first is not None:
                return await self._kept_ingress(uow, account_id, first)
            connection = await self._live_ingress(uow, account_id, arn)
            _check_ingress_state(connection, vpc.INGRESS_UPDATABLE, "updated")
            connection.vpc_id, connection.vpc_endpoint_id = vpc_id, vpc_endpoint_id
            # Recorded, not provisioned: the update is done as soon as it is written.
            connection.status = VpcIngressConnectionStatus.AVAILABLE
            if validate_only:
                return connection
            await uow.vpc.update_ingress(connection)
            uow.record(events.vpc_ingress_connection_updated(connection))
            await uow.commit()
        return connection

    async def delete_vpc_ingress_connection(
        self, account_id: str, arn: str, request_id: str = "", validate_only: bool = False
    ) -> VpcIngressConnection:
        violations = request_id_violations(request_id)
        connection_id = self._owned(
            arn, "vpcingressconnection", "vpc_ingress_connection_arn", account_id, violations
        )
        fingerprint = request_fingerprint("DeleteVpcIngressConnection", arn)
        async with self.uow() as uow:
            first = await first_result(
                uow, account_id, request_id, fingerprint, "vpc_ingress_connection", connection_id
            )
            if first is not None:
                return await self._kept_ingress(uow, account_id, first)
            connection = await self._live_ingress(uow, account_id, arn)
            _check_ingress_state(connection, vpc.INGRESS_DELETABLE, "deleted")
            if validate_only:
                return connection
            await delete_ingress(uow, self.settings, connection, "requested")
            await uow.commit()
        return connection

    # ----- internals -----

    def _ingress_request(
        self,
        account_id: str,
        service_arn: str,
        name: str,
        vpc_id: str,
        vpc_endpoint_id: str,
        tags: Sequence[tuple[str, str]],
        request_id: str,
    ) -> names.Arn:
        """The checks of a CreateVpcIngressConnection request; the service's ARN."""
        violations: list[FieldViolation] = []
        if not name:
            violations.append(FieldViolation("vpc_ingress_connection_name", "required"))
        elif not vpc.is_name(name):
            violations.append(FieldViolation("vpc_ingress_connection_name", vpc.NAME_RULE))
        violations += vpc.ingress_configuration_violations(vpc_id, vpc_endpoint_id)
        violations += request_id_violations(request_id)
        violations += tag_rules.tag_violations(tags) + tag_rules.check_count({}, dict(tags))
        return owned_arn(
            service_arn,
            lambda text: names.parse_arn(text, "service"),
            field="service_arn",
            what="a service",
            account_id=account_id,
            region=request_region(self.settings),
            not_found=_service_not_found,
            violations=violations,
        )

    async def _live_ingress(
        self, uow: UnitOfWork, account_id: str, arn: str
    ) -> VpcIngressConnection:
        connection = await uow.vpc.ingress_by_arn(account_id, arn, for_update=True)
        if connection is None or connection.status is VpcIngressConnectionStatus.DELETED:
            raise ingress_not_found(arn)
        return connection

    async def _kept_connector(
        self, uow: UnitOfWork, account_id: str, connector_id: str
    ) -> VpcConnector:
        """Same request_id, same answer: the first call's connector as it is now."""
        connector = await uow.vpc.connector(account_id, connector_id)
        if connector is None:
            raise VpcConnectorNotFound(
                f"VPC connector {connector_id} is no longer kept.", {"vpcConnectorArn": ""}
            )
        return connector

    async def _kept_ingress(
        self, uow: UnitOfWork, account_id: str, connection_id: str
    ) -> VpcIngressConnection:
        connection = await uow.vpc.ingress(account_id, connection_id)
        if connection is None:
            raise VpcIngressConnectionNotFound(
                f"VPC ingress connection {connection_id} is no longer kept.",
                {"vpcIngressConnectionArn": ""},
            )
        return connection

    def _page(
        self,
        items: list[Any],
        limit: int,
        listing: str,
        filters: dict[str, Any],
        key: Callable[[Any], str],
    ) -> Page:
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_token = self.tokens.encode(
                listing, filters, time_position(last.created_at, key(last))
            )
        return Page(items, next_token)

    def _owned(
        self,
        arn: str,
        kind: str,
        field: str,
        account_id: str,
        violations: list[FieldViolation] | None = None,
    ) -> str:
        return owned_vpc_resource_id(
            arn, kind, field, account_id, request_region(self.settings), violations
        )


# ----- shared with the service and tag use cases -----


def connector_not_found(arn: str) -> VpcConnectorNotFound:
    return VpcConnectorNotFound(f"VPC connector {arn} not found.", {"vpcConnectorArn": arn})


def ingress_not_found(arn: str) -> VpcIngressConnectionNotFound:
    return VpcIngressConnectionNotFound(
        f"VPC ingress connection {arn} not found.", {"vpcIngressConnectionArn": arn}
    )


def _service_not_found(arn: str) -> DomainError:
    return ServiceNotFound(f"Service {arn} not found.", {"serviceArn": arn})


def owned_vpc_resource_id(
    arn: str,
    kind: str,
    field: str,
    account_id: str,
    region: str,
    violations: list[FieldViolation] | None = None,
) -> str:
    """The id in a VPC connector or ingress connection ARN of the caller's account and
    region. Malformed: refused with the other violations; elsewhere: not found."""
    return owned_resource_id(
        arn,
        kind=kind,
        field=field,
        account_id=account_id,
        region=region,
        not_found=connector_not_found if kind == "vpcconnector" else ingress_not_found,
        violations=violations,
        parse=vpc.parse_arn,
    )


def network_request_violations(network: dict[str, Any] | None) -> list[FieldViolation]:
    """The request-level checks of a service's network configuration (no I/O)."""
    if network is None:
        return []
    return vpc.network_violations(vpc.normalized_network(network))


async def take_up_network(
    uow: UnitOfWork,
    settings: Settings,
    service: Service,
    requested: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Checks a service's new network configuration against the records, inside the
    service mutation's transaction, and returns it normalized over the current one
    (None when the request has none). Egress
    through a VPC needs an ACTIVE connector of the caller's (locked until commit, as its
    delete locks it); a service with a VPC ingress connection stays private until that
    connection is deleted."""
    if requested is None:
        return None
    current = service.configuration.network if service.configuration else None
    network = vpc.normalized_network(requested, current)
    arn = vpc.egress_connector(network)
    if arn:
        field = f"{vpc.PREFIX}.egress_configuration.vpc_connector_arn"
        # A connector the request names but the caller does not have is a bad request
        # (App Runner's answer), not a missing service.
        missing = InvalidRequest(
            [FieldViolation(field, "no such VPC connector in this account and region")],
            f"VPC connector {arn} not found.",
        )
        try:
            owned_vpc_resource_id(arn, "vpcconnector", field, service.account_id, service.region)
        except VpcConnectorNotFound:
            raise missing from None
        connector = await uow.vpc.connector_by_arn(service.account_id, arn, for_update=True)
        if connector is None:
            raise missing
        if connector.status is not VpcConnectorStatus.ACTIVE:
            raise VpcConnectorNotActive(
                f"VPC connector {arn} is {connector.status.value}; egress needs an ACTIVE one.",
                {"vpcConnectorArn": arn, "status": connector.status.value},
            )
    if vpc.is_publicly_accessible(network):
        present = await uow.vpc.live_ingress_for_service(service.service_id)
        if present:
            raise InvalidState(
                f"Service {service.service_arn} has VPC ingress connection {present[0].arn}; "
                "delete it before making the service publicly accessible.",
                {"serviceArn": service.service_arn, "vpcIngressConnectionArn": present[0].arn},
            )
    return network


async def record_network(uow: UnitOfWork, service: Service) -> None:
    """Writes the service's network configuration, when it has one, with its
    configuration."""
    config = service.configuration
    if config is not None and config.network is not None:
        await uow.vpc.save_network(service.service_id, config.network)


async def check_deletable(uow: UnitOfWork, service: Service) -> None:
    """App Runner refuses to delete a service while a VPC ingress connection of it is
    AVAILABLE."""
    refuse_available_ingress(service, await uow.vpc.live_ingress_for_service(service.service_id))


def refuse_available_ingress(service: Service, connections: Sequence[VpcIngressConnection]) -> None:
    """`check_deletable` on the service's live ingress connections, read already."""
    available = [c for c in connections if c.status is VpcIngressConnectionStatus.AVAILABLE]
    if available:
        raise InvalidState(
            "You cannot delete a Service while it has VpcIngressConnections with a status "
            f"of AVAILABLE. Service Arn: {service.service_arn} VpcIngressConnection Arn: "
            f"{available[0].arn}",
            {"serviceArn": service.service_arn, "vpcIngressConnectionArn": available[0].arn},
        )


async def delete_ingress(
    uow: UnitOfWork, settings: Settings, connection: VpcIngressConnection, reason: str
) -> None:
    """Tombstones the ingress connection with its tags, and records the event."""
    await uow.vpc.mark_ingress_deleted(connection, settings.connection_tombstone_retention_seconds)
    await uow.tags.delete_all(connection.arn)
    uow.record(events.vpc_ingress_connection_deleted(connection, reason))


def _check_ingress_target(service: Service) -> None:
    if service.status not in _INGRESS_SERVICE_STATES:
        raise InvalidState(
            f"Service {service.service_arn} is {service.status.value}; a VPC ingress "
            "connection needs a running, paused or changing service.",
            {"serviceArn": service.service_arn, "status": service.status.value},
        )
    network = service.configuration.network if service.configuration else None
    if vpc.is_publicly_accessible(network):
        raise InvalidState(
            f"Service {service.service_arn} is publicly accessible; set its "
            "NetworkConfiguration.IngressConfiguration.IsPubliclyAccessible to false "
            "before creating a VPC ingress connection for it.",
            {"serviceArn": service.service_arn},
        )


def _check_ingress_state(
    connection: VpcIngressConnection,
    allowed: frozenset[VpcIngressConnectionStatus],
    verb: str,
) -> None:
    if connection.status not in allowed:
        raise InvalidState(
            f"VPC ingress connection {connection.arn} is {connection.status.value}; it can "
            f"be {verb} only when {', '.join(sorted(allowed))}.",
            {
                "vpcIngressConnectionArn": connection.arn,
                "status": connection.status.value,
                "allowedStatuses": ",".join(sorted(allowed)),
            },
        )
