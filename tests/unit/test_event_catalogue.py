"""The domain event catalogue is the only way events are built, and docs/events.md lists
exactly its types (with the payload keys each constructor writes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from servicecontrol_server.domain import events
from servicecontrol_server.domain.config_resources import (
    ConfigKind,
    ConfigResource,
    ConfigStatus,
    default_auto_scaling,
)
from servicecontrol_server.domain.events import EventType
from servicecontrol_server.domain.model import (
    Certificate,
    CertificateStatus,
    Connection,
    ConnectionStatus,
    CustomDomainStatus,
    OperationType,
    ProviderType,
    Service,
    ServiceStatus,
)
from servicecontrol_server.domain.vpc import (
    VpcConnector,
    VpcConnectorStatus,
    VpcIngressConnection,
    VpcIngressConnectionStatus,
)

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server" / "servicecontrol_server"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNT = "111111111111"

SERVICE = Service(
    service_id="s" * 32,
    account_id=ACCOUNT,
    region="us-east-1",
    service_name="web",
    service_arn=f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/web/{'s' * 32}",
    service_url="abc.example",
    status=ServiceStatus.OPERATION_IN_PROGRESS,
    version=1,
    created_at=NOW,
    updated_at=NOW,
)
CONNECTION = Connection(
    connection_id="c" * 32,
    account_id=ACCOUNT,
    connection_name="gh",
    connection_arn=f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/gh/{'c' * 32}",
    provider_type=ProviderType.GITHUB,
    status=ConnectionStatus.AVAILABLE,
    created_at=NOW,
)
CERT = Certificate(
    certificate_id="k" * 32,
    account_id=ACCOUNT,
    certificate_arn=f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/{'k' * 32}",
    domain_name="example.com",
    status=CertificateStatus.ISSUED,
    validation_records=[],
    created_at=NOW,
    expires_at=NOW,
)
CONNECTOR = VpcConnector(
    connector_id="v" * 32,
    account_id=ACCOUNT,
    name="egress",
    revision=1,
    arn=f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcconnector/egress/1/{'v' * 32}",
    subnets=["subnet-1"],
    security_groups=[],
    status=VpcConnectorStatus.ACTIVE,
    created_at=NOW,
)
INGRESS = VpcIngressConnection(
    connection_id="i" * 32,
    account_id=ACCOUNT,
    name="ingress",
    arn=f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcingressconnection/ingress/{'i' * 32}",
    service_arn=SERVICE.service_arn,
    service_id=SERVICE.service_id,
    vpc_id="vpc-1",
    vpc_endpoint_id="vpce-1",
    domain_name="abc.example",
    status=VpcIngressConnectionStatus.AVAILABLE,
    created_at=NOW,
)


def every_event() -> list[events.Event]:
    """One event of every constructor (every operation type for the service ones)."""
    made = [events.service_purged(ACCOUNT, SERVICE.service_arn, "web", SERVICE.service_id)]
    for op in (
        OperationType.CREATE_SERVICE,
        OperationType.UPDATE_SERVICE,
        OperationType.PAUSE_SERVICE,
        OperationType.RESUME_SERVICE,
        OperationType.DELETE_SERVICE,
        OperationType.START_DEPLOYMENT,
    ):
        made += [
            events.service_operation_requested(SERVICE, "op", op),
            events.service_operation_succeeded(
                SERVICE,
                "op",
                op,
                {"image_objects": 0} if op is OperationType.DELETE_SERVICE else None,
            ),
            events.service_operation_failed(
                SERVICE, "op", op, ServiceStatus.RUNNING, "R", "message"
            ),
        ]
    made += [
        events.connection_created(CONNECTION),
        events.connection_deleted(CONNECTION),
        events.connection_handshake_completed(CONNECTION, "PENDING_HANDSHAKE"),
        events.connection_purged(ACCOUNT, CONNECTION.connection_arn, "gh"),
        events.custom_domain_associated(
            SERVICE, "example.com", True, CustomDomainStatus.ACTIVE, CERT, False
        ),
        events.custom_domain_validated(SERVICE, "example.com", CustomDomainStatus.ACTIVE, CERT),
        events.custom_domain_disassociated(SERVICE, "example.com", CERT),
        events.certificate_validated(CERT, CertificateStatus.ISSUED, SERVICE.service_arn),
        events.certificate_validated(
            CERT, CertificateStatus.VALIDATION_FAILED, SERVICE.service_arn
        ),
        events.certificate_purged(ACCOUNT, CERT.certificate_arn, "example.com", "expired"),
        events.tags_changed(ACCOUNT, SERVICE.service_arn, {"team": "web"}, ["old"]),
        events.vpc_connector_created(CONNECTOR),
        events.vpc_connector_deleted(CONNECTOR),
        events.vpc_ingress_connection_created(INGRESS),
        events.vpc_ingress_connection_updated(INGRESS),
        events.vpc_ingress_connection_deleted(INGRESS, "requested"),
        events.vpc_connector_purged(CONNECTOR),
        events.vpc_ingress_connection_purged(INGRESS),
    ]
    scaling = default_auto_scaling("us-east-1", ACCOUNT, NOW)
    observability = ConfigResource(
        config_id="o" * 32,
        account_id=ACCOUNT,
        kind=ConfigKind.OBSERVABILITY,
        name="tracing",
        revision=1,
        arn=(
            f"arn:aws:apprunner:us-east-1:{ACCOUNT}:observabilityconfiguration/tracing/1/"
            + "o" * 32
        ),
        status=ConfigStatus.ACTIVE,
        created_at=NOW,
        settings={"trace_vendor": "AWSXRAY"},
    )
    for config in (scaling, observability):
        made += [events.configuration_created(config), events.configuration_deleted(config)]
    made.append(events.auto_scaling_default_changed(scaling, "arn:previous"))
    return made


def documented() -> dict[str, set[str]]:
    """docs/events.md's table: type -> payload keys."""
    rows = {}
    for line in (ROOT / "docs" / "events.md").read_text().splitlines():
        match = re.match(r"\| `([a-z_.]+)` \|[^|]*\|[^|]*\| (.*) \|$", line)
        if match:
            keys = re.findall(r"[a-zA-Z]+(?= \(|,|$)", match.group(2))
            rows[match.group(1)] = set(keys)
    return rows


def test_the_constructors_cover_every_type_of_the_catalogue() -> None:
    assert {e.type for e in every_event()} == {t.value for t in EventType}


def test_docs_list_exactly_the_catalogue_with_its_payloads() -> None:
    table = documented()
    assert set(table) == {t.value for t in EventType}
    for event in every_event():
        assert set(event.payload) == table[event.type], event.type


def test_no_event_is_built_outside_the_catalogue() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in SERVER.rglob("*.py")
        if path != SERVER / "domain" / "events.py"
        and re.search(r"(?<![A-Za-z.])Event\(", path.read_text())
    ]
    assert offenders == []
