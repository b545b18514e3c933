"""VPC connectors, VPC ingress connections and a service's network configuration, as App
Runner defines them. Recorded rather than provisioned: no network is attached to
anything, so a connector is ACTIVE and an ingress connection AVAILABLE as soon as it is
recorded."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import FieldViolation

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,39}")
NAME_RULE = "4-40 characters: letters, digits, - and _, starting with a letter or digit"
# App Runner's model bounds these only by the 51200 of its String shape; a subnet or
# security group id is far shorter, and a list of them is kept small.
MAX_NETWORK_ID_LENGTH = 255
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5

_ARN_RE = re.compile(
    r"arn:aws:apprunner:(?P<region>[a-z0-9-]{1,63}):(?P<account>[0-9]{12}):"
    r"(?:vpcconnector/(?P<cname>[A-Za-z0-9_-]{4,40})/(?P<revision>[0-9]{1,9})/(?P<cid>[0-9a-f]{32})"
    r"|vpcingressconnection/(?P<iname>[A-Za-z0-9_-]{4,40})/(?P<iid>[0-9a-f]{32}))"
)


class VpcConnectorStatus(StrEnum):
    ACTIVE = "ACTIVE"
    # Deleted: kept as a tombstone until purged, and never usable again.
    INACTIVE = "INACTIVE"


class VpcIngressConnectionStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    PENDING_CREATION = "PENDING_CREATION"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_DELETION = "PENDING_DELETION"
    FAILED_CREATION = "FAILED_CREATION"
    FAILED_UPDATE = "FAILED_UPDATE"
    FAILED_DELETION = "FAILED_DELETION"
    DELETED = "DELETED"


# The states UpdateVpcIngressConnection and DeleteVpcIngressConnection start from, as
# App Runner's API reference lists them.
INGRESS_UPDATABLE = frozenset(
    {
        VpcIngressConnectionStatus.AVAILABLE,
        VpcIngressConnectionStatus.FAILED_CREATION,
        VpcIngressConnectionStatus.FAILED_UPDATE,
    }
)
INGRESS_DELETABLE = INGRESS_UPDATABLE | {VpcIngressConnectionStatus.FAILED_DELETION}


class EgressType(StrEnum):
    DEFAULT = "DEFAULT"
    VPC = "VPC"


class IpAddressType(StrEnum):
    IPV4 = "IPV4"
    DUAL_STACK = "DUAL_STACK"


@dataclass
class VpcConnector:
    connector_id: str
    account_id: str
    name: str
    revision: int
    arn: str
    subnets: list[str]
    security_groups: list[str]
    status: VpcConnectorStatus
    created_at: datetime
    deleted_at: datetime | None = None
    purge_at: datetime | None = None


@dataclass
class VpcIngressConnection:
    connection_id: str
    account_id: str
    name: str
    arn: str
    service_arn: str
    service_id: str
    vpc_id: str
    vpc_endpoint_id: str
    domain_name: str
    status: VpcIngressConnectionStatus
    created_at: datetime
    deleted_at: datetime | None = None
    purge_at: datetime | None = None


@dataclass(frozen=True)
class VpcArn:
    region: str
    account_id: str
    kind: str  # "vpcconnector" or "vpcingressconnection"
    name: str
    resource_id: str
    revision: int = 0


def is_name(value: str) -> bool:
    return bool(NAME_RE.fullmatch(value))


def parse_arn(value: str, kind: str) -> VpcArn | None:
    """A VPC connector ARN (`vpcconnector/<name>/<revision>/<id>`) or a VPC ingress
    connection ARN (`vpcingressconnection/<name>/<id>`); None when malformed or of
    another kind."""
    match = _ARN_RE.fullmatch(value or "")
    if match is None:
        return None
    if kind == "vpcconnector" and match["cname"]:
        return VpcArn(
            match["region"],
            match["account"],
            kind,
            match["cname"],
            match["cid"],
            int(match["revision"]),
        )
    if kind == "vpcingressconnection" and match["iname"]:
        return VpcArn(match["region"], match["account"], kind, match["iname"], match["iid"])
    return None


def connector_arn(region: str, account_id: str, name: str, revision: int, connector_id: str) -> str:
    return f"arn:aws:apprunner:{region}:{account_id}:vpcconnector/{name}/{revision}/{connector_id}"


def ingress_connection_arn(region: str, account_id: str, name: str, connection_id: str) -> str:
    return f"arn:aws:apprunner:{region}:{account_id}:vpcingressconnection/{name}/{connection_id}"


def _id_list_violations(values: list[str], field_name: str, limit: int) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if len(values) > limit:
        violations.append(FieldViolation(field_name, f"at most {limit}"))
    for i, value in enumerate(values):
        if not value or len(value) > MAX_NETWORK_ID_LENGTH:
            violations.append(
                FieldViolation(f"{field_name}[{i}]", f"1-{MAX_NETWORK_ID_LENGTH} characters")
            )
    if len(set(values)) != len(values):
        violations.append(FieldViolation(field_name, "an id is listed twice"))
    return violations


def connector_violations(
    name: str, subnets: list[str], security_groups: list[str]
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if not name:
        violations.append(FieldViolation("vpc_connector_name", "required"))
    elif not is_name(name):
        violations.append(FieldViolation("vpc_connector_name", NAME_RULE))
    if not subnets:
        violations.append(FieldViolation("subnets", "at least one subnet is required"))
    violations += _id_list_violations(subnets, "subnets", MAX_SUBNETS)
    violations += _id_list_violations(security_groups, "security_groups", MAX_SECURITY_GROUPS)
    return violations


def ingress_configuration_violations(vpc_id: str, vpc_endpoint_id: str) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for name, value in (("vpc_id", vpc_id), ("vpc_endpoint_id", vpc_endpoint_id)):
        where = f"ingress_vpc_configuration.{name}"
        if not value:
            violations.append(FieldViolation(where, "required"))
        elif len(value) > MAX_NETWORK_ID_LENGTH:
            violations.append(FieldViolation(where, f"at most {MAX_NETWORK_ID_LENGTH} characters"))
    return violations


# ----- a service's network configuration -----
#
# Stored, like the other configurations, as a dict with App Runner's member names in
# snake_case:
#   {"egress_configuration": {"egress_type": "DEFAULT"|"VPC", "vpc_connector_arn": str},
#    "ingress_configuration": {"is_publicly_accessible": bool},
#    "ip_address_type": "IPV4"|"DUAL_STACK"}

PREFIX = "network_configuration"


def default_network() -> dict[str, Any]:
    return {
        "egress_configuration": {"egress_type": EgressType.DEFAULT.value, "vpc_connector_arn": ""},
        "ingress_configuration": {"is_publicly_accessible": True},
        "ip_address_type": IpAddressType.IPV4.value,
    }


def normalized_network(
    network: dict[str, Any] | None, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`network` over `base` (App Runner's defaults when None): a member the request
    leaves out keeps its value. Within a given ingress configuration an unset
    `is_publicly_accessible` is false, App Runner's model default for the member (its
    SDKs leave a false value out)."""
    out = copy.deepcopy(base) if base else default_network()
    if not network:
        return out
    egress = network.get("egress_configuration")
    if egress is not None:
        out["egress_configuration"] = {
            "egress_type": egress.get("egress_type") or EgressType.DEFAULT.value,
            "vpc_connector_arn": egress.get("vpc_connector_arn") or "",
        }
    ingress = network.get("ingress_configuration")
    if ingress is not None:
        out["ingress_configuration"] = {
            "is_publicly_accessible": bool(ingress.get("is_publicly_accessible", False))
        }
    if network.get("ip_address_type"):
        out["ip_address_type"] = network["ip_address_type"]
    return out


def network_violations(network: dict[str, Any]) -> list[FieldViolation]:
    """App Runner's rules on a normalized network configuration: a VPC connector ARN is
    required with egress VPC and only valid with it."""
    violations: list[FieldViolation] = []
    egress = network["egress_configuration"]
    egress_type = egress["egress_type"]
    arn = egress["vpc_connector_arn"]
    where = f"{PREFIX}.egress_configuration"
    if egress_type not in EgressType.__members__:
        violations.append(FieldViolation(f"{where}.egress_type", "one of DEFAULT, VPC"))
    elif egress_type == EgressType.VPC and not arn:
        violations.append(
            FieldViolation(f"{where}.vpc_connector_arn", "required when egress_type is VPC")
        )
    elif egress_type == EgressType.DEFAULT and arn:
        violations.append(
            FieldViolation(f"{where}.vpc_connector_arn", "only valid when egress_type is VPC")
        )
    if arn and parse_arn(arn, "vpcconnector") is None:
        violations.append(FieldViolation(f"{where}.vpc_connector_arn", "not a VPC connector ARN"))
    if network["ip_address_type"] not in IpAddressType.__members__:
        violations.append(FieldViolation(f"{PREFIX}.ip_address_type", "one of IPV4, DUAL_STACK"))
    return violations


def egress_connector(network: dict[str, Any] | None) -> str:
    """The VPC connector a network configuration sends egress through ("" for none)."""
    if not network:
        return ""
    egress = network.get("egress_configuration") or {}
    if egress.get("egress_type") != EgressType.VPC:
        return ""
    return str(egress.get("vpc_connector_arn") or "")


def is_publicly_accessible(network: dict[str, Any] | None) -> bool:
    if not network:
        return True
    return bool((network.get("ingress_configuration") or {}).get("is_publicly_accessible", True))
