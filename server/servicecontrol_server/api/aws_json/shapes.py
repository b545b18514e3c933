"""Domain values ↔ App Runner's JSON shapes (service-2.json of apprunner 2020-05-15).

Configurations live in the domain as dicts with App Runner's member names in snake_case,
exactly as the gRPC API stores them; one member table per structure converts both ways,
so the two APIs cannot drift apart. Members App Runner models but this product does not
implement are refused when set rather than silently dropped. Members the model does not
know are ignored, as AWS JSON services do."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ...domain import configuration as config_rules
from ...domain import tags as tag_rules
from ...domain.model import Connection, CustomDomain, Operation, Service
from .errors import AwsError, invalid_request, member_path, serialization

Scalar = Literal["string", "integer", "boolean", "string_map", "object", "list"]


@dataclass(frozen=True)
class Member:
    wire: str
    # The domain's key; empty for a member App Runner has and this product does not.
    field: str
    kind: Scalar | Struct
    required: bool = False
    enum: tuple[str, ...] = ()
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
        Member("ImageIdentifier", "image_identifier", "string", required=True),
        Member("ImageConfiguration", "image_configuration", IMAGE_CONFIGURATION),
        # The source registry plays the part of a private ECR repository.
        Member(
            "ImageRepositoryType",
            "image_repository_type",
            "string",
            required=True,
            enum=("ECR", "ECR_PUBLIC"),
            default="ECR",
        ),
    ),
)
SOURCE_CODE_VERSION = Struct(
    "SourceCodeVersion",
    (
        Member("Type", "type", "string", required=True, enum=("BRANCH",), default="BRANCH"),
        Member("Value", "value", "string", required=True),
    ),
)
CODE_REPOSITORY = Struct(
    "CodeRepository",
    (
        Member("RepositoryUrl", "repository_url", "string", required=True),
        Member("SourceCodeVersion", "source_code_version", SOURCE_CODE_VERSION, required=True),
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
        Member("Protocol", "protocol", "string", enum=("TCP", "HTTP")),
        Member("Path", "path", "string"),
        Member("Interval", "interval", "integer"),
        Member("Timeout", "timeout", "integer"),
        Member("HealthyThreshold", "healthy_threshold", "integer"),
        Member("UnhealthyThreshold", "unhealthy_threshold", "integer"),
    ),
)

# The fixed settings every service has; requests may restate them but not change them.
DEFAULT_AUTO_SCALING_NAME = "DefaultConfiguration"


# ----- reading requests -----


def _path(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _missing(path: str) -> AwsError:
    return invalid_request(
        f"1 validation error detected: Value null at '{member_path(path)}' failed to satisfy "
        "constraint: Member must not be null"
    )


def _check_type(kind: Scalar | Struct, value: Any, path: str) -> None:
    ok: bool
    if isinstance(kind, Struct) or kind in ("object", "string_map"):
        ok = isinstance(value, dict)
        if ok and kind == "string_map":
            ok = all(isinstance(v, str) for v in value.values())
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, list)
    if not ok:
        expected = kind.name if isinstance(kind, Struct) else kind
        raise serialization(f"Cannot read {type(value).__name__} at '{path}' as {expected}.")


def _check_enum(member: Member, value: Any, path: str) -> None:
    if member.enum and value not in member.enum:
        raise invalid_request(
            f"1 validation error detected: Value '{str(value)[:100]}' at '{member_path(path)}' "
            "failed to satisfy constraint: Member must satisfy enum value set: "
            f"[{', '.join(member.enum)}]"
        )


def _is_unset(value: Any) -> bool:
    # The domain keeps proto3 semantics: empty strings, zeros, false and empty maps are
    # "not set", which keeps a configuration identical whichever API wrote it.
    return value is None or value == "" or value is False or value == 0 or value == {}


def to_domain(struct: Struct, value: Any, path: str) -> dict[str, Any]:
    """An App Runner structure from a request → the domain's snake_case dict."""
    _check_type(struct, value, path)
    chosen = [name for name in struct.exclusive if value.get(name) is not None]
    if len(chosen) > 1:
        raise invalid_request(f"{path}: set {' or '.join(struct.exclusive)}, not both.")
    out: dict[str, Any] = {}
    for member in struct.members:
        item = value.get(member.wire)
        where = _path(path, member.wire)
        if item is None:
            if member.required:
                raise _missing(where)
            continue
        _check_type(member.kind, item, where)
        _check_enum(member, item, where)
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
    """The member named after `struct` converted, or None when the request leaves it out."""
    value = body.get(struct.name)
    if value is None:
        if required:
            raise _missing(struct.name)
        return None
    return to_domain(struct, value, struct.name)


def string(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    min_len: int = 0,
    max_len: int = 51200,
    enum: tuple[str, ...] = (),
) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return ""
    _check_type("string", value, name)
    if not min_len <= len(value) <= max_len:
        bound = (
            f"greater than or equal to {min_len}"
            if len(value) < min_len
            else f"less than or equal to {max_len}"
        )
        raise invalid_request(
            f"1 validation error detected: Value at '{member_path(name)}' failed to satisfy "
            f"constraint: Member must have length {bound}"
        )
    _check_enum(Member(name, name, "string", enum=enum), value, name)
    return str(value)


def integer(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    _check_type("integer", value, name)
    if not low <= value <= high:
        raise invalid_request(
            f"1 validation error detected: Value '{value}' at '{member_path(name)}' failed to "
            f"satisfy constraint: Member must have value between {low} and {high}"
        )
    return int(value)


def boolean(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    _check_type("boolean", value, name)
    return bool(value)


def _constraint(value: Any, path: str, constraint: str) -> AwsError:
    shown = "null" if value is None else f"'{str(value)[:100]}'"
    return invalid_request(
        f"1 validation error detected: Value {shown} at '{member_path(path)}' failed to satisfy "
        f"constraint: {constraint}"
    )


def _tag_key(value: Any, path: str) -> str:
    if value is None:
        raise _missing(path)
    _check_type("string", value, path)
    if not 1 <= len(value) <= tag_rules.MAX_KEY_LENGTH:
        raise _constraint(
            value, path, f"Member must have length between 1 and {tag_rules.MAX_KEY_LENGTH}"
        )
    if value.startswith(tag_rules.RESERVED_PREFIX):
        raise _constraint(
            value, path, "Member must satisfy regular expression pattern: ^(?!aws:).+"
        )
    return str(value)


def tags(body: Mapping[str, Any], *, required: bool = False) -> list[tuple[str, str]]:
    """`Tags`, a list of {Key, Value}, as (key, value) pairs in the order sent."""
    value = body.get("Tags")
    if value is None:
        if required:
            raise _missing("tags")
        return []
    _check_type("list", value, "Tags")
    out: list[tuple[str, str]] = []
    for i, tag in enumerate(value, start=1):
        path = f"tags.{i}.member"
        _check_type("object", tag, path)
        key = _tag_key(tag.get("Key"), f"{path}.key")
        item = tag.get("Value")
        if item is None:
            raise _missing(f"{path}.value")
        _check_type("string", item, f"{path}.value")
        if len(item) > tag_rules.MAX_VALUE_LENGTH:
            raise _constraint(
                item,
                f"{path}.value",
                f"Member must have length less than or equal to {tag_rules.MAX_VALUE_LENGTH}",
            )
        out.append((key, str(item)))
    return out


def tag_keys(body: Mapping[str, Any]) -> list[str]:
    value = body.get("TagKeys")
    if value is None:
        raise _missing("tagKeys")
    _check_type("list", value, "TagKeys")
    return [_tag_key(key, f"tagKeys.{i}.member") for i, key in enumerate(value, start=1)]


def tag_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in values.items()]


def refuse_changed_fixed_settings(body: Mapping[str, Any], region: str, account_id: str) -> None:
    """Encryption, auto scaling and observability are fixed here: a request may restate
    the fixed values (tools often send them) but not ask for others."""
    if body.get("EncryptionConfiguration") not in (None, {}):
        raise invalid_request("EncryptionConfiguration is not supported by this server.")
    arn = body.get("AutoScalingConfigurationArn")
    if arn is not None and arn != default_auto_scaling_arn(region, account_id):
        raise invalid_request(
            "AutoScalingConfigurationArn other than the default "
            f"{default_auto_scaling_arn(region, account_id)} is not supported by this server."
        )
    observability = body.get("ObservabilityConfiguration")
    if observability is not None:
        _check_type("object", observability, "ObservabilityConfiguration")
        if observability.get("ObservabilityEnabled") is not False:
            raise invalid_request("ObservabilityConfiguration is not supported by this server.")


def network_configuration(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`NetworkConfiguration` → the domain's dict (domain/vpc.py), or None when absent.
    Written out rather than through a Struct: `IsPubliclyAccessible: false` is a value
    here, not an unset member."""
    value = body.get("NetworkConfiguration")
    if value is None:
        return None
    path = "NetworkConfiguration"
    _check_type("object", value, path)
    out: dict[str, Any] = {}
    egress = value.get("EgressConfiguration")
    if egress is not None:
        where = f"{path}.EgressConfiguration"
        _check_type("object", egress, where)
        out["egress_configuration"] = {
            "egress_type": string(egress, "EgressType", enum=("DEFAULT", "VPC")),
            "vpc_connector_arn": string(egress, "VpcConnectorArn", min_len=1, max_len=1011),
        }
    ingress = value.get("IngressConfiguration")
    if ingress is not None:
        _check_type("object", ingress, f"{path}.IngressConfiguration")
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


def default_auto_scaling_arn(region: str, account_id: str) -> str:
    # Stable per account and region, as the default configuration's id is in App Runner.
    digest = hashlib.sha256(f"{region}:{account_id}:autoscaling".encode()).hexdigest()[:32]
    return (
        f"arn:aws:apprunner:{region}:{account_id}:autoscalingconfiguration/"
        f"{DEFAULT_AUTO_SCALING_NAME}/1/{digest}"
    )


def auto_scaling_summary(region: str, account_id: str) -> dict[str, Any]:
    return {
        "AutoScalingConfigurationArn": default_auto_scaling_arn(region, account_id),
        "AutoScalingConfigurationName": DEFAULT_AUTO_SCALING_NAME,
        "AutoScalingConfigurationRevision": 1,
        "Status": "ACTIVE",
        "HasAssociatedService": True,
        "IsDefault": True,
    }


def service(svc: Service) -> dict[str, Any]:
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
    out["AutoScalingConfigurationSummary"] = auto_scaling_summary(svc.region, svc.account_id)
    out["NetworkConfiguration"] = network_to_wire(config.network if config else None)
    # No ObservabilityConfiguration: App Runner leaves it out of a service that has none,
    # and Terraform reads its presence as a configuration block.
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
            out[wire] = str(value)
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
