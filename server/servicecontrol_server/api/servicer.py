"""The gRPC servicer: request validation and conversion around the use cases; no rules
of its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

from ..application.caller import current_caller
from ..application.config_commands import ConfigCommands
from ..application.connection_commands import ConnectionCommands
from ..application.domain_commands import DomainCommands
from ..application.events import EventQueries
from ..application.results import Configs, MutationResult
from ..application.service_commands import ServiceCommands
from ..application.tag_commands import TagCommands
from ..application.vpc_commands import VpcCommands
from ..application.workers import WorkerPresence, waiting_reason
from ..domain.errors import FieldViolation, InvalidRequest
from ..domain.model import Operation
from . import convert
from .config_resources_rpc import ConfigResourcesRpc
from .connections_rpc import ConnectionsRpc
from .domains_rpc import DomainsRpc
from .errors import translated, translated_stream
from .images_rpc import ImagesRpc
from .tags_rpc import TagsRpc
from .vpc_rpc import VpcRpc, network_from_request


class ServiceControlServicer(
    ConnectionsRpc,
    DomainsRpc,
    ImagesRpc,
    TagsRpc,
    ConfigResourcesRpc,
    VpcRpc,
    api_grpc.ServiceControlServicer,
):
    def __init__(
        self,
        commands: ServiceCommands,
        events: EventQueries,
        *,
        connections: ConnectionCommands,
        domains: DomainCommands,
        tags: TagCommands,
        configs: ConfigCommands,
        vpc: VpcCommands,
        presence: WorkerPresence | None = None,
    ) -> None:
        self.commands = commands
        self.presence = presence
        self.events = events
        self.connections = connections
        self.domains = domains
        self.tags = tags
        self.configs = configs
        self.vpc = vpc

    async def _operation(self, op: Operation) -> pb.Operation:
        return convert.operation(op, await waiting_reason(op, self.presence))

    def account(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's account: the API key's (api/auth.py admitted the call)."""
        caller = current_caller()
        if caller is None:
            raise AssertionError("a ServiceControl RPC ran without an authenticated caller")
        return caller.account_id

    # ----- services -----

    @translated
    async def CreateService(
        self, request: api.CreateServiceRequest, context: grpc.aio.ServicerContext
    ) -> api.CreateServiceResponse:
        account = self.account(context)
        configs = _configs(request)
        result = await self.commands.create_service(
            account,
            request.service_name,
            configs,
            request.request_id,
            request.validate_only,
            tags=sorted(request.tags.items()),
        )
        return api.CreateServiceResponse(
            service=convert.service(result.service), operation_id=result.operation_id
        )

    @translated
    async def DescribeService(
        self, request: api.DescribeServiceRequest, context: grpc.aio.ServicerContext
    ) -> api.DescribeServiceResponse:
        svc = await self.commands.describe_service(self.account(context), request.service_arn)
        return api.DescribeServiceResponse(service=convert.service(svc))

    @translated
    async def ListServices(
        self, request: api.ListServicesRequest, context: grpc.aio.ServicerContext
    ) -> api.ListServicesResponse:
        page = await self.commands.list_services(
            self.account(context), request.page_size, request.page_token
        )
        return api.ListServicesResponse(
            services=[convert.service(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def UpdateService(
        self, request: api.UpdateServiceRequest, context: grpc.aio.ServicerContext
    ) -> api.UpdateServiceResponse:
        result = await self.commands.update_service(
            self.account(context),
            request.service_arn,
            _configs(request),
            request.etag,
            request.request_id,
            request.validate_only,
        )
        return api.UpdateServiceResponse(**_mutation(result))

    @translated
    async def DeleteService(
        self, request: api.DeleteServiceRequest, context: grpc.aio.ServicerContext
    ) -> api.DeleteServiceResponse:
        result = await self.commands.delete_service(
            self.account(context),
            request.service_arn,
            request.etag,
            request.request_id,
            request.validate_only,
        )
        response = api.DeleteServiceResponse(**_mutation(result))
        if result.plan is not None:
            response.plan.CopyFrom(convert.deletion_summary(result.plan))
        return response

    @translated
    async def PauseService(
        self, request: api.PauseServiceRequest, context: grpc.aio.ServicerContext
    ) -> api.PauseServiceResponse:
        result = await self.commands.pause_service(
            self.account(context),
            request.service_arn,
            request.etag,
            request.request_id,
            request.validate_only,
        )
        return api.PauseServiceResponse(**_mutation(result))

    @translated
    async def StartDeployment(
        self, request: api.StartDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> api.StartDeploymentResponse:
        result = await self.commands.start_deployment(
            self.account(context),
            request.service_arn,
            request.etag,
            request.request_id,
            request.validate_only,
        )
        return api.StartDeploymentResponse(**_mutation(result))

    @translated
    async def ResumeService(
        self, request: api.ResumeServiceRequest, context: grpc.aio.ServicerContext
    ) -> api.ResumeServiceResponse:
        result = await self.commands.resume_service(
            self.account(context),
            request.service_arn,
            request.etag,
            request.request_id,
            request.validate_only,
        )
        return api.ResumeServiceResponse(**_mutation(result))

    # ----- operations -----

    @translated
    async def ListOperations(
        self, request: api.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListOperationsResponse:
        page = await self.commands.list_operations(
            self.account(context), request.service_arn, request.page_size, request.page_token
        )
        return api.ListOperationsResponse(
            operations=[await self._operation(o) for o in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def DescribeOperation(
        self, request: api.DescribeOperationRequest, context: grpc.aio.ServicerContext
    ) -> api.DescribeOperationResponse:
        op = await self.commands.describe_operation(self.account(context), request.operation_id)
        return api.DescribeOperationResponse(operation=await self._operation(op))

    @translated
    async def WaitOperation(
        self, request: api.WaitOperationRequest, context: grpc.aio.ServicerContext
    ) -> api.WaitOperationResponse:
        timeout = _wait_timeout(request)
        remaining = context.time_remaining()
        if remaining is not None and timeout == 0:
            # Within the call's own deadline, leaving time to answer.
            timeout = max(remaining - 0.5, 0.001)
        elif remaining is not None:
            timeout = max(min(timeout, remaining - 0.5), 0.001)
        op = await self.commands.wait_operation(
            self.account(context), request.operation_id, timeout
        )
        return api.WaitOperationResponse(operation=await self._operation(op))

    @translated_stream
    async def WatchEvents(
        self, request: api.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.WatchEventsResponse]:
        stream = self.events.watch(self.account(context), request.cursor, request.resource_arn)
        async with contextlib.aclosing(stream):
            async for record in stream:
                event = pb.Event(
                    event_id=record.event_id,
                    cursor=str(record.position),
                    account_id=record.account_id,
                    resource_arn=record.resource_arn,
                    type=record.type,
                    payload=convert.struct(record.payload),
                )
                occurred = convert.ts(record.occurred_at)
                if occurred is not None:
                    event.occurred_at.CopyFrom(occurred)
                yield api.WatchEventsResponse(event=event)


def _wait_timeout(request: api.WaitOperationRequest) -> float:
    """Seconds to wait; 0 when unset. A negative or not normalized Duration, or one past
    protobuf's Duration range, is refused; any valid one is bounded by the caller."""
    if not request.HasField("timeout"):
        return 0.0
    seconds, nanos = request.timeout.seconds, request.timeout.nanos
    if seconds < 0 or nanos < 0:
        raise InvalidRequest([FieldViolation("timeout", "must not be negative")])
    if seconds > _MAX_DURATION_SECONDS or nanos > 999_999_999:
        raise InvalidRequest([FieldViolation("timeout", "is not a valid Duration")])
    return seconds + nanos / 1e9


# google.protobuf.Duration's range: about 10,000 years.
_MAX_DURATION_SECONDS = 315_576_000_000


def _configs(request: Any) -> Configs:
    violations: list[FieldViolation] = convert.unknown_enum_violations(request, "")
    if violations:
        raise InvalidRequest(violations)
    configs = Configs()
    if request.HasField("source_configuration"):
        configs.source = convert.to_dict(request.source_configuration)
    if request.HasField("instance_configuration"):
        configs.instance = convert.to_dict(request.instance_configuration)
    if request.HasField("health_check_configuration"):
        configs.health_check = convert.to_dict(request.health_check_configuration)
    configs.auto_scaling_configuration_arn = request.auto_scaling_configuration_arn or None
    if request.HasField("observability_configuration"):
        configs.observability = {
            "observability_enabled": request.observability_configuration.observability_enabled,
            "observability_configuration_arn": (
                request.observability_configuration.observability_configuration_arn
            ),
        }
    configs.network = network_from_request(request)
    return configs


def _mutation(result: MutationResult) -> dict[str, Any]:
    return {"service": convert.service(result.service), "operation_id": result.operation_id}


__all__ = ["ServiceControlServicer", "pb"]
