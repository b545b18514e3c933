"""Resolving a caller's ARN to the id of a resource in the caller's account."""

from __future__ import annotations

from collections.abc import Callable

from ..domain import names
from ..domain.errors import DomainError, FieldViolation, InvalidRequest


def owned_resource_id(
    value: str,
    *,
    kind: str,
    field: str,
    account_id: str,
    region: str,
    not_found: Callable[[str], DomainError],
    violations: list[FieldViolation] | None = None,
) -> str:
    """The resource id in `value`, an ARN of `kind`. A missing or malformed ARN is refused
    together with any `violations` the caller collected; another account's or region's
    ARN is simply not found, so callers learn nothing about other accounts."""
    found = list(violations or [])
    arn = names.parse_arn(value, kind) if value else None
    if not value:
        found.append(FieldViolation(field, "required"))
    elif arn is None:
        found.append(FieldViolation(field, f"not a {kind} ARN"))
    if found:
        raise InvalidRequest(found)
    assert arn is not None
    if arn.account_id != account_id or arn.region != region:
        raise _elsewhere(not_found(value), arn, account_id, region)
    return arn.resource_id


def _elsewhere(error: DomainError, arn: names.Arn, account_id: str, region: str) -> DomainError:
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
