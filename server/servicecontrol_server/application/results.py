"""What the use cases hand back to the API layers: plain values shared by every endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.model import Service


@dataclass
class Page:
    """One page of a listing and the opaque token of the next (empty on the last)."""

    items: list[Any]
    next_page_token: str


@dataclass
class MutationResult:
    """A service mutation's answer: the service as it is now and the operation started
    (empty for validate_only, whose `plan` a delete fills with its deletion plan)."""

    service: Service
    operation_id: str
    plan: dict[str, Any] | None = None


@dataclass
class Configs:
    """The configuration sections of a create or update request, as plain dicts; None
    where the request leaves a section out."""

    source: dict[str, Any] | None = None
    instance: dict[str, Any] | None = None
    health_check: dict[str, Any] | None = None
    # An auto scaling configuration ARN (full or partial); None where the request has none.
    auto_scaling_configuration_arn: str | None = None
    # {observability_enabled, observability_configuration_arn}; None where not given.
    observability: dict[str, Any] | None = None
    # The network configuration (domain/vpc.py), applied when the request is accepted.
    network: dict[str, Any] | None = None
