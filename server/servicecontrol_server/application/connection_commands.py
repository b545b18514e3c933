"""The connection use cases: create, list, delete, and the operator's completion of the
provider handshake. Each mutation is one transaction with its outbox event."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from ..domain import events, names
from ..domain import tags as tag_rules
from ..domain.errors import (
    ConnectionInUse,
    ConnectionNameTaken,
    ConnectionNotFound,
    FieldViolation,
    InvalidRequest,
    InvalidState,
    QuotaExceeded,
)
from ..domain.model import Connection, ConnectionStatus, ProviderType
from ..settings import Settings
from .arns import owned_resource_id
from .idempotency import fingerprint as request_fingerprint
from .idempotency import first_result, request_id_violations
from .pagination import PageTokens, parse_time_position, time_position
from .pagination import page_size as bounded_page_size
from .ports import UnitOfWork
from .regions import in_region, request_region
from .results import Page

MAX_CONNECTIONS_PAGE = 100
NAME_RULE = "4-32 characters: letters, digits, - and _, starting with a letter or digit"

# The handshake moves a connection out of PENDING_HANDSHAKE; an ERROR one may be retried.
HANDSHAKE_FROM: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    ConnectionStatus.AVAILABLE: frozenset(
        {ConnectionStatus.PENDING_HANDSHAKE, ConnectionStatus.ERROR}
    ),
    ConnectionStatus.ERROR: frozenset({ConnectionStatus.PENDING_HANDSHAKE}),
}


class ConnectionCommands:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: Settings) -> None:
        self.uow = uow_factory
        self.settings = settings
        self.tokens = PageTokens(settings.page_token_key)

    async def create_connection(
        self,
        account_id: str,
        name: str,
        provider_type: str,
        request_id: str = "",
        validate_only: bool = False,
        tags: Sequence[tuple[str, str]] = (),
    ) -> Connection:
        violations: list[FieldViolation] = []
        if not name:
            violations.append(FieldViolation("connection_name", "required"))
        elif not names.is_connection_name(name):
            violations.append(FieldViolation("connection_name", NAME_RULE))
        if provider_type not in ProviderType.__members__:
            violations.append(FieldViolation("provider_type", "required: one of GITHUB, BITBUCKET"))
        violations += request_id_violations(request_id)
        violations += tag_rules.tag_violations(tags) + tag_rules.check_count({}, dict(tags))
        if violations:
            raise InvalidRequest(violations)

        region = request_region(self.settings)
        fingerprint = request_fingerprint("CreateConnection", region, name, provider_type, *tags)
        connection_id = names.new_resource_id()
        async with self.uow() as uow:
            # Serialises the account's creations: the name check and the quota count
            # below cannot both pass for two concurrent calls.
            await uow.accounts.lock(account_id)
            replay = await self._replay(uow, account_id, request_id, fingerprint, connection_id)
            if replay is not None:
                return replay
            existing = await uow.connections.live_arn_with_name(account_id, region, name)
            if existing:
                raise ConnectionNameTaken(
                    f"A connection named {name} already exists.",
                    {"connectionName": name, "connectionArn": existing},
                )
            usage = await uow.connections.count_live(account_id, region)
            if usage >= self.settings.connection_quota:
                raise QuotaExceeded(
                    "CONNECTION_QUOTA_EXCEEDED",
                    "connections",
                    self.settings.connection_quota,
                    usage,
                    f"account {account_id} in {region}",
                )
            connection = Connection(
                connection_id=connection_id,
                account_id=account_id,
                connection_name=name,
                connection_arn=names.connection_arn(region, account_id, name, connection_id),
                provider_type=ProviderType(provider_type),
                status=ConnectionStatus.PENDING_HANDSHAKE,
                created_at=await uow.now(),
            )
            if validate_only:
                return connection
            await uow.connections.add(connection)
            await uow.tags.put(account_id, connection.connection_arn, dict(tags))
            uow.record(events.connection_created(connection))
            await uow.commit()
        return connection

    async def list_connections(
        self, account_id: str, name: str, page_size: int, page_token: str
    ) -> Page:
        if name and not names.is_connection_name(name):
            raise InvalidRequest([FieldViolation("connection_name", NAME_RULE)])
        limit = bounded_page_size(page_size, MAX_CONNECTIONS_PAGE)
        region = request_region(self.settings)
        filters = {"account": account_id, "region": region, "name": name}
        after = parse_time_position(self.tokens.decode(page_token, "connections", filters))
        async with self.uow() as uow:
            items = await uow.connections.list_page(
                account_id, region, name or None, after, limit + 1
            )
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_token = self.tokens.encode(
                "connections", filters, time_position(last.created_at, last.connection_id)
            )
        return Page(items, next_token)

    async def delete_connection(
        self,
        account_id: str,
        connection_arn: str,
        request_id: str = "",
        validate_only: bool = False,
    ) -> Connection:
        violations = request_id_violations(request_id)
        connection_id = self._connection_id(account_id, connection_arn, violations)
        fingerprint = request_fingerprint("DeleteConnection", connection_arn)
        async with self.uow() as uow:
            replay = await self._replay(uow, account_id, request_id, fingerprint, connection_id)
            if replay is not None:
                return replay
            # Service creation locks the same row before checking the connection, so a
            # create and this delete cannot both succeed: whichever locks second sees the
            # other's outcome (the new service, or the DELETED status).
            connection = await uow.connections.get_by_arn(
                account_id, connection_arn, for_update=True
            )
            if connection is None or connection.status is ConnectionStatus.DELETED:
                raise _not_found(connection_arn)
            users = await uow.services.live_arns_using_connection(connection_arn)
            if users:
                raise ConnectionInUse(
                    f"Connection {connection_arn} is used by {len(users)} service(s): "
                    f"{', '.join(users)}. Delete them first.",
                    {"connectionArn": connection_arn, "serviceArns": ",".join(users)},
                )
            if validate_only:
                return connection
            await uow.connections.mark_deleted(
                connection, self.settings.connection_tombstone_retention_seconds
            )
            await uow.tags.delete_all(connection_arn)
            uow.record(events.connection_deleted(connection))
            await uow.commit()
        return connection

    async def complete_handshake(
        self, account_id: str, connection_arn: str, status: str
    ) -> Connection:
        """What the provider's handshake would do: PENDING_HANDSHAKE (or ERROR) becomes
        AVAILABLE, or PENDING_HANDSHAKE becomes ERROR. Asking for the status the
        connection already has changes nothing. An operator's command, not a request: it
        acts in the region the ARN names, when that region is served."""
        violations: list[FieldViolation] = []
        target: ConnectionStatus | None = None
        with contextlib.suppress(ValueError):
            target = ConnectionStatus(status)
        if target not in HANDSHAKE_FROM:
            violations.append(FieldViolation("status", "one of AVAILABLE, ERROR"))
        parsed = names.parse_arn(connection_arn, "connection")
        named = parsed.region if parsed is not None else ""
        with in_region(named if named in self.settings.served_regions else self.settings.region):
            self._connection_id(account_id, connection_arn, violations)
        assert target is not None
        async with self.uow() as uow:
            connection = await uow.connections.get_by_arn(
                account_id, connection_arn, for_update=True
            )
            if connection is None or connection.status is ConnectionStatus.DELETED:
                raise _not_found(connection_arn)
            if connection.status is target:
                return connection
            allowed = HANDSHAKE_FROM[target]
            if connection.status not in allowed:
                raise InvalidState(
                    f"Connection {connection_arn} is {connection.status.value}; becoming "
                    f"{target.value} needs one of {', '.join(sorted(allowed))}.",
                    {
                        "connectionArn": connection_arn,
                        "status": connection.status.value,
                        "allowedStatuses": ",".join(sorted(allowed)),
                    },
                )
            before = connection.status
            await uow.connections.set_status(connection, target)
            uow.record(events.connection_handshake_completed(connection, before.value))
            await uow.commit()
        return connection

    # ----- internals -----

    async def _replay(
        self,
        uow: UnitOfWork,
        account_id: str,
        request_id: str,
        fingerprint: str,
        connection_id: str,
    ) -> Connection | None:
        """Same request_id, same answer: the first call's connection as it is now."""
        first_id = await first_result(
            uow, account_id, request_id, fingerprint, "connection", connection_id
        )
        if first_id is None:
            return None
        connection = await uow.connections.get(account_id, first_id)
        if connection is None:
            raise ConnectionNotFound(
                f"Connection {first_id} is no longer kept.", {"connectionArn": ""}
            )
        return connection

    def _connection_id(
        self, account_id: str, connection_arn: str, violations: list[FieldViolation]
    ) -> str:
        return owned_resource_id(
            connection_arn,
            kind="connection",
            field="connection_arn",
            account_id=account_id,
            region=request_region(self.settings),
            not_found=_not_found,
            violations=violations,
        )


def _not_found(connection_arn: str) -> ConnectionNotFound:
    return ConnectionNotFound(
        f"Connection {connection_arn} not found.", {"connectionArn": connection_arn}
    )
