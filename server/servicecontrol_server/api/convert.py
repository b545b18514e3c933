"""Protobuf messages ↔ domain values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import vpc_pb2

from ..domain.errors import FieldViolation
from ..domain.model import Certificate, Connection, CustomDomain, Operation, Service
from ..domain.vpc import default_network, normalized_network


def ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    set_time(out, value)
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def set_time(field: timestamp_pb2.Timestamp, value: datetime) -> None:
    """`field.FromDatetime(value)` (a naive value is UTC), by arithmetic: FromDatetime
    goes through a time tuple and calendar.timegm, a fifth of a listed page's conversion."""
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    field.seconds = delta.days * 86_400 + delta.seconds
    field.nanos = delta.microseconds * 1_000


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=False
    )


def from_dict(data: dict[str, Any], message: Message) -> Message:
    return json_format.ParseDict(data, message, ignore_unknown_fields=True)


# Stored configurations (JSON) → their messages, remembered by content: ListServices
# converts every listed service's configurations on every call, and the JSON parser of
# protobuf cost more than the rest of the call's conversion together. The wire bytes are
# kept (a message handed out is never shared); the memo is bounded and emptied when full.
_PARSED: dict[tuple[str, bytes], bytes] = {}
_PARSED_MAX = 2048
# A memo key: the value's JSON with sorted keys (msgspec's encoder, ten times faster than
# the standard library's, which cost a listed page as much as decoding its rows); what it
# cannot encode (a key that is not a string) raises TypeError, and goes unremembered.
_KEY = msgspec.json.Encoder(order="sorted").encode


def from_stored(data: dict[str, Any], message: Message) -> Message:
    """`from_dict` for stored values, memoised by content."""
    try:
        key = (message.DESCRIPTOR.full_name, _KEY(data))
    except (TypeError, ValueError):
        return from_dict(data, message)
    wire = _PARSED.get(key)
    if wire is None:
        scratch = type(message)()
        from_dict(data, scratch)
        wire = scratch.SerializeToString(deterministic=True)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = wire
    if wire:  # as ParseDict, an empty value leaves a sub-message unset
        message.MergeFromString(wire)
    return message


def unknown_enum_violations(message: Message, prefix: str) -> list[FieldViolation]:
    """Open proto3 enums accept any number; this refuses values the contract lacks."""
    violations: list[FieldViolation] = []
    for fd, value in message.ListFields():
        path = f"{prefix}.{fd.name}" if prefix else fd.name
        if fd.type == FieldDescriptor.TYPE_ENUM and fd.enum_type is not None:
            values = value if fd.is_repeated else [value]
            for v in values:
                if fd.enum_type.values_by_number.get(v) is None:
                    violations.append(FieldViolation(path, f"unknown enum value {v}"))
        elif (
            fd.type == FieldDescriptor.TYPE_MESSAGE
            and fd.message_type is not None
            and not fd.message_type.GetOptions().map_entry
        ):
            items = value if fd.is_repeated else [value]
            for item in items:
                violations += unknown_enum_violations(item, path)
    return violations


_STATUS = {name: number for name, number in pb.Service.Status.items()}
# A service's four stored configurations → the wire bytes of a Service message holding
# only those four (its network with App Runner's defaults), by content: services share
# their configurations' shapes, so a page of 20 is mostly hits, one key and one merge each.
_CONFIGURED: dict[bytes, bytes] = {}
_CONFIGURED_MAX = 2048


def service(svc: Service) -> pb.Service:
    out = pb.Service(
        service_name=svc.service_name,
        service_id=svc.service_id,
        service_arn=svc.service_arn,
        service_url=svc.service_url,
        status=_STATUS[svc.status.value],
        etag=svc.etag,
        current_operation_id=svc.current_operation_id or "",
        status_message=svc.status_message,
    )
    set_time(out.created_at, svc.created_at)
    set_time(out.updated_at, svc.updated_at)
    if svc.deleted_at is not None:
        set_time(out.deleted_at, svc.deleted_at)
    if svc.purge_at is not None:
        set_time(out.purge_at, svc.purge_at)
    config = svc.configuration
    if config is not None:
        out.auto_scaling_configuration_arn = config.auto_scaling_configuration_arn or ""
        out.observability_configuration_arn = config.observability_configuration_arn or ""
        parts: tuple[Any, ...] = (
            config.source,
            config.instance,
            config.health_check,
            config.network,
        )
    else:
        parts = (None, None, None, None)
    try:
        key = _KEY(parts)
    except (TypeError, ValueError):
        out.MergeFromString(_configurations(*parts))
        return out
    wire = _CONFIGURED.get(key)
    if wire is None:
        wire = _configurations(*parts)
        if len(_CONFIGURED) >= _CONFIGURED_MAX:
            _CONFIGURED.clear()
        _CONFIGURED[key] = wire
    out.MergeFromString(wire)
    return out


def _configurations(
    source: dict[str, Any] | None,
    instance: dict[str, Any] | None,
    health_check: dict[str, Any] | None,
    network: dict[str, Any] | None,
) -> bytes:
    """The wire bytes of a Service holding only these configurations (none of the first
    three for a service without a configuration record)."""
    scratch = pb.Service()
    if source is not None:
        from_stored(source, scratch.source_configuration)
    if instance is not None:
        from_stored(instance, scratch.instance_configuration)
    if health_check is not None:
        from_stored(health_check, scratch.health_check_configuration)
    scratch.network_configuration.CopyFrom(network_configuration(network))
    return scratch.SerializeToString(deterministic=True)


def network_configuration(network: dict[str, Any] | None) -> vpc_pb2.NetworkConfiguration:
    """A service's network configuration, App Runner's defaults where none was set."""
    out = vpc_pb2.NetworkConfiguration()
    from_stored(normalized_network(network) if network else default_network(), out)
    return out


def deletion_summary(data: dict[str, Any]) -> pb.DeletionSummary:
    out = pb.DeletionSummary(
        image_objects=int(data.get("image_objects", 0)),
        image_bytes=int(data.get("image_bytes", 0)),
        configuration_records=data.get("configuration_records", []),
        retained_connection_arns=data.get("retained_connection_arns", []),
        unlinked_domain_names=data.get("unlinked_domain_names", []),
        estimated=bool(data.get("estimated", False)),
    )
    for cert in data.get("retained_certificates", []):
        item = out.retained_certificates.add(domain_name=cert.get("domain_name", ""))
        if cert.get("certificate_arn"):
            item.certificate_arn = cert["certificate_arn"]
        if cert.get("expires_at"):
            item.expires_at.FromDatetime(datetime.fromisoformat(cert["expires_at"]))
    return out


def operation(op: Operation, status_message: str = "") -> pb.Operation:
    out = pb.Operation(
        status_message=status_message,
        id=op.operation_id,
        type=pb.Operation.Type.Value(op.type.value),
        status=pb.Operation.Status.Value(op.status.value),
        target_arn=op.target_arn,
        current_step=op.current_step,
        attempt=op.attempt,
        last_error=op.last_error,
    )
    for name in ("started_at", "ended_at", "updated_at", "next_attempt_at", "retry_until"):
        value = ts(getattr(op, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    if op.error:
        info = error_details_pb2.ErrorInfo(
            reason=op.error.get("reason", ""),
            domain="servicecontrol",
            metadata=op.error.get("metadata", {}),
        )
        status = status_pb2.Status(
            code=code_pb2.FAILED_PRECONDITION, message=op.error.get("message", "")
        )
        status.details.add().Pack(info)
        out.error.CopyFrom(status)
    if op.deletion_report:
        out.deletion_report.CopyFrom(deletion_summary(op.deletion_report))
    return out


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


def connection(conn: Connection) -> pb.Connection:
    out = pb.Connection(
        connection_name=conn.connection_name,
        connection_arn=conn.connection_arn,
        provider_type=pb.Connection.ProviderType.Value(conn.provider_type.value),
        status=pb.Connection.Status.Value(conn.status.value),
    )
    for name in ("created_at", "deleted_at", "purge_at"):
        value = ts(getattr(conn, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    return out


def custom_domain(domain: CustomDomain) -> pb.CustomDomain:
    return pb.CustomDomain(
        domain_name=domain.domain_name,
        enable_www_subdomain=domain.enable_www_subdomain,
        status=pb.CustomDomain.Status.Value(domain.status.value),
        certificate_validation_records=[
            pb.CertificateValidationRecord(
                name=record.get("name", ""),
                type=record.get("type", "CNAME"),
                value=record.get("value", ""),
                status=pb.CertificateValidationRecord.Status.Value(
                    record.get("status", "PENDING_VALIDATION")
                ),
            )
            for record in domain.validation_records
        ],
    )


def certificate(cert: Certificate) -> pb.Certificate:
    out = pb.Certificate(
        certificate_arn=cert.certificate_arn,
        domain_name=cert.domain_name,
        status=pb.Certificate.Status.Value(cert.status.value),
        service_arn=cert.service_arn or "",
    )
    for name in ("created_at", "unlinked_at", "expires_at"):
        value = ts(getattr(cert, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    return out
