"""App Runner's API model drives the wire: botocore's `apprunner` service (every action's
input and output shape, with their members, types, lengths, ranges, enums and patterns).

Every request is validated against its action's input shape before a handler sees it, and
refused as App Runner refuses it: `InvalidRequestException` with AWS's wording and App
Runner's member paths (`2 validation errors detected: Value 'ab' at 'serviceName' failed
to satisfy constraint: Member must have length greater than or equal to 4; …`), or
`SerializationException` for a value of the wrong JSON type. Every answer is serialized
by its output shape (timestamps as epoch seconds, unset members left out) and checked
against it before it leaves: an answer the model does not allow is a defect of this
server, answered as `InternalServiceErrorException` rather than sent malformed.

The handlers keep only the translation between App Runner's members and the use cases,
and App Runner's rules the model does not express (one of two members, what this server
does not implement, limits across resources)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from .errors import INTERNAL, AwsError, invalid_request, serialization

log = logging.getLogger(__name__)

SERVICE = "apprunner"
# How much of a refused value a message shows.
MAX_SHOWN = 100

# Where this server departs from the model's letter, each for a stated reason (and listed
# in docs/apprunner.md under "Differences that remain"):
#
# - ServiceId: the model's pattern is a dashed UUID (36 characters) while its length is
#   exactly 32; App Runner's own ids are 32 hex digits, as this server's are. The pattern
#   cannot be met by any value of the model's length, so only the length is held.
UNCHECKED_PATTERNS = frozenset({"ServiceId"})
# - ImageIdentifier: besides the model's ECR and ECR Public forms, a bare
#   `<repository>[:<tag>|@sha256:<digest>]` names an image of the source registry, as the
#   gRPC API and `servicecontrol images push` name it; both APIs read the same stored
#   configuration, so the App Runner wire accepts and answers that form too.
EXTRA_PATTERNS: dict[str, str] = {
    "ImageIdentifier": (
        r"[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?"
    ),
}
# - CustomDomainAssociationStatus: App Runner answers it in lowercase
#   (`pending_certificate_dns_validation`) though its model lists the values in uppercase,
#   and clients (Terraform) wait on the lowercase values.
# - AutoScalingConfigurationStatus: the same (`active`, `inactive`); Terraform's auto
#   scaling configuration resource waits on `active`.
WIRE_SPELLINGS: dict[str, Callable[[str], str]] = {
    "CustomDomainAssociationStatus": str.upper,
    "AutoScalingConfigurationStatus": str.upper,
}


@cache
def service_model() -> ServiceModel:
    """App Runner's model as the installed botocore ships it."""
    return botocore.session.get_session().get_service_model(SERVICE)


def operation(name: str) -> OperationModel | None:
    model = service_model()
    return model.operation_model(name) if name in model.operation_names else None


def declared_errors(name: str) -> frozenset[str]:
    """The errors the model declares for an action."""
    op = operation(name)
    return frozenset(e.name for e in op.error_shapes) if op is not None else frozenset()


@cache
def _patterns(shape_name: str, pattern: str) -> tuple[re.Pattern[str], ...]:
    # Java's and ECMAScript's `\w` and `\d` are ASCII. `.` matches any character: the
    # model writes `.*` for "anything", and App Runner accepts line breaks where it does
    # (an environment variable's value, a tag's value).
    found = [re.compile(pattern, re.ASCII | re.DOTALL)]
    extra = EXTRA_PATTERNS.get(shape_name)
    if extra is not None:
        found.append(re.compile(extra, re.ASCII))
    return tuple(found)


# ----- requests -----


@dataclass(frozen=True)
class Violation:
    path: str
    value: Any
    constraint: str
    # A sensitive member's value is never repeated back.
    hidden: bool = False

    def text(self) -> str:
        if self.value is None:
            shown = "null "
        elif self.hidden or not isinstance(self.value, str | int | float | bool):
            shown = ""
        else:
            value = self.value
            if isinstance(value, bool):
                value = "true" if value else "false"
            value = str(value)
            if len(value) > MAX_SHOWN:
                value = value[:MAX_SHOWN] + "..."
            shown = f"'{value}' "
        return f"Value {shown}at '{self.path}' failed to satisfy constraint: {self.constraint}"


def validation_error(violations: list[Violation]) -> AwsError:
    count = len(violations)
    return invalid_request(
        f"{count} validation error{'s' if count > 1 else ''} detected: "
        + "; ".join(v.text() for v in violations)
    )


def _member_name(name: str) -> str:
    # AWS's messages name members as the service's own code does: lower camel case.
    return name[:1].lower() + name[1:]


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "number"


def _wrong_type(value: Any, path: str, expected: str) -> AwsError:
    return serialization(
        f"Cannot read a JSON {_type_name(value)} at '{path or '(body)'}' as {expected}."
    )


def _sensitive(shape: Shape) -> bool:
    return bool(shape.metadata.get("sensitive") or shape.serialization.get("sensitive"))


def _length_constraints(shape: Shape, size: int) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    out = []
    if high is not None and size > high:
        out.append(f"Member must have length less than or equal to {high}")
    if low is not None and size < low:
        out.append(f"Member must have length greater than or equal to {low}")
    return out


def _string_constraints(shape: Shape, value: str) -> list[str]:
    out = _length_constraints(shape, len(value))
    pattern = shape.metadata.get("pattern")
    if (
        pattern
        and shape.name not in UNCHECKED_PATTERNS
        and not any(p.fullmatch(value) for p in _patterns(shape.name, pattern))
    ):
        out.append(f"Member must satisfy regular expression pattern: {pattern}")
    enum = shape.enum
    if enum and value not in enum:
        out.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
    return out


def _number_constraints(shape: Shape, value: float) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    out = []
    if high is not None and value > high:
        out.append(f"Member must have value less than or equal to {high}")
    if low is not None and value < low:
        out.append(f"Member must have value greater than or equal to {low}")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Each scalar type: what JSON value it accepts, and its name in a message.
_SCALARS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (_is_int, "an integer"),
    "long": (_is_int, "an integer"),
    "float": (_is_number, "a number"),
    "double": (_is_number, "a number"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "timestamp": (_is_number, "a timestamp (epoch seconds)"),
}
_NUMBERS = frozenset({"integer", "long", "float", "double"})


class _RequestWalk:
    """One request against its input shape: the violations found, in the model's member
    order; a value of the wrong JSON type stops the walk (SerializationException)."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, path: str, value: Any, constraints: list[str], shape: Shape) -> None:
        hidden = _sensitive(shape)
        self.violations += [Violation(path, value, c, hidden) for c in constraints]

    def visit(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        if kind == "structure":
            self.structure(shape, value, path)
        elif kind == "list":
            self.list(shape, value, path)
        elif kind == "map":
            self.map(shape, value, path)
        else:
            self.scalar(shape, value, path)

    def scalar(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        accepts, expected = _SCALARS.get(kind, (None, kind))
        if accepts is None:
            raise serialization(f"Cannot read '{path}': {kind} values are not accepted.")
        if not accepts(value):
            raise _wrong_type(value, path, expected)
        if kind == "string":
            self.add(path, value, _string_constraints(shape, value), shape)
        elif kind in _NUMBERS:
            self.add(path, value, _number_constraints(shape, value), shape)

    def structure(self, shape: StructureShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _wrong_type(value, path, f"a {shape.name} structure")
        required = set(shape.required_members)
        for name, member in shape.members.items():
            where = _join(path, _member_name(name))
            item = value.get(name)
            if item is None:
                if name in required:
                    self.violations.append(
                        Violation(where, None, "Member must not be null", _sensitive(member))
                    )
                continue
            self.visit(member, item, where)

    def list(self, shape: ListShape, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise _wrong_type(value, path, "a list")
        self.add(path, value, _length_constraints(shape, len(value)), shape)
        for i, item in enumerate(value, start=1):
            where = f"{path}.{i}.member"
            if item is None:
                self.violations.append(Violation(where, None, "Member must not be null"))
                continue
            self.visit(shape.member, item, where)

    def map(self, shape: MapShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _wrong_type(value, path, "a map")
        self.add(path, value, _length_constraints(shape, len(value)), shape)
        key_constraints: list[str] = []
        value_constraints: list[str] = []
        for key, item in value.items():
            key_constraints += _string_constraints(shape.key, key)
            if not isinstance(item, str) and shape.value.type_name == "string":
                raise _wrong_type(item, f"{path}.{key}", "a string")
            inner = _RequestWalk()
            inner.visit(shape.value, item, f"{path}.{key}")
            value_constraints += [v.constraint for v in inner.violations]
        # As AWS words a map's violations: once for its keys, once for its values.
        hidden = _sensitive(shape) or _sensitive(shape.key) or _sensitive(shape.value)
        for what, found in (("keys", key_constraints), ("value", value_constraints)):
            if found:
                unique = list(dict.fromkeys(found))
                self.violations.append(
                    Violation(
                        path,
                        value,
                        f"Map {what} must satisfy constraint: [{', '.join(unique)}]",
                        hidden,
                    )
                )


def validate_request(action: str, body: Mapping[str, Any]) -> None:
    """Refuses a request its action's input shape does not allow; returns when it does."""
    op = operation(action)
    if op is None or op.input_shape is None:
        return
    walk = _RequestWalk()
    walk.structure(op.input_shape, dict(body), "")
    if walk.violations:
        raise validation_error(walk.violations)


# ----- responses -----


class _ResponseWalk:
    """An answer serialized by its output shape: timestamps as epoch seconds, members
    with no value left out; everything the model does not allow is a problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    def visit(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self.structure(shape, value, path)
        if kind == "list":
            return self.list(shape, value, path)
        if kind == "map":
            return self.map(shape, value, path)
        if kind == "timestamp" and isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        accepts, expected = _SCALARS.get(kind, (None, kind))
        if accepts is None:
            self.problem(path, f"shape type {kind} is not served")
        elif not accepts(value):
            self.problem(path, f"expected {expected}, got {_type_name(value)}")
        elif kind == "string":
            self.string(shape, value, path)
        elif kind in _NUMBERS:
            for c in _number_constraints(shape, value):
                self.problem(path, f"{value}: {c}")
        return value

    def string(self, shape: Shape, value: str, path: str) -> None:
        spelling = WIRE_SPELLINGS.get(shape.name)
        checked = value
        if spelling is not None:
            if value != value.lower():
                self.problem(path, f"{value!r} is not App Runner's lowercase spelling")
            checked = spelling(value)
        for c in _string_constraints(shape, checked):
            self.problem(path, f"{value[:MAX_SHOWN]!r}: {c}")

    def list(self, shape: ListShape, value: Any, path: str) -> Any:
        if not isinstance(value, list | tuple):
            self.problem(path, f"expected a list, got {_type_name(value)}")
            return value
        for c in _length_constraints(shape, len(value)):
            self.problem(path, c)
        return [self.visit(shape.member, item, f"{path}[{i}]") for i, item in enumerate(value)]

    def map(self, shape: MapShape, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self.problem(path, f"expected a map, got {_type_name(value)}")
            return value
        out = {}
        for key, item in value.items():
            self.visit(shape.key, key, f"{path}<key>")
            out[key] = self.visit(shape.value, item, f"{path}[{key}]")
        return out

    def structure(self, shape: StructureShape, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self.problem(path, f"expected a {shape.name} structure, got {_type_name(value)}")
            return value
        out: dict[str, Any] = {}
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                self.problem(path, f"{name!r} is not a member of {shape.name}")
                continue
            if item is None:
                continue
            out[name] = self.visit(member, item, f"{path}.{name}")
        for name in shape.required_members:
            if name not in out:
                self.problem(path, f"{shape.name} requires {name}")
        return out


def serialize_response(action: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The answer body of `action`, serialized by its output shape. Raises an
    InternalServiceErrorException (logged once, on one line) for an answer the model does
    not allow."""
    op = operation(action)
    if op is None or op.output_shape is None:
        return dict(result)
    walk = _ResponseWalk()
    body = walk.structure(op.output_shape, result, "$")
    if walk.problems:
        correlation = uuid.uuid4().hex
        log.error(
            "answer of %s does not match App Runner's model, answered as an internal error "
            "(correlation id %s): %s",
            action,
            correlation,
            "; ".join(walk.problems)[:2000],
            extra={"correlation_id": correlation},
        )
        raise AwsError(
            INTERNAL,
            f"An unexpected service exception occurred. Correlation id {correlation}.",
        )
    return dict(body)


def response_problems(action: str, result: Mapping[str, Any]) -> list[str]:
    """What the model does not allow in an answer of `action` (for checks and tests)."""
    op = operation(action)
    if op is None or op.output_shape is None:
        return [f"{action} is not an operation of App Runner's model"]
    walk = _ResponseWalk()
    walk.structure(op.output_shape, result, "$")
    return walk.problems
