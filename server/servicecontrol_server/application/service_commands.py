"""The service use cases. Each mutation is one transaction: state change, operation,
job and outbox event commit together, and the call returns at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..domain import configuration as config_rules
from ..domain import events, names
from ..domain import tags as tag_rules
from ..domain.errors import (
    ConnectionNotAvailable,
    ConnectionNotFound,
    EtagMismatch,
    FieldViolation,
    InvalidRequest,
    OperationNotFound,
    QuotaExceeded,
    ServiceNameTaken,
    ServiceNotFound,
)
from ..domain.model import (
    ConnectionStatus,
    Operation,
    OperationStatus,
    OperationType,
    Service,
    ServiceConfiguration,
    ServiceStatus,
)
from ..domain.vpc import VpcIngressConnection
from ..settings import Settings
from .arns import owned_resource_id
from .config_commands import observability_violations, service_references
from .deletion_plan import deletion_plan
from .idempotency import fingerprint as request_fingerprint
from .idempotency import first_result, request_id_violations
from .jobs import JOB_KIND
from .pagination import PageTokens, page_size, parse_time_position, time_position
from .ports import ObjectStore, OperationJob, OperationWaiter, UnitOfWork
from .regions import request_region
from .results import Configs, MutationResult, Page
from .vpc_commands import (
    check_deletable,
    network_request_violations,
    record_network,
    refuse_available_ingress,
    take_up_network,
)

MAX_SERVICES_PAGE = 20
MAX_OPERATIONS_PAGE = 20
DEFAULT_WAIT_SECONDS = 60.0
WAIT_RECHECK_SECONDS = 1.0
MAX_WAIT_SECONDS = 600.0


class _Polling:
    """No notifications: WaitOperation re-reads on its timer alone."""

    def subscribe(self) -> asyncio.Event:
        return asyncio.Event()

    def unsubscribe(self, latch: asyncio.Event) -> None:
        return None


class ServiceCommands:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        settings: Settings,
        object_store: ObjectStore,
        waiter: OperationWaiter | None = None,
        *,
        reader: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self.uow = uow_factory
        # For queries that read with one repository call: a unit of work that need not
        # open a transaction (one statement is its own snapshot). Never written through.
        self.reader = reader or uow_factory
        self.settings = settings
        self.store = object_store
        self.waiter: OperationWaiter = waiter or _Polling()
        self.tokens = PageTokens(settings.page_token_key)

    # ----- queries -----

    async def describe_service(self, account_id: str, service_arn: str) -> Service:
        service_id = self._service_id(account_id, service_arn)
        async with self.reader() as uow:
            service = await uow.services.get(account_id, service_id)
        if service is None or service.service_arn != service_arn:
            raise _not_found(service_arn)
        return service

    async def list_services(self, account_id: str, size: int, token: str) -> Page:
        limit = page_size(size, MAX_SERVICES_PAGE)
        region = request_region(self.settings)
        filters = {"account": account_id, "region": region}
        after = parse_time_position(self.tokens.decode(token, "services", filters))
        async with self.reader() as uow:
            items = await uow.services.list_live(account_id, region, after, limit + 1)
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_token = self.tokens.encode(
                "services", filters, time_position(last.created_at, last.service_id)
            )
        return Page(items, next_token)

    async def list_operations(
        self, account_id: str, service_arn: str, size: int, token: str
    ) -> Page:
        service = await self.describe_service(account_id, service_arn)
        limit = page_size(size, MAX_OPERATIONS_PAGE)
        filters = {"account": account_id, "service": service_arn}
        after = parse_time_position(self.tokens.decode(token, "operations", filters))
        async with self.uow() as uow:
            items = await uow.operations.list_for_service(
                account_id, service.service_id, after, limit + 1
            )
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_token = self.tokens.encode(
                "operations", filters, time_position(last.started_at, last.operation_id)
            )
        return Page(items, next_token)

    async def describe_operation(self, account_id: str, operation_id: str) -> Operation:
        if not names.is_uuid(operation_id):
            raise InvalidRequest([FieldViolation("operation_id", "must be a UUID")])
        async with self.uow() as uow:
            op = await uow.operations.get(account_id, operation_id.lower())
        if op is None:
            raise OperationNotFound(
                f"Operation {operation_id} not found.", {"operationId": operation_id}
            )
        return op

    async def wait_operation(self, account_id: str, operation_id: str, timeout: float) -> Operation:
        if timeout < 0:
            raise InvalidRequest([FieldViolation("timeout", "must not be negative")])
        timeout = min(timeout or DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Subscribed before the first read, so an end committed after it always wakes us.
        latch = self.waiter.subscribe()
        try:
            while True:
                latch.clear()
                op = await self.describe_operation(account_id, operation_id)
                remaining = deadline - loop.time()
                if not op.status.is_active or remaining <= 0:
                    return op
                # The periodic re-read covers notifications lost while reconnecting.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(latch.wait(), min(remaining, WAIT_RECHECK_SECONDS))
        finally:
            self.waiter.unsubscribe(latch)

    # ----- mutations -----

    async def create_service(
        self,
        account_id: str,
        service_name: str,
        configs: Configs,
        request_id: str = "",
        validate_only: bool = False,
        tags: Sequence[tuple[str, str]] = (),
    ) -> MutationResult:
        source = configs.source or {}
        violations: list[FieldViolation] = []
        if not service_name:
            violations.append(FieldViolation("service_name", "required"))
        elif not names.is_service_name(service_name):
            violations.append(
                FieldViolation(
                    "service_name",
                    "4-40 characters: letters, digits, - and _, starting with a letter or digit",
                )
            )
        if configs.source is None:
            violations.append(FieldViolation("source_configuration", "required"))
        else:
            violations += config_rules.validate_source(source)
        violations += config_rules.validate_instance(configs.instance or {})
        violations += config_rules.validate_health_check(configs.health_check or {})
        violations += observability_violations(configs.observability)
        violations += network_request_violations(configs.network)
        violations += request_id_violations(request_id)
        violations += tag_rules.tag_violations(tags) + tag_rules.check_count({}, dict(tags))
        if violations:
            raise InvalidRequest(violations)

        region = request_region(self.settings)
        fingerprint = request_fingerprint("CreateService", region, service_name, configs, *tags)
        service_id = names.new_resource_id()
        operation_id = str(uuid.uuid4())
        async with self.uow() as uow:
            await uow.accounts.lock(account_id)
            replay = await self._replay(uow, account_id, request_id, fingerprint, operation_id)
            if replay is not None:
                return replay
            existing = await uow.services.live_arn_with_name(account_id, region, service_name)
            if existing:
                raise ServiceNameTaken(
                    f"A service named {service_name} already exists.",
                    {"serviceName": service_name, "serviceArn": existing},
                )
            usage = await uow.services.count_live(account_id, region)
            if usage >= self.settings.service_quota:
                raise QuotaExceeded(
                    "SERVICE_QUOTA_EXCEEDED",
                    "services",
                    self.settings.service_quota,
                    usage,
                    f"account {account_id} in {region}",
                )
            connection_arn = config_rules.connection_arn(source)
            if connection_arn:
                await self._check_connection(uow, account_id, connection_arn)
            scaling_arn, observability_arn = await service_references(
                uow,
                region,
                account_id,
                configs.auto_scaling_configuration_arn,
                configs.observability,
                None,
            )
            ident = config_rules.image_identifier(source)
            now = datetime.now(UTC)
            service = Service(
                service_id=service_id,
                account_id=account_id,
                region=region,
                service_name=service_name,
                service_arn=names.service_arn(region, account_id, service_name, service_id),
                service_url=f"{names.new_url_label()}.{self.settings.service_domain_for(region)}",
                status=ServiceStatus.OPERATION_IN_PROGRESS,
                version=1,
                # Set from the database clock by the insert.
                created_at=now,
                updated_at=now,
                current_operation_id=operation_id,
                status_before_operation=None,
                connection_arn=connection_arn,
                configuration=ServiceConfiguration(
                    source=source,
                    instance=config_rules.with_instance_defaults(configs.instance or {}),
                    health_check=config_rules.with_health_check_defaults(
                        configs.health_check or {}
                    ),
                    image_identifier=ident,
                    image_bucket=self.settings.image_bucket if ident else None,
                    image_prefix=f"services/{service_id}/" if ident else None,
                    auto_scaling_configuration_arn=scaling_arn,
                    observability_configuration_arn=observability_arn,
                ),
            )
            assert service.configuration is not None
            service.configuration.network = await take_up_network(
                uow, self.settings, service, configs.network
            )
            if validate_only:
                return MutationResult(service, "")
            await uow.services.add(service)
            await record_network(uow, service)
            await uow.tags.put(account_id, service.service_arn, dict(tags))
            await self._start_operation(uow, service, OperationType.CREATE_SERVICE, operation_id)
            await uow.commit()
        return MutationResult(service, operation_id)

    async def update_service(
        self,
        account_id: str,
        service_arn: str,
        configs: Configs,
        etag: str = "",
        request_id: str = "",
        validate_only: bool = False,
    ) -> MutationResult:
        _check_update(configs, request_id)

        async def prepare(uow: UnitOfWork, service: Service) -> dict[str, Any]:
            current = service.configuration
            assert current is not None
            if configs.source is not None:
                was_image = "image_repository" in current.source
                if was_image != ("image_repository" in configs.source):
                    raise InvalidRequest(
                        [
                            FieldViolation(
                                "source_configuration",
                                "cannot switch between image and code repository sources",
                            )
                        ]
                    )
                connection_arn = config_rules.connection_arn(configs.source)
                if connection_arn:
                    await self._check_connection(uow, account_id, connection_arn)
            scaling_arn, observability_arn = await service_references(
                uow,
                request_region(self.settings),
                account_id,
                configs.auto_scaling_configuration_arn,
                configs.observability,
                current,
            )
            if configs.network is not None:
                # Recorded as the request is accepted: there is nothing to provision.
                current.network = await take_up_network(
                    uow, self.settings, service, configs.network
                )
                await record_network(uow, service)
            return {
                "auto_scaling_configuration_arn": scaling_arn,
                "observability_configuration_arn": observability_arn,
                "source": configs.source or current.source,
                "instance": config_rules.with_instance_defaults(configs.instance)
                if configs.instance is not None
                else current.instance,
                "health_check": config_rules.with_health_check_defaults(configs.health_check)
                if configs.health_check is not None
                else current.health_check,
            }

        applying: dict[str, Any] = {}

        async def prepared(uow: UnitOfWork, service: Service) -> dict[str, Any]:
            applying.update(await prepare(uow, service))
            return applying

        result = await self._mutate(
            account_id,
            service_arn,
            OperationType.UPDATE_SERVICE,
            etag,
            request_id,
            validate_only,
            request_fingerprint("UpdateService", service_arn, configs, etag),
            prepared,
        )
        return _showing(result, applying)

    async def delete_service(
        self,
        account_id: str,
        service_arn: str,
        etag: str = "",
        request_id: str = "",
        validate_only: bool = False,
    ) -> MutationResult:
        violations = request_id_violations(request_id)
        if violations:
            raise InvalidRequest(violations)
        if validate_only:
            return await self._deletion_plan(account_id, service_arn, etag)

        async def prepare(uow: UnitOfWork, service: Service) -> dict[str, Any]:
            return {}

        # The ingress connections are read with the locked service (`_mutate`), and a
        # service that has an AVAILABLE one is not deleted.
        return await self._mutate(
            account_id,
            service_arn,
            OperationType.DELETE_SERVICE,
            etag,
            request_id,
            False,
            request_fingerprint("DeleteService", service_arn, etag),
            prepare,
            with_ingress=True,
        )

    async def pause_service(
        self,
        account_id: str,
        service_arn: str,
        etag: str = "",
        request_id: str = "",
        validate_only: bool = False,
    ) -> MutationResult:
        return await self._simple(
            account_id, service_arn, OperationType.PAUSE_SERVICE, etag, request_id, validate_only
        )

    async def start_deployment(
        self,
        account_id: str,
        service_arn: str,
        etag: str = "",
        request_id: str = "",
        validate_only: bool = False,
    ) -> MutationResult:
        """Deploys the image the service's tag names now (it may have moved); the service
        stays RUNNING meanwhile."""
        return await self._simple(
            account_id, service_arn, OperationType.START_DEPLOYMENT, etag, request_id, validate_only
        )

    async def resume_service(
        self,
        account_id: str,
        service_arn: str,
        etag: str = "",
        request_id: str = "",
        validate_only: bool = False,
    ) -> MutationResult:
        return await self._simple(
            account_id, service_arn, OperationType.RESUME_SERVICE, etag, request_id, validate_only
        )

    # ----- internals -----

    async def _simple(
        self,
        account_id: str,
        service_arn: str,
        op_type: OperationType,
        etag: str,
        request_id: str,
        validate_only: bool,
    ) -> MutationResult:
        violations = request_id_violations(request_id)
        if violations:
            raise InvalidRequest(violations)

        async def prepare(uow: UnitOfWork, service: Service) -> dict[str, Any]:
            return {}

        return await self._mutate(
            account_id,
            service_arn,
            op_type,
            etag,
            request_id,
            validate_only,
            request_fingerprint(op_type.value, service_arn, etag),
            prepare,
        )

    async def _mutate(
        self,
        account_id: str,
        service_arn: str,
        op_type: OperationType,
        etag: str,
        request_id: str,
        validate_only: bool,
        fingerprint: str,
        prepare: Callable[[UnitOfWork, Service], Any],
        *,
        with_ingress: bool = False,
    ) -> MutationResult:
        """`with_ingress`: the service's live ingress connections are read after its row
        lock (in the same round trip), and an AVAILABLE one refuses the call."""
        service_id = self._service_id(account_id, service_arn)
        operation_id = str(uuid.uuid4())
        async with self.uow() as uow:
            replay = await self._replay(uow, account_id, request_id, fingerprint, operation_id)
            if replay is not None:
                return replay
            # The row lock serialises every mutation of the service: of concurrent calls
            # exactly one starts the operation, the others see it in progress.
            ingress: list[VpcIngressConnection] = []
            if with_ingress:
                service, ingress = await uow.services.get_locked_with_ingress(
                    account_id, service_id
                )
            else:
                service = await uow.services.get(account_id, service_id, for_update=True)
            if service is None or service.service_arn != service_arn:
                raise _not_found(service_arn)
            _check_etag(service, etag)
            service.check_can_start(op_type)
            if with_ingress:
                refuse_available_ingress(service, ingress)
            payload = await prepare(uow, service)
            if validate_only:
                return MutationResult(service, "")
            progress = None
            if (
                op_type is OperationType.DELETE_SERVICE
                and service.status is ServiceStatus.DELETE_FAILED
            ):
                # A delete that failed before resumes from the progress it had saved.
                progress = await uow.jobs.take_failed_progress(JOB_KIND[op_type], service_id)
            service.start_operation(op_type, operation_id)
            await self._start_operation(
                uow, service, op_type, operation_id, payload, progress, save=True
            )
            await uow.commit()
        return MutationResult(service, operation_id)

    async def _start_operation(
        self,
        uow: UnitOfWork,
        service: Service,
        op_type: OperationType,
        operation_id: str,
        payload: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
        *,
        save: bool = False,
    ) -> None:
        """The operation, its job and its event (and, with `save`, the service's new
        state): writes that need no answer before commit, so the unit of work may send
        them with the commit (DeleteService's hot path: one round trip for all of them)."""
        await uow.start_operation(
            Operation(
                operation_id=operation_id,
                account_id=service.account_id,
                service_id=service.service_id,
                target_arn=service.service_arn,
                type=op_type,
                status=OperationStatus.PENDING,
                # Both set from the database clock by the insert.
                started_at=service.updated_at,
                updated_at=service.updated_at,
                current_step="queued",
            ),
            OperationJob(
                kind=JOB_KIND[op_type],
                payload=payload or {},
                max_attempts=self.settings.job_max_attempts,
                progress=progress,
            ),
            saving=service if save else None,
        )
        uow.record(events.service_operation_requested(service, operation_id, op_type))

    async def _replay(
        self,
        uow: UnitOfWork,
        account_id: str,
        request_id: str,
        fingerprint: str,
        operation_id: str,
    ) -> MutationResult | None:
        """Same request_id, same answer: the first call's operation and the service's
        current state. A different request under a used id is refused."""
        first_operation_id = await first_result(
            uow, account_id, request_id, fingerprint, "operation", operation_id
        )
        if first_operation_id is None:
            return None
        op = await uow.operations.get(account_id, first_operation_id)
        if op is None:
            raise OperationNotFound(
                f"Operation {first_operation_id} is no longer kept.",
                {"operationId": first_operation_id},
            )
        service = await uow.services.get(account_id, op.service_id)
        if service is None:
            raise _not_found(op.target_arn)
        return MutationResult(service, first_operation_id)

    async def _check_connection(self, uow: UnitOfWork, account_id: str, arn: str) -> None:
        # Locked until commit, as DeleteConnection locks it: a delete racing this call
        # either sees the new service (and refuses) or is seen here (DELETED).
        connection = await uow.connections.get_by_arn(account_id, arn, for_update=True)
        if connection is None or connection.status is ConnectionStatus.DELETED:
            raise ConnectionNotFound(f"Connection {arn} not found.", {"connectionArn": arn})
        if connection.status is not ConnectionStatus.AVAILABLE:
            raise ConnectionNotAvailable(
                f"Connection {arn} is {connection.status.value}; it must be AVAILABLE.",
                {"connectionArn": arn, "status": connection.status.value},
            )

    async def _deletion_plan(self, account_id: str, service_arn: str, etag: str) -> MutationResult:
        service_id = self._service_id(account_id, service_arn)
        async with self.uow() as uow:
            service = await uow.services.get(account_id, service_id)
            if service is None or service.service_arn != service_arn:
                raise _not_found(service_arn)
            _check_etag(service, etag)
            service.check_can_start(OperationType.DELETE_SERVICE)
            await check_deletable(uow, service)
            domains = await uow.custom_domains.for_service(service_id)
            now = await uow.now()
        plan = await deletion_plan(self.store, self.settings, service, domains, now)
        return MutationResult(service, "", plan)

    def _service_id(self, account_id: str, service_arn: str) -> str:
        return owned_resource_id(
            service_arn,
            kind="service",
            field="service_arn",
            account_id=account_id,
            region=request_region(self.settings),
            not_found=_not_found,
        )


def _check_update(configs: Configs, request_id: str) -> None:
    violations = request_id_violations(request_id)
    if (
        configs.source is None
        and configs.instance is None
        and configs.health_check is None
        and configs.auto_scaling_configuration_arn is None
        and configs.observability is None
        and configs.network is None
    ):
        raise InvalidRequest(
            [FieldViolation("service_arn", "no configuration given")],
            "No configurations provided in the UpdateService request.",
        )
    if configs.source is not None:
        violations += config_rules.validate_source(configs.source)
    if configs.instance is not None:
        violations += config_rules.validate_instance(configs.instance)
    if configs.health_check is not None:
        violations += config_rules.validate_health_check(configs.health_check)
    violations += observability_violations(configs.observability)
    violations += network_request_violations(configs.network)
    if violations:
        raise InvalidRequest(violations)


def _showing(result: MutationResult, applying: dict[str, Any]) -> MutationResult:
    """The update's answer shows the configuration being applied, as App Runner's does."""
    current = result.service.configuration
    if applying and current is not None:
        result.service.configuration = dataclasses.replace(
            current,
            source=applying["source"],
            instance=applying["instance"],
            health_check=applying["health_check"],
            auto_scaling_configuration_arn=applying["auto_scaling_configuration_arn"],
            observability_configuration_arn=applying["observability_configuration_arn"],
        )
    return result


def _not_found(service_arn: str) -> ServiceNotFound:
    return ServiceNotFound(f"Service {service_arn} not found.", {"serviceArn": service_arn})


def _check_etag(service: Service, etag: str) -> None:
    if etag and etag != service.etag:
        raise EtagMismatch(
            f"etag {etag} does not match the service's current etag {service.etag}.",
            {"etag": service.etag},
        )
