"""The application wired to the in-memory fakes, and a worker that runs its jobs the way
the engine does (engine/worker.py): success completes, a retryable failure is noted and
requeued until the attempts run out, a permanent one or the last attempt fails the job
and writes the failure outcome in the same transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from servicecontrol_server.application.config_commands import ConfigCommands
from servicecontrol_server.application.connection_commands import ConnectionCommands
from servicecontrol_server.application.domain_commands import DomainCommands
from servicecontrol_server.application.images import blob_key, manifest_key
from servicecontrol_server.application.jobs import ServiceJob, job_handlers
from servicecontrol_server.application.ports import (
    JobError,
    JobFailure,
    LeaseLost,
    PermanentJobError,
)
from servicecontrol_server.application.results import Configs
from servicecontrol_server.application.service_commands import ServiceCommands
from servicecontrol_server.domain.model import Service, ServiceStatus
from servicecontrol_server.settings import Settings

from .fakes import (
    FakeClock,
    FakeCompute,
    FakeDatabase,
    FakeDnsValidator,
    FakeJobContext,
    FakeObjectStore,
    FakeOperationWaiter,
    FakeUnitOfWorkFactory,
)

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
REGION = "us-east-1"
IMAGE = "shop/web:v1"
IMAGE_V2 = "shop/web:v2"
MAX_ATTEMPTS = 3


def unit_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "region": REGION,
        "default_account": ACCOUNT,
        "source_bucket": "source",
        "image_bucket": "images",
        "job_max_attempts": MAX_ATTEMPTS,
        "service_quota": 3,
        "connection_quota": 2,
        "custom_domains_per_service": 2,
        "certificate_retention_seconds": 7 * 24 * 3600,
        "service_tombstone_retention_seconds": 30 * 24 * 3600,
        "connection_tombstone_retention_seconds": 30 * 24 * 3600,
        "operation_retention_seconds": 30 * 24 * 3600,
        "event_retention_seconds": 7 * 24 * 3600,
        "request_id_retention_seconds": 24 * 3600,
        "reaper_batch_size": 2,
    }
    values.update(overrides)
    return Settings(**values)


def image_source(identifier: str = IMAGE) -> Configs:
    return Configs(source={"image_repository": {"image_identifier": identifier}})


def code_source(connection_arn: str) -> Configs:
    return Configs(
        source={
            "code_repository": {
                "repository_url": "https://example.com/shop/web",
                "source_code_version": {"type": "BRANCH", "value": "main"},
            },
            "authentication_configuration": {"connection_arn": connection_arn},
        }
    )


@dataclass
class JobRun:
    """What one attempt at a job came to."""

    kind: str
    outcome: str  # "completed", "retry", "failed", "lease_lost"
    failure: JobFailure | None = None
    context: FakeJobContext | None = None


@dataclass
class Unit:
    settings: Settings = field(default_factory=unit_settings)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.db = FakeDatabase(self.clock)
        self.uow = FakeUnitOfWorkFactory(self.db)
        self.store = FakeObjectStore()
        self.store.ensure_bucket(self.settings.source_bucket)
        self.store.ensure_bucket(self.settings.image_bucket)
        self.store.calls.clear()
        self.compute = FakeCompute(self.db)
        self.dns = FakeDnsValidator()
        self.waiter = FakeOperationWaiter(self.db)
        self.services = ServiceCommands(self.uow, self.settings, self.store, self.waiter)
        self.connections = ConnectionCommands(self.uow, self.settings)
        self.domains = DomainCommands(self.uow, self.settings)
        self.configs = ConfigCommands(self.uow, self.settings)
        self.handlers: dict[str, ServiceJob] = job_handlers(
            self.uow, self.settings, self.store, self.compute
        )

    # ----- the source registry -----

    def push_image(self, identifier: str = IMAGE, layers: int = 2) -> int:
        """Pushes an image (config, layers, manifest) into the source registry; returns
        how many objects a copy of it holds (blobs plus its manifest)."""
        repository, _, tag = identifier.rpartition(":")
        blobs = [f"config of {identifier}".encode()] + [
            f"layer {i} of {identifier}".encode() * (i + 1) for i in range(layers)
        ]
        descriptors = []
        for blob in blobs:
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            self.store.put_bytes(self.settings.source_bucket, blob_key(repository, digest), blob)
            descriptors.append({"mediaType": "x", "digest": digest, "size": len(blob)})
        manifest = {"schemaVersion": 2, "config": descriptors[0], "layers": descriptors[1:]}
        self.store.put_bytes(
            self.settings.source_bucket,
            manifest_key(repository, tag),
            json.dumps(manifest).encode(),
        )
        return len(blobs) + 1

    def image_keys(self, service_id: str) -> list[str]:
        return self.store.keys(self.settings.image_bucket, f"services/{service_id}/")

    # ----- the worker -----

    async def run_job(self) -> JobRun | None:
        """Claims the next due job and runs one attempt of it, as the worker does."""
        job = self.db.claim()
        if job is None:
            return None
        handler = self.handlers[job.kind]
        ctx = FakeJobContext(self.db, job)
        try:
            await handler.run(ctx)
        except LeaseLost:
            return JobRun(job.kind, "lease_lost", context=ctx)
        except JobError as exc:
            failure = JobFailure(exc.reason, exc.message, dict(exc.metadata), job.attempts)
            error = f"{exc.reason}: {exc.message}"
            if isinstance(exc, PermanentJobError) or job.attempts >= job.max_attempts:
                async with self.uow() as uow:
                    await uow.jobs.mark_failed(job.job_id, job.lease_token, error)
                    await handler.on_exhausted(ctx, uow, failure)
                    await uow.commit()
                return JobRun(job.kind, "failed", failure, ctx)
            delay = 1.0
            await handler.on_retry(ctx, failure, delay)
            assert self.db.retry_later(job.job_id, job.lease_token, delay, error)
            self.clock.advance(delay)
            return JobRun(job.kind, "retry", failure, ctx)
        if not ctx.completed:
            async with self.uow() as uow:
                await uow.jobs.complete(job.job_id, job.lease_token)
                await uow.commit()
        return JobRun(job.kind, "completed", context=ctx)

    async def run_jobs(self) -> list[JobRun]:
        """Runs attempts until no job is due."""
        runs: list[JobRun] = []
        while (run := await self.run_job()) is not None:
            runs.append(run)
        return runs

    # ----- shortcuts -----

    async def running_service(self, name: str = "web-app", identifier: str = IMAGE) -> Service:
        repository, _, tag = identifier.rpartition(":")
        if not self.store.keys(self.settings.source_bucket, manifest_key(repository, tag)):
            self.push_image(identifier)
        created = await self.services.create_service(ACCOUNT, name, image_source(identifier))
        await self.run_jobs()
        service = self.db.service(created.service.service_id)
        assert service.status is ServiceStatus.RUNNING, service
        return service

    async def service_in(self, status: ServiceStatus, name: str = "web-app") -> Service:
        """A service that reached `status` through the use cases and their jobs."""
        if status is ServiceStatus.CREATE_FAILED:
            created = await self.services.create_service(
                ACCOUNT, name, image_source("missing/image:v1")
            )
            await self.run_jobs()
            return self.db.service(created.service.service_id)
        service = await self.running_service(name)
        if status is ServiceStatus.PAUSED:
            await self.services.pause_service(ACCOUNT, service.service_arn)
            await self.run_jobs()
        elif status is ServiceStatus.DELETE_FAILED:
            self.store.failing.add("delete_objects")
            await self.services.delete_service(ACCOUNT, service.service_arn)
            await self.run_jobs()
            self.store.failing.clear()
        elif status is not ServiceStatus.RUNNING:
            raise AssertionError(f"no recipe for {status}")
        service = self.db.service(service.service_id)
        assert service.status is status, service
        return service
