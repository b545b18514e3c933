"""The connection use cases (application/connection_commands.py) on the fakes."""

from __future__ import annotations

import uuid

import pytest

from servicecontrol_server.domain.errors import (
    ConnectionInUse,
    ConnectionNameTaken,
    ConnectionNotFound,
    InvalidRequest,
    InvalidState,
    QuotaExceeded,
    RequestIdReused,
)
from servicecontrol_server.domain.model import ConnectionStatus, ServiceStatus

from .harness import ACCOUNT, OTHER_ACCOUNT, Unit, code_source


@pytest.mark.parametrize(
    ("name", "provider", "request_id", "bad"),
    [
        ("", "GITHUB", "", {"connection_name"}),
        ("gh", "GITHUB", "", {"connection_name"}),
        ("x" * 33, "GITHUB", "", {"connection_name"}),
        ("github", "GITLAB", "", {"provider_type"}),
        ("github", "", "", {"provider_type"}),
        ("github", "GITHUB", "nope", {"request_id"}),
    ],
)
async def test_create_refuses_bad_input(
    name: str, provider: str, request_id: str, bad: set[str]
) -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest) as refused:
        await unit.connections.create_connection(ACCOUNT, name, provider, request_id)
    assert {v.field for v in refused.value.violations} == bad
    assert unit.db.commits == 0


async def test_create_records_a_pending_connection_and_its_event() -> None:
    unit = Unit()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    assert connection.status is ConnectionStatus.PENDING_HANDSHAKE
    assert connection.created_at == unit.clock.now()
    assert connection.connection_arn.endswith(f":connection/github/{connection.connection_id}")
    assert unit.db.tables.connections[connection.connection_id] == connection
    [event] = unit.db.events
    assert (event.type, event.resource_arn, event.payload) == (
        "connection.created",
        connection.connection_arn,
        {"connectionName": "github", "providerType": "GITHUB", "status": "PENDING_HANDSHAKE"},
    )


async def test_create_validate_only_writes_nothing() -> None:
    unit = Unit()
    shown = await unit.connections.create_connection(
        ACCOUNT, "github", "BITBUCKET", str(uuid.uuid4()), validate_only=True
    )
    assert shown.connection_name == "github"
    assert unit.db.commits == 0
    assert not unit.db.tables.connections and not unit.db.tables.request_ids


async def test_names_and_quota_count_live_connections_only() -> None:
    unit = Unit()
    first = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    with pytest.raises(ConnectionNameTaken) as taken:
        await unit.connections.create_connection(ACCOUNT, "github", "BITBUCKET")
    assert taken.value.metadata["connectionArn"] == first.connection_arn
    await unit.connections.create_connection(ACCOUNT, "bitbucket", "BITBUCKET")
    with pytest.raises(QuotaExceeded) as refused:
        await unit.connections.create_connection(ACCOUNT, "third", "GITHUB")
    assert refused.value.reason == "CONNECTION_QUOTA_EXCEEDED"
    await unit.connections.create_connection(OTHER_ACCOUNT, "third", "GITHUB")
    await unit.connections.delete_connection(ACCOUNT, first.connection_arn)
    await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")


async def test_create_request_id_replays_and_refuses_reuse() -> None:
    unit = Unit()
    request_id = str(uuid.uuid4())
    first = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB", request_id)
    again = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB", request_id)
    assert again.connection_id == first.connection_id
    assert len(unit.db.tables.connections) == 1
    with pytest.raises(RequestIdReused):
        await unit.connections.create_connection(ACCOUNT, "gitlab", "GITHUB", request_id)


async def test_list_pages_newest_first_with_tombstones_and_a_name_filter() -> None:
    unit = Unit()
    made = []
    for name in ("conn-a", "conn-b"):
        made.append(await unit.connections.create_connection(ACCOUNT, name, "GITHUB"))
        unit.clock.advance(1)
    await unit.connections.delete_connection(ACCOUNT, made[0].connection_arn)
    first = await unit.connections.list_connections(ACCOUNT, "", 1, "")
    assert [c.connection_name for c in first.items] == ["conn-b"]
    rest = await unit.connections.list_connections(ACCOUNT, "", 1, first.next_page_token)
    assert [(c.connection_name, c.status) for c in rest.items] == [
        ("conn-a", ConnectionStatus.DELETED)
    ]
    assert rest.next_page_token == ""
    named = await unit.connections.list_connections(ACCOUNT, "conn-a", 10, "")
    assert [c.connection_id for c in named.items] == [made[0].connection_id]
    with pytest.raises(InvalidRequest):
        await unit.connections.list_connections(ACCOUNT, "x", 10, "")


async def test_delete_refuses_a_connection_in_use_then_tombstones_it() -> None:
    unit = Unit()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    await unit.connections.complete_handshake(ACCOUNT, connection.connection_arn, "AVAILABLE")
    created = await unit.services.create_service(
        ACCOUNT, "web-app", code_source(connection.connection_arn)
    )
    with pytest.raises(ConnectionInUse) as refused:
        await unit.connections.delete_connection(ACCOUNT, connection.connection_arn)
    assert refused.value.metadata["serviceArns"] == created.service.service_arn
    # Validating the delete refuses it the same way.
    with pytest.raises(ConnectionInUse):
        await unit.connections.delete_connection(
            ACCOUNT, connection.connection_arn, validate_only=True
        )
    await unit.run_jobs()
    await unit.services.delete_service(ACCOUNT, created.service.service_arn)
    await unit.run_jobs()
    assert unit.db.service(created.service.service_id).status is ServiceStatus.DELETED

    shown = await unit.connections.delete_connection(
        ACCOUNT, connection.connection_arn, validate_only=True
    )
    assert shown.status is ConnectionStatus.AVAILABLE
    deleted = await unit.connections.delete_connection(ACCOUNT, connection.connection_arn)
    stored = unit.db.tables.connections[connection.connection_id]
    assert stored.status is ConnectionStatus.DELETED == deleted.status
    assert stored.deleted_at == unit.clock.now()
    assert stored.purge_at is not None
    assert (stored.purge_at - unit.clock.now()).total_seconds() == (
        unit.settings.connection_tombstone_retention_seconds
    )
    assert unit.db.events[-1].type == "connection.deleted"
    with pytest.raises(ConnectionNotFound):
        await unit.connections.delete_connection(ACCOUNT, connection.connection_arn)


async def test_delete_of_another_accounts_connection_is_not_found() -> None:
    unit = Unit()
    theirs = await unit.connections.create_connection(OTHER_ACCOUNT, "github", "GITHUB")
    with pytest.raises(ConnectionNotFound):
        await unit.connections.delete_connection(ACCOUNT, theirs.connection_arn)
    with pytest.raises(InvalidRequest):
        await unit.connections.delete_connection(ACCOUNT, "not-an-arn")
    assert unit.db.tables.connections[theirs.connection_id].status is (
        ConnectionStatus.PENDING_HANDSHAKE
    )


async def test_handshake_transitions() -> None:
    unit = Unit()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    arn = connection.connection_arn
    with pytest.raises(InvalidRequest):
        await unit.connections.complete_handshake(ACCOUNT, arn, "DELETED")
    failed = await unit.connections.complete_handshake(ACCOUNT, arn, "ERROR")
    assert failed.status is ConnectionStatus.ERROR
    available = await unit.connections.complete_handshake(ACCOUNT, arn, "AVAILABLE")
    assert available.status is ConnectionStatus.AVAILABLE
    assert unit.db.events[-1].payload["from"] == "ERROR"
    with pytest.raises(InvalidState):
        await unit.connections.complete_handshake(ACCOUNT, arn, "ERROR")
    commits = unit.db.commits
    again = await unit.connections.complete_handshake(ACCOUNT, arn, "AVAILABLE")
    assert again.status is ConnectionStatus.AVAILABLE
    assert unit.db.commits == commits
    assert [e.type for e in unit.db.events] == [
        "connection.created",
        "connection.handshake_completed",
        "connection.handshake_completed",
    ]
