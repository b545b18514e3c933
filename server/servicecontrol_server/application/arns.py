"""Resolving a caller's ARN to the id of a resource in the caller's account."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ..domain import names
from ..domain.errors import DomainError, FieldViolation, InvalidRequest


class ParsedArn(Protocol):
    """What every parsed ARN says: where it points and which resource it names."""

    @property
    def region(self) -> str: ...

    @property
    def account_id(self) -> str: ...


class ParsedResourceArn(ParsedArn, Protocol):
    @property
    def resource_id(self) -> str: ...


A = TypeVar("A", bound=ParsedArn)
R = TypeVar("R", bound=ParsedResourceArn)


def owned_resource_id(
    value: str,
    *,
    kind: str,
    field: str,
    account_id: str,
    region: str,
    not_found: Callable[[str], DomainError],
    violations: list[FieldViolation] | None = None,
    parse: Callable[[str, str], ParsedResourceArn | None] = names.parse_arn,
) -> str:
    """The resource id in `value`, an ARN of `kind` as `parse` reads it. A missing or
    malformed ARN is refused together with any `violations` the caller collected;
    another account's or region's ARN is simply not found, so callers learn nothing
    about other accounts."""
    return owned_arn(
        value,
        lambda text: parse(text, kind),
        field=field,
        what=f"a {kind}",
        account_id=account_id,
        region=region,
        not_found=not_found,
        violations=violations,
    ).resource_id


def owned_arn(
    value: str,
    parse: Callable[[str], A | None],
    *,
    field: str,
    what: str,
    account_id: str,
    region: str,
    not_found: Callable[[str], DomainError],
    violations: list[FieldViolation] | None = None,
) -> A:
    """`value` parsed, when it is an ARN of the caller's account and region; `what`
    names the kind in the violation of a malformed one ("not <what> ARN")."""
    found = list(violations or [])
    arn = parse(value) if value else None
    if not value:
        found.append(FieldViolation(field, "required"))
    elif arn is None:
        found.append(FieldViolation(field, f"not {what} ARN"))
    if found:
        raise InvalidRequest(found)
    assert arn is not None
    if arn.account_id != account_id or arn.region != region:
        raise _elsewhere(not_found(value), arn, account_id, region)
    return arn


def _elsewhere(error: DomainError, arn: ParsedArn, account_id: str, region: str) -> DomainError:
    """The not-found error, saying where the ARN points and where the call acts. Both
    are in the ARN and the caller's own request, so this reveals nothing more."""
    if arn.account_id != account_id:
        where = (
            f"the ARN names account {arn.account_id}, but this call acts in account {account_id}"
        )
    else:
        where = f"the ARN names region {arn.region}, but this call acts in region {region}"
    error.message = f"{error.message.rstrip('.')}: {where}."
    error.args = (error.message,)
    return error
