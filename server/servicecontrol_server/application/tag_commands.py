"""Tags on App Runner resources (services, connections, auto scaling and observability
configuration revisions, VPC connectors and VPC ingress connections): TagResource, UntagResource,
ListTagsForResource. A change is one transaction with its outbox event; a resource's
tags are deleted with it (the service delete's outcome, DeleteConnection)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..domain import config_resources as config_rules
from ..domain import events, names, vpc
from ..domain import tags as tag_rules
from ..domain.config_resources import ConfigKind, ConfigStatus
from ..domain.errors import (
    ConnectionNotFound,
    DomainError,
    FieldViolation,
    InvalidRequest,
    ServiceNotFound,
)
from ..domain.model import ConnectionStatus, ServiceStatus
from ..domain.vpc import VpcConnectorStatus, VpcIngressConnectionStatus
from ..settings import Settings
from .ports import UnitOfWork
from .regions import request_region
from .vpc_commands import connector_not_found, ingress_not_found

RESOURCE_FIELD = "resource_arn"
# The kinds of resource that carry tags, with the error that says one is missing.
_TAGGABLE: dict[str, Callable[[str], DomainError]] = {
    "service": lambda arn: ServiceNotFound(f"Service {arn} not found.", {"serviceArn": arn}),
    "connection": lambda arn: ConnectionNotFound(
        f"Connection {arn} not found.", {"connectionArn": arn}
    ),
    # Auto scaling and observability configurations (full ARNs: one revision each).
    ConfigKind.AUTO_SCALING.value: lambda arn: config_rules.not_found(ConfigKind.AUTO_SCALING, arn),
    ConfigKind.OBSERVABILITY.value: lambda arn: config_rules.not_found(
        ConfigKind.OBSERVABILITY, arn
    ),
    "vpcconnector": connector_not_found,
    "vpcingressconnection": ingress_not_found,
}


class TagCommands:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: Settings) -> None:
        self.uow = uow_factory
        self.settings = settings

    async def list_tags(self, account_id: str, resource_arn: str) -> dict[str, str]:
        async with self.uow() as uow:
            await self._live(uow, account_id, resource_arn)
            return await uow.tags.for_resource(resource_arn)

    async def tag_resource(
        self, account_id: str, resource_arn: str, tags: Sequence[tuple[str, str]]
    ) -> None:
        violations = tag_rules.tag_violations(tags)
        if not tags:
            violations.append(FieldViolation("tags", "at least one tag is required"))
        if violations:
            raise InvalidRequest(violations)
        added = dict(tags)
        async with self.uow() as uow:
            await self._live(uow, account_id, resource_arn, lock=True)
            existing = await uow.tags.for_resource(resource_arn)
            violations = tag_rules.check_count(existing, added)
            if violations:
                raise InvalidRequest(violations)
            await uow.tags.put(account_id, resource_arn, added)
            uow.record(events.tags_changed(account_id, resource_arn, added, []))
            await uow.commit()

    async def untag_resource(self, account_id: str, resource_arn: str, keys: Sequence[str]) -> None:
        violations: list[FieldViolation] = []
        for i, key in enumerate(keys):
            violations += tag_rules.key_violations(key, f"tag_keys[{i}]")
        if violations:
            raise InvalidRequest(violations)
        async with self.uow() as uow:
            await self._live(uow, account_id, resource_arn, lock=True)
            removed = await uow.tags.remove(resource_arn, list(dict.fromkeys(keys)))
            if removed:
                uow.record(events.tags_changed(account_id, resource_arn, {}, removed))
            await uow.commit()

    async def _live(
        self, uow: UnitOfWork, account_id: str, resource_arn: str, *, lock: bool = False
    ) -> None:
        """Raises unless `resource_arn` names a live resource of the caller's; `lock`
        holds its row until commit, so a delete and a tag change take turns."""
        kind, arn = _parse(resource_arn)
        if (
            arn.account_id != account_id
            or arn.region != request_region(self.settings)
            or not await _exists(uow, kind, account_id, resource_arn, arn, lock)
        ):
            raise _TAGGABLE[kind](resource_arn)


async def _exists(
    uow: UnitOfWork, kind: str, account_id: str, resource_arn: str, arn: names.Arn, lock: bool
) -> bool:
    """Whether the resource of that kind is live (not deleted, not inactive)."""
    if kind in (ConfigKind.AUTO_SCALING.value, ConfigKind.OBSERVABILITY.value):
        config = await uow.config_resources.get(
            account_id, ConfigKind(kind), arn.resource_id, for_update=lock
        )
        return (
            config is not None
            and config.arn == resource_arn
            and config.status is ConfigStatus.ACTIVE
        )
    if kind == "service":
        service = await uow.services.get(account_id, arn.resource_id, for_update=lock)
        return (
            service is not None
            and service.service_arn == resource_arn
            and service.status is not ServiceStatus.DELETED
        )
    if kind == "vpcconnector":
        connector = await uow.vpc.connector_by_arn(account_id, resource_arn, for_update=lock)
        return connector is not None and connector.status is VpcConnectorStatus.ACTIVE
    if kind == "vpcingressconnection":
        ingress = await uow.vpc.ingress_by_arn(account_id, resource_arn, for_update=lock)
        return ingress is not None and ingress.status is not VpcIngressConnectionStatus.DELETED
    connection = await uow.connections.get_by_arn(account_id, resource_arn, for_update=lock)
    return connection is not None and connection.status is not ConnectionStatus.DELETED


def _parse(resource_arn: str) -> tuple[str, names.Arn]:
    if not resource_arn:
        raise InvalidRequest([FieldViolation(RESOURCE_FIELD, "required")])
    for config_kind in ConfigKind:
        parsed = config_rules.parse_config_arn(resource_arn, config_kind)
        if parsed is not None and parsed.config_id is not None:
            return config_kind.value, names.Arn(
                parsed.region, parsed.account_id, config_kind.value, parsed.name, parsed.config_id
            )
    for kind in ("service", "connection"):
        arn = names.parse_arn(resource_arn, kind)
        if arn is not None:
            return kind, arn
    for kind in ("vpcconnector", "vpcingressconnection"):
        found = vpc.parse_arn(resource_arn, kind)
        if found is not None:
            return kind, names.Arn(
                found.region, found.account_id, kind, found.name, found.resource_id
            )
    raise InvalidRequest(
        [
            FieldViolation(
                RESOURCE_FIELD,
                "not the ARN of a service, connection, VPC connector, VPC ingress connection, or a "
                "revision of an auto scaling or "
                "observability configuration",
            )
        ]
    )
