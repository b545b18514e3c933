"""Auto scaling and observability configurations: account resources with revisions per
name, shared by the services that reference them, as App Runner defines them.

Both kinds are one shape here: a name, a revision, an ARN
(`arn:aws:apprunner:<region>:<account>:<kind>/<name>/<revision>/<32 hex>`), a status
(ACTIVE, or INACTIVE once deleted) and the kind's own settings. An auto scaling
configuration's settings are MaxConcurrency, MinSize and MaxSize; an observability
configuration's are its trace vendor. Every account has App Runner's built-in auto scaling
configuration `DefaultConfiguration` revision 1, the default until another is made it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import FailedPrecondition, FieldViolation, NotFound


class ConfigKind(StrEnum):
    AUTO_SCALING = "autoscalingconfiguration"
    OBSERVABILITY = "observabilityconfiguration"


class ConfigStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,31}")
NAME_RULE = "4-32 characters: letters, digits, - and _, starting with a letter or digit"

# App Runner's defaults and bounds for an auto scaling configuration.
DEFAULT_MAX_CONCURRENCY = 100
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 25
MAX_CONCURRENCY_RANGE = (1, 200)
MIN_SIZE_RANGE = (1, 25)
MAX_SIZE_RANGE = (1, 25)

# App Runner's quotas: distinct names per account, and revisions per name.
NAME_QUOTA: dict[ConfigKind, int] = {ConfigKind.AUTO_SCALING: 10, ConfigKind.OBSERVABILITY: 10}
REVISION_QUOTA: dict[ConfigKind, int] = {
    ConfigKind.AUTO_SCALING: 5,
    ConfigKind.OBSERVABILITY: 10,
}

TRACE_VENDORS = ("AWSXRAY",)
# The built-in auto scaling configuration of every account.
DEFAULT_NAME = "DefaultConfiguration"
# A reserved name for observability configurations (App Runner's model says so).
RESERVED_OBSERVABILITY_NAME = "DefaultConfiguration"

_ARN_RE = re.compile(
    r"arn:aws:apprunner:(?P<region>[a-z0-9-]{1,63}):(?P<account>[0-9]{12}):"
    r"(?P<kind>autoscalingconfiguration|observabilityconfiguration)/(?P<name>[A-Za-z0-9_-]{1,32})"
    r"(?:/(?P<revision>[0-9]{1,9})(?:/(?P<id>[0-9a-f]{32}))?)?"
)


@dataclass
class ConfigResource:
    """One revision of an auto scaling or observability configuration. `latest` and
    `has_associated_service` are derived by the repository when it reads the row."""

    config_id: str
    account_id: str
    kind: ConfigKind
    name: str
    revision: int
    arn: str
    status: ConfigStatus
    created_at: datetime
    # AUTO_SCALING: max_concurrency, min_size, max_size. OBSERVABILITY: trace_vendor
    # (absent when tracing is off).
    settings: dict[str, Any] = field(default_factory=dict)
    is_default: bool = False
    latest: bool = False
    has_associated_service: bool = False
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class ConfigArn:
    """A full ARN (name, revision and id), or a partial one (`…/name` or
    `…/name/revision`) that names the latest active revision, or that revision."""

    region: str
    account_id: str
    kind: ConfigKind
    name: str
    revision: int | None
    config_id: str | None

    @property
    def is_full(self) -> bool:
        return self.config_id is not None


def parse_config_arn(value: str, kind: ConfigKind) -> ConfigArn | None:
    match = _ARN_RE.fullmatch(value)
    if match is None or match["kind"] != kind.value or not NAME_RE.fullmatch(match["name"]):
        return None
    revision = int(match["revision"]) if match["revision"] else None
    if revision is not None and revision < 1:
        return None
    return ConfigArn(
        match["region"], match["account"], kind, match["name"], revision, match["id"] or None
    )


def config_arn(
    region: str, account_id: str, kind: ConfigKind, name: str, revision: int, config_id: str
) -> str:
    return f"arn:aws:apprunner:{region}:{account_id}:{kind.value}/{name}/{revision}/{config_id}"


def default_config_id(region: str, account_id: str) -> str:
    """The id of the account's built-in DefaultConfiguration: stable per account and
    region, so the row is created once whoever asks first."""
    return hashlib.sha256(f"{region}:{account_id}:autoscaling".encode()).hexdigest()[:32]


def auto_scaling_settings(
    max_concurrency: int | None, min_size: int | None, max_size: int | None
) -> tuple[dict[str, Any], list[FieldViolation]]:
    """The settings with App Runner's defaults for what is left out, and what is wrong."""
    settings = {
        "max_concurrency": DEFAULT_MAX_CONCURRENCY if max_concurrency is None else max_concurrency,
        "min_size": DEFAULT_MIN_SIZE if min_size is None else min_size,
        "max_size": DEFAULT_MAX_SIZE if max_size is None else max_size,
    }
    violations: list[FieldViolation] = []
    for key, (low, high) in (
        ("max_concurrency", MAX_CONCURRENCY_RANGE),
        ("min_size", MIN_SIZE_RANGE),
        ("max_size", MAX_SIZE_RANGE),
    ):
        if not low <= settings[key] <= high:
            violations.append(FieldViolation(key, f"must be between {low} and {high}"))
    if not violations and settings["min_size"] > settings["max_size"]:
        violations.append(FieldViolation("min_size", "must not be greater than max_size"))
    return settings, violations


def default_auto_scaling(region: str, account_id: str, now: datetime) -> ConfigResource:
    config_id = default_config_id(region, account_id)
    return ConfigResource(
        config_id=config_id,
        account_id=account_id,
        kind=ConfigKind.AUTO_SCALING,
        name=DEFAULT_NAME,
        revision=1,
        arn=config_arn(region, account_id, ConfigKind.AUTO_SCALING, DEFAULT_NAME, 1, config_id),
        status=ConfigStatus.ACTIVE,
        created_at=now,
        settings=auto_scaling_settings(None, None, None)[0],
        is_default=True,
        latest=True,
    )


LABEL: dict[ConfigKind, str] = {
    ConfigKind.AUTO_SCALING: "auto scaling configuration",
    ConfigKind.OBSERVABILITY: "observability configuration",
}


class AutoScalingConfigurationNotFound(NotFound):
    reason = "AUTO_SCALING_CONFIGURATION_NOT_FOUND"


class ObservabilityConfigurationNotFound(NotFound):
    reason = "OBSERVABILITY_CONFIGURATION_NOT_FOUND"


class ConfigurationInUse(FailedPrecondition):
    """Services use the configuration, or it is the account's default: not deletable."""

    reason = "CONFIGURATION_IN_USE"


class ConfigurationInactive(FailedPrecondition):
    """The configuration revision was deleted: it cannot be used or deleted again."""

    reason = "CONFIGURATION_INACTIVE"


def not_found(kind: ConfigKind, arn: str) -> NotFound:
    cls = (
        AutoScalingConfigurationNotFound
        if kind is ConfigKind.AUTO_SCALING
        else ObservabilityConfigurationNotFound
    )
    key = (
        "autoScalingConfigurationArn"
        if kind is ConfigKind.AUTO_SCALING
        else ("observabilityConfigurationArn")
    )
    return cls(f"The {LABEL[kind]} {arn} doesn't exist.", {key: arn})
