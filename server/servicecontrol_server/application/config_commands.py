"""The auto scaling and observability configuration use cases: create (a new revision of
a name), describe, list, delete (one revision or all of a name), the account's default
auto scaling configuration, and the services that use one. Each mutation is one
transaction with its outbox events; the account row lock serialises an account's
configuration changes, so revision numbers, quotas and the default cannot race."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..domain import config_resources as rules
from ..domain import events, names
from ..domain import tags as tag_rules
from ..domain.config_resources import (
    ConfigArn,
    ConfigKind,
    ConfigResource,
    ConfigStatus,
    ConfigurationInactive,
    ConfigurationInUse,
)
from ..domain.errors import FieldViolation, InvalidPageToken, InvalidRequest, QuotaExceeded
from ..domain.model import ServiceConfiguration
from ..settings import Settings
from .arns import owned_arn
from .pagination import PageTokens
from .pagination import page_size as bounded_page_size
from .ports import UnitOfWork
from .regions import request_region
from .results import Page

MAX_CONFIGS_PAGE = 100
MAX_SERVICES_PAGE = 100
ARN_FIELD: dict[ConfigKind, str] = {
    ConfigKind.AUTO_SCALING: "auto_scaling_configuration_arn",
    ConfigKind.OBSERVABILITY: "observability_configuration_arn",
}
NAME_FIELD: dict[ConfigKind, str] = {
    ConfigKind.AUTO_SCALING: "auto_scaling_configuration_name",
    ConfigKind.OBSERVABILITY: "observability_configuration_name",
}
QUOTA_REASON: dict[ConfigKind, tuple[str, str]] = {
    ConfigKind.AUTO_SCALING: (
        "AUTO_SCALING_CONFIGURATION_QUOTA_EXCEEDED",
        "auto scaling configuration",
    ),
    ConfigKind.OBSERVABILITY: (
        "OBSERVABILITY_CONFIGURATION_QUOTA_EXCEEDED",
        "observability configuration",
    ),
}


class ConfigCommands:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: Settings) -> None:
        self.uow = uow_factory
        self.settings = settings
        self.tokens = PageTokens(settings.page_token_key)

    # ----- creation -----

    async def create_auto_scaling(
        self,
        account_id: str,
        name: str,
        max_concurrency: int | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        tags: Sequence[tuple[str, str]] = (),
    ) -> ConfigResource:
        settings, violations = rules.auto_scaling_settings(max_concurrency, min_size, max_size)
        return await self._create(
            account_id, ConfigKind.AUTO_SCALING, name, settings, violations, tags
        )

    async def create_observability(
        self,
        account_id: str,
        name: str,
        trace_vendor: str | None = None,
        tags: Sequence[tuple[str, str]] = (),
    ) -> ConfigResource:
        violations: list[FieldViolation] = []
        settings: dict[str, str] = {}
        if trace_vendor is not None:
            if trace_vendor not in rules.TRACE_VENDORS:
                violations.append(
                    FieldViolation(
                        "trace_configuration.vendor", f"one of {', '.join(rules.TRACE_VENDORS)}"
                    )
                )
            settings["trace_vendor"] = trace_vendor
        if name == rules.RESERVED_OBSERVABILITY_NAME:
            violations.append(
                FieldViolation(
                    NAME_FIELD[ConfigKind.OBSERVABILITY],
                    f"the name {rules.RESERVED_OBSERVABILITY_NAME} is reserved",
                )
            )
        return await self._create(
            account_id, ConfigKind.OBSERVABILITY, name, settings, violations, tags
        )

    async def _create(
        self,
        account_id: str,
        kind: ConfigKind,
        name: str,
        settings: Mapping[str, Any],
        violations: list[FieldViolation],
        tags: Sequence[tuple[str, str]],
    ) -> ConfigResource:
        violations = _name_violations(kind, name) + violations
        violations += tag_rules.tag_violations(tags) + tag_rules.check_count({}, dict(tags))
        if violations:
            raise InvalidRequest(violations)
        region = request_region(self.settings)
        async with self.uow() as uow:
            await uow.accounts.lock(account_id)
            await self._ensure_default(uow, account_id)
            revisions = await uow.config_resources.active_revisions(account_id, region, kind, name)
            reason, label = QUOTA_REASON[kind]
            if not revisions:
                usage = await uow.config_resources.count_active_names(account_id, region, kind)
                if usage >= rules.NAME_QUOTA[kind]:
                    raise QuotaExceeded(
                        reason,
                        f"{label} names",
                        rules.NAME_QUOTA[kind],
                        usage,
                        f"account {account_id} in {region}",
                    )
            elif len(revisions) >= rules.REVISION_QUOTA[kind]:
                raise QuotaExceeded(
                    reason,
                    f"{label} revisions",
                    rules.REVISION_QUOTA[kind],
                    len(revisions),
                    f"{label} {name}",
                )
            revision = revisions[-1].revision + 1 if revisions else 1
            config_id = names.new_resource_id()
            config = ConfigResource(
                config_id=config_id,
                account_id=account_id,
                kind=kind,
                name=name,
                revision=revision,
                arn=rules.config_arn(region, account_id, kind, name, revision, config_id),
                status=ConfigStatus.ACTIVE,
                created_at=await uow.now(),
                settings=dict(settings),
                latest=True,
            )
            await uow.config_resources.add(config)
            await uow.tags.put(account_id, config.arn, dict(tags))
            uow.record(events.configuration_created(config))
            await uow.commit()
        return config

    # ----- queries -----

    async def describe(self, account_id: str, kind: ConfigKind, arn: str) -> ConfigResource:
        """A full ARN names one revision, ACTIVE or INACTIVE; a partial one the latest
        active revision of the name, or that revision."""
        parsed = self._parse(account_id, kind, arn)
        async with self.uow() as uow:
            await self._ensure_default(uow, account_id)
            found = await self._find(uow, account_id, parsed, arn)
            await uow.commit()
        return found

    async def list(
        self,
        account_id: str,
        kind: ConfigKind,
        name: str,
        latest_only: bool,
        size: int,
        token: str,
    ) -> Page:
        if name:
            violations = _name_violations(kind, name)
            if violations:
                raise InvalidRequest(violations)
        limit = bounded_page_size(size, MAX_CONFIGS_PAGE)
        listing = f"configs:{kind.value}"
        region = request_region(self.settings)
        filters = {"account": account_id, "region": region, "name": name, "latest": latest_only}
        after = _position(self.tokens.decode(token, listing, filters))
        async with self.uow() as uow:
            await self._ensure_default(uow, account_id)
            items = await uow.config_resources.list_page(
                account_id, region, kind, name or None, latest_only, after, limit + 1
            )
            await uow.commit()
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            next_token = self.tokens.encode(listing, filters, [items[-1].name, items[-1].revision])
        return Page(items, next_token)

    async def list_services(self, account_id: str, arn: str, size: int, token: str) -> Page:
        """The live services that use an auto scaling configuration revision, by ARN."""
        kind = ConfigKind.AUTO_SCALING
        parsed = self._parse(account_id, kind, arn)
        limit = bounded_page_size(size, MAX_SERVICES_PAGE)
        async with self.uow() as uow:
            await self._ensure_default(uow, account_id)
            config = await self._find(uow, account_id, parsed, arn)
            filters = {"account": account_id, "arn": config.arn}
            position = self.tokens.decode(token, "config-services", filters)
            after = str(position[0]) if position else None
            arns = await uow.config_resources.services_using(
                account_id, config.arn, after, limit + 1
            )
            await uow.commit()
        next_token = ""
        if len(arns) > limit:
            arns = arns[:limit]
            next_token = self.tokens.encode("config-services", filters, [arns[-1]])
        return Page(arns, next_token)

    async def summary_for_service(self, account_id: str, arn: str | None) -> ConfigResource:
        """The auto scaling configuration a service uses (the built-in default revision
        for a service that names none)."""
        async with self.uow() as uow:
            await self._ensure_default(uow, account_id)
            if arn:
                parsed = rules.parse_config_arn(arn, ConfigKind.AUTO_SCALING)
                if parsed is not None and parsed.config_id:
                    found = await uow.config_resources.get(
                        account_id, ConfigKind.AUTO_SCALING, parsed.config_id
                    )
                    if found is not None:
                        await uow.commit()
                        return found
            config_id = rules.default_config_id(request_region(self.settings), account_id)
            found = await uow.config_resources.get(account_id, ConfigKind.AUTO_SCALING, config_id)
            await uow.commit()
        assert found is not None
        return found

    # ----- mutations -----

    async def delete(
        self, account_id: str, kind: ConfigKind, arn: str, all_revisions: bool = False
    ) -> ConfigResource:
        """Makes the revision (or every active revision of the name) INACTIVE, with its
        tags gone. A revision a live service uses, or the account's default, stays."""
        parsed = self._parse(account_id, kind, arn)
        field = ARN_FIELD[kind]
        if all_revisions and parsed.revision is not None:
            raise InvalidRequest(
                [
                    FieldViolation(
                        field,
                        "with delete_all_revisions, name the configuration by a partial ARN "
                        "ending with its name",
                    )
                ]
            )
        async with self.uow() as uow:
            await uow.accounts.lock(account_id)
            await self._ensure_default(uow, account_id)
            if all_revisions:
                doomed = await uow.config_resources.active_revisions(
                    account_id, parsed.region, kind, parsed.name, for_update=True
                )
                if not doomed:
                    raise rules.not_found(kind, arn)
            else:
                doomed = [await self._find(uow, account_id, parsed, arn, for_update=True)]
                self._check_active(doomed[0], arn)
            if any(c.is_default for c in doomed):
                raise ConfigurationInUse(
                    f"You can't delete a reserved {rules.LABEL[kind]}: {arn} is the account's "
                    "default. Make another configuration the default first.",
                    {field_key(kind): arn, "isDefault": "true"},
                )
            if await uow.config_resources.in_use([c.arn for c in doomed]):
                raise ConfigurationInUse(
                    f"You can't delete the {rules.LABEL[kind]}. It's used by one or more "
                    f"services. To delete it, update the services to use other "
                    f"{rules.LABEL[kind]}s.",
                    {field_key(kind): arn},
                )
            for config in doomed:
                await uow.config_resources.mark_inactive(config)
                await uow.tags.delete_all(config.arn)
                uow.record(events.configuration_deleted(config))
            await uow.commit()
        return doomed[-1]

    async def update_default(self, account_id: str, arn: str) -> ConfigResource:
        kind = ConfigKind.AUTO_SCALING
        parsed = self._parse(account_id, kind, arn)
        async with self.uow() as uow:
            await uow.accounts.lock(account_id)
            await self._ensure_default(uow, account_id)
            config = await self._find(uow, account_id, parsed, arn, for_update=True)
            self._check_active(config, arn)
            previous = await uow.config_resources.get_default(
                account_id, parsed.region, kind, for_update=True
            )
            if previous is not None and previous.config_id == config.config_id:
                return config
            await uow.config_resources.set_default(account_id, parsed.region, kind, config)
            uow.record(
                events.auto_scaling_default_changed(config, previous.arn if previous else "")
            )
            await uow.commit()
        return config

    # ----- internals -----

    async def _ensure_default(self, uow: UnitOfWork, account_id: str) -> None:
        await _ensure_default(uow, request_region(self.settings), account_id)

    def _parse(self, account_id: str, kind: ConfigKind, arn: str) -> ConfigArn:
        return _owned(request_region(self.settings), account_id, kind, arn, ARN_FIELD[kind])

    async def _find(
        self,
        uow: UnitOfWork,
        account_id: str,
        parsed: ConfigArn,
        arn: str,
        *,
        for_update: bool = False,
    ) -> ConfigResource:
        return await _find(uow, account_id, parsed, arn, for_update=for_update)

    def _check_active(self, config: ConfigResource, arn: str) -> None:
        _check_active(config, arn)


# ----- what services use (called from the service use cases' transactions) -----


async def service_references(
    uow: UnitOfWork,
    region: str,
    account_id: str,
    auto_scaling_arn: str | None,
    observability: dict[str, Any] | None,
    current: ServiceConfiguration | None,
) -> tuple[str | None, str | None]:
    """The full ARNs of the auto scaling and observability configurations a service will
    use: those the request names (checked to be ACTIVE revisions of the caller's account;
    a partial ARN names the latest active revision, locked until commit so a racing delete
    sees the service), else what the service has (for a new one, the account's default
    auto scaling configuration and no observability)."""
    violations = observability_violations(observability)
    if violations:
        raise InvalidRequest(violations)
    if auto_scaling_arn is not None:
        scaling: str | None = await _resolve(
            uow, region, account_id, ConfigKind.AUTO_SCALING, auto_scaling_arn
        )
    elif current is not None:
        scaling = current.auto_scaling_configuration_arn
    else:
        scaling = await _default_arn(uow, region, account_id)
    if observability is None:
        tracing = current.observability_configuration_arn if current is not None else None
    elif observability.get("observability_enabled"):
        tracing = await _resolve(
            uow,
            region,
            account_id,
            ConfigKind.OBSERVABILITY,
            str(observability.get("observability_configuration_arn") or ""),
        )
    else:
        tracing = None
    return scaling, tracing


def observability_violations(observability: dict[str, Any] | None) -> list[FieldViolation]:
    if observability is None:
        return []
    field = "observability_configuration.observability_configuration_arn"
    arn = observability.get("observability_configuration_arn") or ""
    if observability.get("observability_enabled"):
        if not arn:
            return [FieldViolation(field, "required when observability is enabled")]
    elif arn:
        return [FieldViolation(field, "only allowed when observability is enabled")]
    return []


def _owned(region: str, account_id: str, kind: ConfigKind, arn: str, field: str) -> ConfigArn:
    """`arn`, parsed, when it is a configuration ARN of the caller's account and region."""
    return owned_arn(
        arn,
        lambda text: rules.parse_config_arn(text, kind),
        field=field,
        what=f"an {rules.LABEL[kind]}",
        account_id=account_id,
        region=region,
        not_found=lambda missing: rules.not_found(kind, missing),
    )


async def _resolve(
    uow: UnitOfWork, region: str, account_id: str, kind: ConfigKind, arn: str
) -> str:
    field = (
        ARN_FIELD[kind]
        if kind is ConfigKind.AUTO_SCALING
        else ("observability_configuration.observability_configuration_arn")
    )
    parsed = _owned(region, account_id, kind, arn, field)
    await _ensure_default(uow, region, account_id)
    config = await _find(uow, account_id, parsed, arn, for_update=True)
    _check_active(config, arn)
    return config.arn


async def _default_arn(uow: UnitOfWork, region: str, account_id: str) -> str:
    await _ensure_default(uow, region, account_id)
    config = await uow.config_resources.get_default(
        account_id, region, ConfigKind.AUTO_SCALING, for_update=True
    )
    if config is None:
        # Unreachable while the default cannot be deleted; the built-in one stands in.
        return rules.default_auto_scaling(region, account_id, await uow.now()).arn
    return config.arn


async def _ensure_default(uow: UnitOfWork, region: str, account_id: str) -> None:
    await uow.config_resources.ensure_default(
        rules.default_auto_scaling(region, account_id, await uow.now())
    )


async def _find(
    uow: UnitOfWork,
    account_id: str,
    parsed: ConfigArn,
    arn: str,
    *,
    for_update: bool = False,
) -> ConfigResource:
    repo = uow.config_resources
    if parsed.config_id is not None:
        found = await repo.get(account_id, parsed.kind, parsed.config_id, for_update=for_update)
        if found is None or found.name != parsed.name or found.revision != parsed.revision:
            raise rules.not_found(parsed.kind, arn)
        return found
    revisions = await repo.active_revisions(
        account_id, parsed.region, parsed.kind, parsed.name, for_update=for_update
    )
    if parsed.revision is not None:
        revisions = [c for c in revisions if c.revision == parsed.revision]
    if not revisions:
        raise rules.not_found(parsed.kind, arn)
    return revisions[-1]


def _check_active(config: ConfigResource, arn: str) -> None:
    if config.status is not ConfigStatus.ACTIVE:
        raise ConfigurationInactive(
            f"The {rules.LABEL[config.kind]} you specified has been deleted. ARN: {arn}",
            {field_key(config.kind): arn},
        )


def field_key(kind: ConfigKind) -> str:
    return (
        "autoScalingConfigurationArn"
        if kind is ConfigKind.AUTO_SCALING
        else "observabilityConfigurationArn"
    )


def _name_violations(kind: ConfigKind, name: str) -> list[FieldViolation]:
    field = NAME_FIELD[kind]
    if not name:
        return [FieldViolation(field, "required")]
    if not rules.NAME_RE.fullmatch(name):
        return [FieldViolation(field, rules.NAME_RULE)]
    return []


def _position(position: list[object] | None) -> tuple[str, int] | None:
    if position is None:
        return None
    if len(position) != 2 or not isinstance(position[1], int):
        raise InvalidPageToken("page_token is not valid.")
    return str(position[0]), position[1]
