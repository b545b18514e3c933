"""The catalogue of domain events: every event the product records in its outbox, one
typed constructor per type. Emitters build events only through these functions, so the
list below is the whole vocabulary that WatchEvents streams (docs/events.md shows it).

Payload keys are camelCase, as on the wire; every payload of a service event carries the
operation id where an operation caused it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from .config_resources import ConfigKind, ConfigResource
from .model import (
    Certificate,
    CertificateStatus,
    Connection,
    CustomDomainStatus,
    Event,
    OperationType,
    Service,
    ServiceStatus,
)
from .vpc import VpcConnector, VpcIngressConnection


class EventType(StrEnum):
    # A service operation was accepted (the service is OPERATION_IN_PROGRESS).
    SERVICE_CREATE_REQUESTED = "service.create_requested"
    SERVICE_UPDATE_REQUESTED = "service.update_requested"
    SERVICE_PAUSE_REQUESTED = "service.pause_requested"
    SERVICE_RESUME_REQUESTED = "service.resume_requested"
    SERVICE_DELETE_REQUESTED = "service.delete_requested"
    SERVICE_DEPLOYMENT_REQUESTED = "service.deployment_requested"
    # A service operation succeeded.
    SERVICE_CREATED = "service.created"
    SERVICE_UPDATED = "service.updated"
    SERVICE_PAUSED = "service.paused"
    SERVICE_RESUMED = "service.resumed"
    SERVICE_DELETED = "service.deleted"
    SERVICE_DEPLOYED = "service.deployed"
    # A service operation gave up; the payload says where the service landed and why.
    SERVICE_CREATE_FAILED = "service.create_failed"
    SERVICE_UPDATE_FAILED = "service.update_failed"
    SERVICE_PAUSE_FAILED = "service.pause_failed"
    SERVICE_RESUME_FAILED = "service.resume_failed"
    SERVICE_DELETE_FAILED = "service.delete_failed"
    SERVICE_DEPLOYMENT_FAILED = "service.deployment_failed"
    # A deleted service's tombstone was purged by the reaper.
    SERVICE_PURGED = "service.purged"
    CONNECTION_CREATED = "connection.created"
    CONNECTION_HANDSHAKE_COMPLETED = "connection.handshake_completed"
    CONNECTION_DELETED = "connection.deleted"
    CONNECTION_PURGED = "connection.purged"
    CUSTOM_DOMAIN_ASSOCIATED = "custom_domain.associated"
    CUSTOM_DOMAIN_VALIDATED = "custom_domain.validated"
    CUSTOM_DOMAIN_DISASSOCIATED = "custom_domain.disassociated"
    CERTIFICATE_ISSUED = "certificate.issued"
    CERTIFICATE_VALIDATION_FAILED = "certificate.validation_failed"
    CERTIFICATE_PURGED = "certificate.purged"
    # TagResource / UntagResource changed a resource's tags.
    TAGS_CHANGED = "tags.changed"
    # Auto scaling and observability configurations (revisions per name).
    AUTO_SCALING_CONFIGURATION_CREATED = "auto_scaling_configuration.created"
    AUTO_SCALING_CONFIGURATION_DELETED = "auto_scaling_configuration.deleted"
    AUTO_SCALING_CONFIGURATION_DEFAULT_CHANGED = "auto_scaling_configuration.default_changed"
    OBSERVABILITY_CONFIGURATION_CREATED = "observability_configuration.created"
    OBSERVABILITY_CONFIGURATION_DELETED = "observability_configuration.deleted"
    # VPC connectors and VPC ingress connections (recorded, not provisioned).
    VPC_CONNECTOR_CREATED = "vpc_connector.created"
    VPC_CONNECTOR_DELETED = "vpc_connector.deleted"
    VPC_INGRESS_CONNECTION_CREATED = "vpc_ingress_connection.created"
    VPC_INGRESS_CONNECTION_UPDATED = "vpc_ingress_connection.updated"
    VPC_INGRESS_CONNECTION_DELETED = "vpc_ingress_connection.deleted"
    # The reaper purged a tombstone.
    VPC_CONNECTOR_PURGED = "vpc_connector.purged"
    VPC_INGRESS_CONNECTION_PURGED = "vpc_ingress_connection.purged"


_VERB = {
    OperationType.CREATE_SERVICE: "create",
    OperationType.UPDATE_SERVICE: "update",
    OperationType.PAUSE_SERVICE: "pause",
    OperationType.RESUME_SERVICE: "resume",
    OperationType.DELETE_SERVICE: "delete",
    OperationType.START_DEPLOYMENT: "deployment",
}
_SUCCEEDED = {
    OperationType.CREATE_SERVICE: EventType.SERVICE_CREATED,
    OperationType.UPDATE_SERVICE: EventType.SERVICE_UPDATED,
    OperationType.PAUSE_SERVICE: EventType.SERVICE_PAUSED,
    OperationType.RESUME_SERVICE: EventType.SERVICE_RESUMED,
    OperationType.DELETE_SERVICE: EventType.SERVICE_DELETED,
    OperationType.START_DEPLOYMENT: EventType.SERVICE_DEPLOYED,
}


def _event(account_id: str, arn: str, type_: EventType, payload: dict[str, Any]) -> Event:
    return Event(account_id=account_id, resource_arn=arn, type=type_.value, payload=payload)


def service_operation_requested(service: Service, operation_id: str, op: OperationType) -> Event:
    return _event(
        service.account_id,
        service.service_arn,
        EventType(f"service.{_VERB[op]}_requested"),
        {
            "operationId": operation_id,
            "operationType": op.value,
            "serviceName": service.service_name,
            "status": service.status.value,
        },
    )


def service_operation_succeeded(
    service: Service,
    operation_id: str,
    op: OperationType,
    deletion_report: dict[str, Any] | None = None,
) -> Event:
    payload: dict[str, Any] = {"operationId": operation_id, "status": service.status.value}
    if deletion_report is not None:
        payload["report"] = deletion_report
    return _event(service.account_id, service.service_arn, _SUCCEEDED[op], payload)


def service_operation_failed(
    service: Service,
    operation_id: str,
    op: OperationType,
    landed: ServiceStatus,
    reason: str,
    message: str,
) -> Event:
    return _event(
        service.account_id,
        service.service_arn,
        EventType(f"service.{_VERB[op]}_failed"),
        {"operationId": operation_id, "status": landed.value, "reason": reason, "message": message},
    )


def service_purged(account_id: str, service_arn: str, service_name: str, service_id: str) -> Event:
    return _event(
        account_id,
        service_arn,
        EventType.SERVICE_PURGED,
        {"serviceName": service_name, "serviceId": service_id},
    )


def _connection_payload(connection: Connection) -> dict[str, Any]:
    return {
        "connectionName": connection.connection_name,
        "providerType": connection.provider_type.value,
        "status": connection.status.value,
    }


def connection_created(connection: Connection) -> Event:
    return _event(
        connection.account_id,
        connection.connection_arn,
        EventType.CONNECTION_CREATED,
        _connection_payload(connection),
    )


def connection_deleted(connection: Connection) -> Event:
    return _event(
        connection.account_id,
        connection.connection_arn,
        EventType.CONNECTION_DELETED,
        _connection_payload(connection),
    )


def connection_handshake_completed(connection: Connection, previous_status: str) -> Event:
    return _event(
        connection.account_id,
        connection.connection_arn,
        EventType.CONNECTION_HANDSHAKE_COMPLETED,
        {**_connection_payload(connection), "from": previous_status},
    )


def connection_purged(account_id: str, connection_arn: str, connection_name: str) -> Event:
    return _event(
        account_id, connection_arn, EventType.CONNECTION_PURGED, {"connectionName": connection_name}
    )


def custom_domain_associated(
    service: Service,
    domain_name: str,
    enable_www_subdomain: bool,
    status: CustomDomainStatus,
    certificate: Certificate,
    certificate_reused: bool,
) -> Event:
    return _event(
        service.account_id,
        service.service_arn,
        EventType.CUSTOM_DOMAIN_ASSOCIATED,
        {
            "domainName": domain_name,
            "enableWwwSubdomain": enable_www_subdomain,
            "status": status.value,
            "certificateArn": certificate.certificate_arn,
            "certificateReused": certificate_reused,
        },
    )


def custom_domain_validated(
    service: Service, domain_name: str, status: CustomDomainStatus, certificate: Certificate
) -> Event:
    return _event(
        certificate.account_id,
        service.service_arn,
        EventType.CUSTOM_DOMAIN_VALIDATED,
        {
            "domainName": domain_name,
            "status": status.value,
            "certificateArn": certificate.certificate_arn,
        },
    )


def custom_domain_disassociated(
    service: Service, domain_name: str, certificate: Certificate
) -> Event:
    return _event(
        service.account_id,
        service.service_arn,
        EventType.CUSTOM_DOMAIN_DISASSOCIATED,
        {
            "domainName": domain_name,
            "certificateArn": certificate.certificate_arn,
            "certificateExpiresAt": certificate.expires_at.isoformat()
            if certificate.expires_at
            else "",
        },
    )


def certificate_validated(
    certificate: Certificate, outcome: CertificateStatus, service_arn: str
) -> Event:
    """ISSUED or VALIDATION_FAILED, after a DNS validation pass."""
    type_ = (
        EventType.CERTIFICATE_ISSUED
        if outcome is CertificateStatus.ISSUED
        else EventType.CERTIFICATE_VALIDATION_FAILED
    )
    return _event(
        certificate.account_id,
        certificate.certificate_arn,
        type_,
        {"domainName": certificate.domain_name, "serviceArn": service_arn},
    )


def certificate_purged(
    account_id: str, certificate_arn: str, domain_name: str, reason: str
) -> Event:
    """`reason`: "expired" (the reaper) or why a use case purged it early."""
    return _event(
        account_id,
        certificate_arn,
        EventType.CERTIFICATE_PURGED,
        {"domainName": domain_name, "reason": reason},
    )


def tags_changed(
    account_id: str, resource_arn: str, added: dict[str, str], removed: list[str]
) -> Event:
    return _event(
        account_id,
        resource_arn,
        EventType.TAGS_CHANGED,
        {"added": dict(added), "removed": sorted(removed)},
    )


_CONFIG_EVENTS: dict[tuple[ConfigKind, str], EventType] = {
    (ConfigKind.AUTO_SCALING, "created"): EventType.AUTO_SCALING_CONFIGURATION_CREATED,
    (ConfigKind.AUTO_SCALING, "deleted"): EventType.AUTO_SCALING_CONFIGURATION_DELETED,
    (ConfigKind.OBSERVABILITY, "created"): EventType.OBSERVABILITY_CONFIGURATION_CREATED,
    (ConfigKind.OBSERVABILITY, "deleted"): EventType.OBSERVABILITY_CONFIGURATION_DELETED,
}


def _config_payload(config: ConfigResource) -> dict[str, Any]:
    return {
        "name": config.name,
        "revision": config.revision,
        "status": config.status.value,
        "settings": dict(config.settings),
    }


def configuration_created(config: ConfigResource) -> Event:
    return _event(
        config.account_id,
        config.arn,
        _CONFIG_EVENTS[(config.kind, "created")],
        _config_payload(config),
    )


def configuration_deleted(config: ConfigResource) -> Event:
    return _event(
        config.account_id,
        config.arn,
        _CONFIG_EVENTS[(config.kind, "deleted")],
        _config_payload(config),
    )


def auto_scaling_default_changed(config: ConfigResource, previous_arn: str) -> Event:
    return _event(
        config.account_id,
        config.arn,
        EventType.AUTO_SCALING_CONFIGURATION_DEFAULT_CHANGED,
        {"name": config.name, "revision": config.revision, "previousDefaultArn": previous_arn},
    )


def _connector_payload(connector: VpcConnector) -> dict[str, Any]:
    return {
        "vpcConnectorName": connector.name,
        "vpcConnectorRevision": connector.revision,
        "status": connector.status.value,
    }


def vpc_connector_created(connector: VpcConnector) -> Event:
    return _event(
        connector.account_id,
        connector.arn,
        EventType.VPC_CONNECTOR_CREATED,
        {
            **_connector_payload(connector),
            "subnets": list(connector.subnets),
            "securityGroups": list(connector.security_groups),
        },
    )


def vpc_connector_deleted(connector: VpcConnector) -> Event:
    return _event(
        connector.account_id,
        connector.arn,
        EventType.VPC_CONNECTOR_DELETED,
        _connector_payload(connector),
    )


def _ingress_payload(connection: VpcIngressConnection) -> dict[str, Any]:
    return {
        "vpcIngressConnectionName": connection.name,
        "serviceArn": connection.service_arn,
        "vpcId": connection.vpc_id,
        "vpcEndpointId": connection.vpc_endpoint_id,
        "status": connection.status.value,
    }


def vpc_ingress_connection_created(connection: VpcIngressConnection) -> Event:
    return _event(
        connection.account_id,
        connection.arn,
        EventType.VPC_INGRESS_CONNECTION_CREATED,
        {**_ingress_payload(connection), "domainName": connection.domain_name},
    )


def vpc_ingress_connection_updated(connection: VpcIngressConnection) -> Event:
    return _event(
        connection.account_id,
        connection.arn,
        EventType.VPC_INGRESS_CONNECTION_UPDATED,
        _ingress_payload(connection),
    )


def vpc_ingress_connection_deleted(connection: VpcIngressConnection, reason: str) -> Event:
    """`reason`: "requested" (DeleteVpcIngressConnection) or "service_deleted"."""
    return _event(
        connection.account_id,
        connection.arn,
        EventType.VPC_INGRESS_CONNECTION_DELETED,
        {**_ingress_payload(connection), "reason": reason},
    )


def vpc_connector_purged(connector: VpcConnector) -> Event:
    return _event(
        connector.account_id,
        connector.arn,
        EventType.VPC_CONNECTOR_PURGED,
        {"vpcConnectorName": connector.name, "vpcConnectorRevision": connector.revision},
    )


def vpc_ingress_connection_purged(connection: VpcIngressConnection) -> Event:
    return _event(
        connection.account_id,
        connection.arn,
        EventType.VPC_INGRESS_CONNECTION_PURGED,
        {"vpcIngressConnectionName": connection.name, "serviceArn": connection.service_arn},
    )
