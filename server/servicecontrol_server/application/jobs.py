"""The work behind each operation, run by the job engine.

Every step is idempotent, so a crash or a retry at any point converges: object deletes
and copies skip what is already done, compute calls are no-ops when already in the wanted
state, and each operation's database outcome is written in ONE transaction together with
the job's fenced completion, so it happens exactly once."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .. import faults
from ..domain import events
from ..domain.errors import BackendUnavailable
from ..domain.model import (
    SUCCESS_STATUS,
    OperationStatus,
    OperationType,
    Service,
    ServiceStatus,
    failure_status,
)
from ..settings import Settings
from .images import (
    DeleteProgress,
    ImageNotFound,
    copy_image,
    delete_image_copy,
    prune_image_copy,
)
from .offload import off_loop
from .ports import (
    ComputeDriver,
    ComputeError,
    JobContext,
    JobFailure,
    ObjectStore,
    ObjectStoreError,
    PermanentJobError,
    RetryableJobError,
    UnitOfWork,
    UnitOfWorkFactory,
)
from .vpc_commands import delete_ingress

log = logging.getLogger(__name__)

# The job kind that carries out each operation type.
JOB_KIND = {
    OperationType.CREATE_SERVICE: "create_service",
    OperationType.DELETE_SERVICE: "delete_service",
    OperationType.PAUSE_SERVICE: "pause_service",
    OperationType.RESUME_SERVICE: "resume_service",
    OperationType.UPDATE_SERVICE: "update_service",
    OperationType.START_DEPLOYMENT: "start_deployment",
}


class ServiceJob:
    """What every service operation shares: loading, step markers, outcome writing."""

    op_type: OperationType
    # The step every attempt starts with, if any: marked right after the service is
    # loaded, before any other step.
    first_step: str | None = None

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        settings: Settings,
        store: ObjectStore,
        compute: ComputeDriver,
        reader: UnitOfWorkFactory | None = None,
    ) -> None:
        self.uow = uow
        # Units of work for one-statement reads (no transaction around them), if any.
        self.reader = reader or uow
        self.settings = settings
        self.store = store
        self.compute = compute

    async def run(self, ctx: JobContext) -> None:
        try:
            service = await self._load(ctx)
            await self._steps(ctx, service)
        except BackendUnavailable as exc:
            # A database outage is transient: retried within the job's retry window.
            log.warning("database call failed", extra={"error": str(exc)})
            raise RetryableJobError(
                "BACKEND_UNAVAILABLE", "The database is unavailable.", {}
            ) from exc

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        raise NotImplementedError

    async def _load(self, ctx: JobContext) -> Service:
        """One statement reads the service (no transaction around it) while another marks
        the first step: the two are independent (the marker is fenced by the job's lease,
        not by the service), so they wait for one round trip between them, not two."""
        if self.first_step is None:
            return await self._read(ctx)
        try:
            async with asyncio.TaskGroup() as both:
                read = both.create_task(self._read(ctx))
                both.create_task(self._step(ctx, self.first_step))
        except BaseExceptionGroup as failed:
            # The first failure, as itself (a lost lease, a missing service, an outage),
            # for the engine and `run` to tell apart; the other call was cancelled.
            raise failed.exceptions[0] from None
        return read.result()

    async def _read(self, ctx: JobContext) -> Service:
        assert ctx.job.account_id and ctx.job.service_id
        async with self.reader() as uow:
            service = await uow.services.get(ctx.job.account_id, ctx.job.service_id)
        if service is None:
            raise PermanentJobError("INTERNAL_ERROR", "service row is missing", {})
        return service

    @staticmethod
    async def _step(ctx: JobContext, step: str) -> None:
        """Makes progress visible: the operation shows the step and the attempt (one
        statement, fenced by the job's lease, whose commit need not wait for the disk)."""
        await ctx.mark_step(step)

    async def _objects(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs a blocking object-store call off the event loop, outside any transaction."""
        try:
            return await off_loop(self.store, fn, *args)
        except ImageNotFound as exc:
            raise PermanentJobError(
                "IMAGE_NOT_FOUND",
                f"Image {exc} not found in the source registry.",
                {"imageIdentifier": str(exc)},
            ) from exc
        except ObjectStoreError as exc:
            # Endpoints, buckets and keys stay in the log; callers read what failed.
            log.warning("object store call failed", extra={"error": str(exc)})
            raise RetryableJobError(
                "OBJECT_STORE_UNAVAILABLE", "The image store is unavailable.", {}
            ) from exc

    async def _compute(self, call: Awaitable[None]) -> None:
        try:
            await call
        except ComputeError as exc:
            log.warning("compute call failed", extra={"error": str(exc)})
            raise RetryableJobError(
                "COMPUTE_UNAVAILABLE", "The compute platform is unavailable.", {}
            ) from exc

    async def _finish(
        self,
        ctx: JobContext,
        mutate: Callable[[UnitOfWork, Service], Awaitable[dict[str, Any] | None]],
    ) -> None:
        """The outcome, fenced: written only if this worker still holds the job's lease.
        `mutate` may return a deletion report."""
        async with ctx.transaction() as uow:
            assert ctx.job.account_id and ctx.job.service_id
            service = await uow.services.get(
                ctx.job.account_id, ctx.job.service_id, for_update=True
            )
            assert service is not None
            report = await mutate(uow, service)
            operation_id = str(ctx.job.operation_id)
            await uow.operations.finish(
                operation_id,
                OperationStatus.SUCCEEDED,
                ctx.job.attempts,
                deletion_report=report,
            )
            # The event is written at commit: the operation's end, the event and the
            # fenced completion may all be sent with the COMMIT (one round trip).
            uow.record(
                events.service_operation_succeeded(service, operation_id, self.op_type, report)
            )
            await ctx.complete(uow)
            # Everything is written but not committed: a crash here must roll it all back.
            faults.checkpoint(f"{self.op_type.value.lower()}:before_commit")

    async def _settle(
        self, uow: UnitOfWork, service: Service, status: ServiceStatus, message: str = ""
    ) -> None:
        service.status = status
        service.status_message = message
        service.current_operation_id = None
        service.status_before_operation = None
        await uow.services.save(service)

    async def on_retry(self, ctx: JobContext, failure: JobFailure, delay_seconds: float) -> None:
        async with self.uow() as uow:
            await uow.operations.note_retry(
                str(ctx.job.operation_id),
                f"{failure.reason}: {failure.message}",
                ctx.job.attempts,
                delay_seconds,
                failure.window_left_seconds,
            )
            await uow.commit()

    async def on_exhausted(self, ctx: JobContext, uow: UnitOfWork, failure: JobFailure) -> None:
        assert ctx.job.account_id and ctx.job.service_id
        service = await uow.services.get(ctx.job.account_id, ctx.job.service_id, for_update=True)
        if service is None:
            return
        before = service.status_before_operation or ServiceStatus.RUNNING
        landing = failure_status(self.op_type, before)
        op_status = OperationStatus.FAILED
        if (
            self.op_type is OperationType.UPDATE_SERVICE
            and landing is not ServiceStatus.CREATE_FAILED
        ):
            op_status = OperationStatus.ROLLBACK_SUCCEEDED
        await self._settle(uow, service, landing, failure.message)
        operation_id = str(ctx.job.operation_id)
        await uow.operations.finish(
            operation_id,
            op_status,
            failure.attempts,
            error={
                "reason": failure.reason,
                "message": failure.message,
                "metadata": {**failure.metadata, "attempts": str(failure.attempts)},
            },
        )
        uow.record(
            events.service_operation_failed(
                service, operation_id, self.op_type, landing, failure.reason, failure.message
            )
        )
        await uow.flush_events()


class CreateServiceJob(ServiceJob):
    op_type = OperationType.CREATE_SERVICE

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        config = service.configuration
        assert config is not None
        if config.image_identifier is None:
            raise PermanentJobError(
                "SOURCE_BUILD_UNSUPPORTED",
                "This deployment cannot build code repositories; use an image source.",
                {},
            )
        assert config.image_bucket and config.image_prefix
        await self._step(ctx, "copy_image")
        copied = await self._objects(
            copy_image,
            self.store,
            self.settings.source_bucket,
            config.image_identifier,
            config.image_bucket,
            config.image_prefix,
        )
        await ctx.save_progress(image_objects=copied.objects, image_bytes=copied.bytes)
        await self._step(ctx, "start_compute")
        await self._compute(self.compute.start(service.service_id, config.image_prefix))

        async def mutate(uow: UnitOfWork, svc: Service) -> None:
            await self._settle(uow, svc, SUCCESS_STATUS[self.op_type])

        await self._finish(ctx, mutate)


class UpdateServiceJob(ServiceJob):
    op_type = OperationType.UPDATE_SERVICE

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        config = service.configuration
        assert config is not None
        new = ctx.job.payload
        ident = (new["source"].get("image_repository") or {}).get("image_identifier")
        prefix = config.image_prefix or f"services/{service.service_id}/"
        bucket = config.image_bucket or self.settings.image_bucket
        if ident:
            await self._step(ctx, "copy_image")
            await self._objects(
                copy_image, self.store, self.settings.source_bucket, ident, bucket, prefix
            )
        elif service.status_before_operation is ServiceStatus.CREATE_FAILED:
            raise PermanentJobError(
                "SOURCE_BUILD_UNSUPPORTED",
                "This deployment cannot build code repositories; use an image source.",
                {},
            )
        await self._step(ctx, "deploy")
        await self._compute(self.compute.start(service.service_id, prefix))

        async def mutate(uow: UnitOfWork, svc: Service) -> None:
            from ..domain.configuration import connection_arn
            from ..domain.model import ServiceConfiguration

            await uow.services.save_configuration(
                svc.service_id,
                ServiceConfiguration(
                    source=new["source"],
                    instance=new["instance"],
                    health_check=new["health_check"],
                    image_identifier=ident,
                    image_bucket=bucket if ident else None,
                    image_prefix=prefix if ident else None,
                    # An update accepted before these references existed keeps the service's.
                    auto_scaling_configuration_arn=new.get(
                        "auto_scaling_configuration_arn", config.auto_scaling_configuration_arn
                    ),
                    observability_configuration_arn=new.get(
                        "observability_configuration_arn", config.observability_configuration_arn
                    ),
                ),
            )
            svc.connection_arn = connection_arn(new["source"])
            await self._settle(uow, svc, ServiceStatus.RUNNING)

        await self._finish(ctx, mutate)


class StartDeploymentJob(ServiceJob):
    """Fetches the image the service's tag names now from the source registry into the
    service's copy, deploys it, then deletes the blobs of the image it replaced: the
    service runs the old image until the new one is complete, and nothing old is left."""

    op_type = OperationType.START_DEPLOYMENT

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        config = service.configuration
        assert config is not None
        if config.image_identifier is None or not (config.image_bucket and config.image_prefix):
            raise PermanentJobError(
                "SOURCE_BUILD_UNSUPPORTED",
                "This deployment cannot build code repositories; use an image source.",
                {},
            )
        await self._step(ctx, "copy_image")
        await self._objects(
            copy_image,
            self.store,
            self.settings.source_bucket,
            config.image_identifier,
            config.image_bucket,
            config.image_prefix,
        )
        await self._step(ctx, "deploy")
        await self._compute(self.compute.start(service.service_id, config.image_prefix))
        await self._step(ctx, "prune_image_copy")
        await self._objects(prune_image_copy, self.store, config.image_bucket, config.image_prefix)

        async def mutate(uow: UnitOfWork, svc: Service) -> None:
            await self._settle(uow, svc, SUCCESS_STATUS[self.op_type])

        await self._finish(ctx, mutate)


class PauseServiceJob(ServiceJob):
    op_type = OperationType.PAUSE_SERVICE
    first_step = "stop_compute"

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        await self._compute(self.compute.stop(service.service_id))

        async def mutate(uow: UnitOfWork, svc: Service) -> None:
            await self._settle(uow, svc, ServiceStatus.PAUSED)

        await self._finish(ctx, mutate)


class ResumeServiceJob(ServiceJob):
    op_type = OperationType.RESUME_SERVICE
    first_step = "start_compute"

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        config = service.configuration
        await self._compute(
            self.compute.start(service.service_id, config.image_prefix if config else None)
        )

        async def mutate(uow: UnitOfWork, svc: Service) -> None:
            await self._settle(uow, svc, ServiceStatus.RUNNING)

        await self._finish(ctx, mutate)


class DeleteServiceJob(ServiceJob):
    """Stop compute, delete the image copy, then in one transaction: delete the
    configuration, unlink domains (retaining their certificates), tombstone the service,
    free its name and quota slot, and report. Connections are never touched."""

    op_type = OperationType.DELETE_SERVICE
    first_step = "stop_compute"

    async def _steps(self, ctx: JobContext, service: Service) -> None:
        await self._compute(self.compute.stop(service.service_id))
        faults.checkpoint("delete:after_stop_compute")
        config = service.configuration
        if config and config.image_bucket and config.image_prefix:
            # One scan counts and deletes; each batch's count is saved before the batch is
            # deleted, so the report stays exact when a crash interrupts the deletion and
            # another attempt finishes it. On a first attempt the step is shown by the
            # first of those saves (one statement for both; a copy with nothing in it goes
            # straight on to the next step); an attempt that resumes saved progress may
            # have nothing left to count, so it marks the step on its own.
            store = _CrashBetweenBatches(self.store) if faults.armed() else self.store
            loop = asyncio.get_running_loop()
            resume = DeleteProgress.from_progress(ctx.progress)
            marked = resume is not None
            if marked:
                await self._step(ctx, "delete_image_copy")

            def save(progress: DeleteProgress) -> None:
                nonlocal marked
                at_step = None if marked else "delete_image_copy"
                asyncio.run_coroutine_threadsafe(
                    ctx.save_progress(at_step=at_step, **progress.as_progress()), loop
                ).result()
                marked = True

            await self._objects(
                functools.partial(
                    delete_image_copy,
                    resume=resume,
                    save=save,
                ),
                store,
                config.image_bucket,
                config.image_prefix,
            )
        await self._step(ctx, "delete_configuration")

        async def mutate(uow: UnitOfWork, svc: Service) -> dict[str, Any]:
            connection = svc.connection_arn
            # Configuration, domains (their certificates retained), tags and the tombstone:
            # one statement.
            removal = await uow.services.tombstone(
                svc,
                self.settings.service_tombstone_retention_seconds,
                self.settings.certificate_retention_seconds,
            )
            removed, retained = removal.configuration_records, removal.retained_certificates
            if removal.live_ingress:
                # Only ingress connections that are not AVAILABLE can be left (the delete
                # refuses an AVAILABLE one); they go with their service.
                for ingress in await uow.vpc.live_ingress_for_service(svc.service_id):
                    await delete_ingress(uow, self.settings, ingress, "service_deleted")
            return {
                "image_objects": int(ctx.progress.get("image_objects", 0)),
                "image_bytes": int(ctx.progress.get("image_bytes", 0)),
                "configuration_records": removed,
                "retained_connection_arns": [connection] if connection else [],
                "retained_certificates": [
                    {
                        "certificate_id": c.certificate_id,
                        "certificate_arn": c.certificate_arn,
                        "domain_name": c.domain_name,
                        "expires_at": c.expires_at.isoformat() if c.expires_at else "",
                    }
                    for c in retained
                ],
                "unlinked_domain_names": [c.domain_name for c in retained],
            }

        await self._finish(ctx, mutate)


class _CrashBetweenBatches:
    """Lets a chaos test kill the worker just before or just after the first batch of
    object deletes."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete_objects(self, bucket: str, keys: Any) -> int:
        faults.checkpoint("delete:before_batch")
        count = self._inner.delete_objects(bucket, keys)
        faults.checkpoint("delete:between_batches")
        return count


def job_handlers(
    uow: UnitOfWorkFactory,
    settings: Settings,
    store: ObjectStore,
    compute: ComputeDriver,
    reader: UnitOfWorkFactory | None = None,
) -> dict[str, ServiceJob]:
    """The handler of every job kind, by kind. `reader` makes the units of work of
    one-statement reads (`uow` when there is none)."""
    jobs: list[ServiceJob] = [
        cls(uow, settings, store, compute, reader)
        for cls in (
            CreateServiceJob,
            UpdateServiceJob,
            PauseServiceJob,
            ResumeServiceJob,
            DeleteServiceJob,
            StartDeploymentJob,
        )
    ]
    return {JOB_KIND[job.op_type]: job for job in jobs}
