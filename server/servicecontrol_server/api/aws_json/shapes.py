"""Domain values ↔ App Runner's JSON shapes (service-2.json of apprunner 2020-05-15).

Configurations live in the domain as dicts with App Runner's member names in snake_case,
exactly as the gRPC API stores them; one member table per structure converts both ways,
so the two APIs cannot drift apart. Members App Runner models but this product does not
implement are refused when set rather than silently dropped. Members the model does not
know are ignored, as AWS JSON services do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ...domain import configuration as config_rules
from ...domain.model import Connection, CustomDomain, Operation, Service
from .errors import invalid_request

Scalar = Literal["string", "integer", "boolean", "string_map", "object", "list"]


@dataclass(frozen=True)
class Member:
    wire: str
    # The domain's key; empty for a member App Runner has and this product does not.
    field: str
    kind: Scalar | Struct
    # What a response says when the domain holds nothing, for members the model requires.
    default: Any = None


@dataclass(frozen=True)
class Struct:
    name: str
    members: tuple[Member, ...]
    # Members of which a request may set at most one (a union in App Runner's terms).
    exclusive: tuple[str, ...] = ()


UNSUPPORTED = ""

IMAGE_CONFIGURATION = Struct(
    "ImageConfiguration",
    (
        Member("RuntimeEnvironmentVariables", "runtime_environment_variables", "string_map"),
        Member("StartCommand", "start_command", "string"),
        Member("Port", "port", "string"),
        Member("RuntimeEnvironmentSecrets", UNSUPPORTED, "string_map"),
    ),
)
IMAGE_REPOSITORY = Struct(
    "ImageRepository",
    (
        Member("ImageIdentifier", "image_identifier", "string"),
        Member("ImageConfiguration", "image_configuration", IMAGE_CONFIGURATION),
        # The source registry plays the part of a private ECR repository.
        Member("ImageRepositoryType", "image_repository_type", "string", default="ECR"),
    ),
)
SOURCE_CODE_VERSION = Struct(
    "SourceCodeVersion",
    (
        Member("Type", "type", "string", default="BRANCH"),
        Member("Value", "value", "string"),
    ),
)
CODE_REPOSITORY = Struct(
    "CodeRepository",
    (
        Member("RepositoryUrl", "repository_url", "string"),
        Member("SourceCodeVersion", "source_code_version", SOURCE_CODE_VERSION),
        # No builder exists, so build settings have nothing to configure.
        Member("CodeConfiguration", UNSUPPORTED, "object"),
        Member("SourceDirectory", "source_directory", "string"),
    ),
)
AUTHENTICATION_CONFIGURATION = Struct(
    "AuthenticationConfiguration",
    (
        Member("ConnectionArn", "connection_arn", "string"),
        Member("AccessRoleArn", "access_role_arn", "string"),
    ),
)
SOURCE_CONFIGURATION = Struct(
    "SourceConfiguration",
    (
        Member("CodeRepository", "code_repository", CODE_REPOSITORY),
        Member("ImageRepository", "image_repository", IMAGE_REPOSITORY),
        Member("AutoDeploymentsEnabled", "auto_deployments_enabled", "boolean"),
        Member(
            "AuthenticationConfiguration",
            "authentication_configuration",
            AUTHENTICATION_CONFIGURATION,
        ),
    ),
    exclusive=("CodeRepository", "ImageRepository"),
)
INSTANCE_CONFIGURATION = Struct(
    "InstanceConfiguration",
    (
        Member("Cpu", "cpu", "string"),
        Member("Memory", "memory", "string"),
        Member("InstanceRoleArn", "instance_role_arn", "string"),
    ),
)
HEALTH_CHECK_CONFIGURATION = Struct(
    "HealthCheckConfiguration",
    (
        Member("Protocol", "protocol", "string"),
        Member("Path", "path", "string"),
        Member("Interval", "interval", "integer"),
        Member("Timeout", "timeout", "integer"),
        Member("HealthyThreshold", "healthy_threshold", "integer"),
        Member("UnhealthyThreshold", "unhealthy_threshold", "integer"),
    ),
)

# The fixed settings every service has; requests may restate them but not change them.


# ----- reading requests -----
#
# The endpoint has validated the body against the action's input shape before a handler
# runs (model.validate_request): presence of required members, JSON types, lengths,
# ranges, enums and patterns are the model's and are not checked again here.


def _path(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _is_unset(value: Any) -> bool:
    # The domain keeps proto3 semantics: empty strings, zeros, false and empty maps are
    # "not set", which keeps a configuration identical whichever API wrote it.
    return value is None or value == "" or value is False or value == 0 or value == {}


def to_domain(struct: Struct, value: Mapping[str, Any], path: str) -> dict[str, Any]:
    """An App Runner structure from a (model-validated) request → the domain's snake_case
    dict, with the rules the model does not express: at most one member of a union, and
    no member this server does not implement."""
    chosen = [name for name in struct.exclusive if value.get(name) is not None]
    if len(chosen) > 1:
        raise invalid_request(f"{path}: set {' or '.join(struct.exclusive)}, not both.")
    out: dict[str, Any] = {}
    for member in struct.members:
        item = value.get(member.wire)
        if item is None:
            continue
        where = _path(path, member.wire)
        if not member.field:
            if item in ({}, [], ""):
                continue
            raise invalid_request(f"{where} is not supported by this server.")
        converted = to_domain(member.kind, item, where) if isinstance(member.kind, Struct) else item
        if isinstance(member.kind, Struct) or not _is_unset(converted):
            out[member.field] = converted
    return out


def optional_struct(
    body: Mapping[str, Any], struct: Struct, *, required: bool = False
) -> dict[str, Any] | None:
    """The member named after `struct` converted, or None when the request leaves it out
    (`required` is the model's to enforce)."""
    value = body.get(struct.name)
    if value is None:
        return None
    return to_domain(struct, value, struct.name)


def string(body: Mapping[str, Any], name: str, **_model_bounds: Any) -> str:
    """A string member, "" when absent. Bounds and enums that call sites pass are the
    model's, already held by the endpoint."""
    value = body.get(name)
    return "" if value is None else str(value)


def integer(body: Mapping[str, Any], name: str, *_model_range: int) -> int | None:
    """An integer member, None when absent (its range is the model's)."""
    value = body.get(name)
    return None if value is None else int(value)


def boolean(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    return None if value is None else bool(value)


def tags(body: Mapping[str, Any], **_model_bounds: Any) -> list[tuple[str, str]]:
    """`Tags`, a list of {Key, Value}, as (key, value) pairs in the order sent; the limits
    across a request and a resource (a key twice, at most 50) are the domain's."""
    return [(str(tag["Key"]), str(tag["Value"])) for tag in body.get("Tags") or []]


def tag_keys(body: Mapping[str, Any]) -> list[str]:
    return [str(key) for key in body.get("TagKeys") or []]


def tag_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in values.items()]


def refuse_changed_fixed_settings(body: Mapping[str, Any], region: str, account_id: str) -> None:
    """Encryption is fixed here: a request may restate the fixed value (tools often send
    it) but not ask for another."""
    if body.get("EncryptionConfiguration") not in (None, {}):
        raise invalid_request("EncryptionConfiguration is not supported by this server.")


def observability(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`ObservabilityConfiguration` {ObservabilityEnabled, ObservabilityConfigurationArn}
    as the domain's dict; None when the request leaves it out. The model has checked the
    members' types and that ObservabilityEnabled is there."""
    value = body.get("ObservabilityConfiguration")
    if value is None:
        return None
    arn = value.get("ObservabilityConfigurationArn")
    return {
        "observability_enabled": value["ObservabilityEnabled"],
        "observability_configuration_arn": arn or "",
    }


def network_configuration(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`NetworkConfiguration` → the domain's dict (domain/vpc.py), or None when absent.
    Written out rather than through a Struct: `IsPubliclyAccessible: false` is a value
    here, not an unset member. The model has checked the members' types."""
    value = body.get("NetworkConfiguration")
    if value is None:
        return None
    out: dict[str, Any] = {}
    egress = value.get("EgressConfiguration")
    if egress is not None:
        out["egress_configuration"] = {
            "egress_type": string(egress, "EgressType", enum=("DEFAULT", "VPC")),
            "vpc_connector_arn": string(egress, "VpcConnectorArn", min_len=1, max_len=1011),
        }
    ingress = value.get("IngressConfiguration")
    if ingress is not None:
        public = boolean(ingress, "IsPubliclyAccessible")
        out["ingress_configuration"] = {} if public is None else {"is_publicly_accessible": public}
    out["ip_address_type"] = string(value, "IpAddressType", enum=("IPV4", "DUAL_STACK"))
    return out


# ----- writing responses -----


def network_to_wire(network: Mapping[str, Any] | None) -> dict[str, Any]:
    """A service's network configuration, App Runner's defaults where none was set."""
    egress = (network or {}).get("egress_configuration") or {}
    ingress = (network or {}).get("ingress_configuration") or {}
    wire_egress: dict[str, Any] = {"EgressType": egress.get("egress_type") or "DEFAULT"}
    if egress.get("vpc_connector_arn"):
        wire_egress["VpcConnectorArn"] = egress["vpc_connector_arn"]
    return {
        "EgressConfiguration": wire_egress,
        "IngressConfiguration": {
            "IsPubliclyAccessible": bool(ingress.get("is_publicly_accessible", True))
        },
        "IpAddressType": (network or {}).get("ip_address_type") or "IPV4",
    }


def timestamp(value: datetime) -> float:
    """Epoch seconds, the AWS JSON encoding of a timestamp."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def to_wire(struct: Struct, data: Mapping[str, Any]) -> dict[str, Any]:
    """The domain's snake_case dict → an App Runner structure."""
    out: dict[str, Any] = {}
    for member in struct.members:
        value = data.get(member.field) if member.field else None
        if isinstance(member.kind, Struct) and isinstance(value, dict):
            out[member.wire] = to_wire(member.kind, value)
        elif value is not None and value != "" and not isinstance(member.kind, Struct):
            out[member.wire] = value
        elif member.default is not None:
            out[member.wire] = member.default
    return out


def service(svc: Service, auto_scaling_summary: dict[str, Any]) -> dict[str, Any]:
    """The service; `auto_scaling_summary` is the configuration it uses, as App Runner
    summarises it."""
    out: dict[str, Any] = {
        "ServiceName": svc.service_name,
        "ServiceId": svc.service_id,
        "ServiceArn": svc.service_arn,
        "ServiceUrl": svc.service_url,
        "CreatedAt": timestamp(svc.created_at),
        "UpdatedAt": timestamp(svc.updated_at),
        "Status": svc.status.value,
    }
    if svc.deleted_at is not None:
        out["DeletedAt"] = timestamp(svc.deleted_at)
    config = svc.configuration
    if config is None:
        # A deleted service's configuration is gone; the model still requires both.
        out["SourceConfiguration"] = {}
        out["InstanceConfiguration"] = to_wire(
            INSTANCE_CONFIGURATION, config_rules.DEFAULT_INSTANCE
        )
    else:
        out["SourceConfiguration"] = to_wire(SOURCE_CONFIGURATION, config.source)
        out["InstanceConfiguration"] = to_wire(INSTANCE_CONFIGURATION, config.instance)
        out["HealthCheckConfiguration"] = to_wire(HEALTH_CHECK_CONFIGURATION, config.health_check)
    out["AutoScalingConfigurationSummary"] = auto_scaling_summary
    out["NetworkConfiguration"] = network_to_wire(config.network if config else None)
    # ObservabilityConfiguration only when it is on: App Runner leaves it out of a service
    # that has none, and Terraform reads its presence as a configuration block.
    if config is not None and config.observability_configuration_arn:
        out["ObservabilityConfiguration"] = {
            "ObservabilityEnabled": True,
            "ObservabilityConfigurationArn": config.observability_configuration_arn,
        }
    return out


def service_summary(svc: Service) -> dict[str, Any]:
    return {
        "ServiceName": svc.service_name,
        "ServiceId": svc.service_id,
        "ServiceArn": svc.service_arn,
        "ServiceUrl": svc.service_url,
        "CreatedAt": timestamp(svc.created_at),
        "UpdatedAt": timestamp(svc.updated_at),
        "Status": svc.status.value,
    }


def operation_summary(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": op.operation_id,
        "Type": op.type.value,
        "Status": op.status.value,
        "TargetArn": op.target_arn,
        "StartedAt": timestamp(op.started_at),
        "UpdatedAt": timestamp(op.updated_at),
    }
    if op.ended_at is not None:
        out["EndedAt"] = timestamp(op.ended_at)
    return out


def connection(conn: Connection) -> dict[str, Any]:
    return {
        "ConnectionName": conn.connection_name,
        "ConnectionArn": conn.connection_arn,
        "ProviderType": conn.provider_type.value,
        "Status": conn.status.value,
        "CreatedAt": timestamp(conn.created_at),
    }


# Certificate states as a validation record reports them.
_RECORD_STATUS = {
    "PENDING_VALIDATION": "PENDING_VALIDATION",
    "ISSUED": "SUCCESS",
    "SUCCESS": "SUCCESS",
    "VALIDATION_FAILED": "FAILED",
    "FAILED": "FAILED",
}


def _validation_record(record: Mapping[str, Any]) -> dict[str, Any]:
    def pick(*keys: str) -> Any:
        return next((record[k] for k in keys if record.get(k) not in (None, "")), None)

    out: dict[str, Any] = {}
    for wire, keys in (
        ("Name", ("name", "Name")),
        ("Type", ("type", "Type")),
        ("Value", ("value", "Value")),
    ):
        value = pick(*keys)
        if value is not None:
            # App Runner prints record names without the final dot of a full name.
            out[wire] = str(value).rstrip(".") if wire == "Name" else str(value)
    status = pick("status", "Status")
    if status is not None:
        out["Status"] = _RECORD_STATUS.get(str(status), "PENDING_VALIDATION")
    return out


def custom_domain(domain: CustomDomain) -> dict[str, Any]:
    return {
        "DomainName": domain.domain_name,
        "EnableWWWSubdomain": domain.enable_www_subdomain,
        "CertificateValidationRecords": [_validation_record(r) for r in domain.validation_records],
        # App Runner itself answers these in lowercase (`pending_certificate_dns_validation`),
        # though its model lists them in uppercase; clients such as Terraform wait on the
        # lowercase values.
        "Status": domain.status.value.lower(),
    }
