"""The ports the application owns: what it needs from the outside world. Adapters and
the job engine implement them; bootstrap.py wires the implementations in."""

from .backlog import JobBacklog
from .compute import ComputeDriver, ComputeError
from .dns import DnsValidator
from .events import EventFeed, EventRecord, OperationWaiter
from .jobs import (
    ClaimedJob,
    JobContext,
    JobError,
    JobFailure,
    JobHandler,
    LeaseLost,
    PermanentJobError,
    RetryableJobError,
)
from .objectstore import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailable,
    RunsBlocking,
)
from .repositories import (
    AccountRepository,
    CertificateRepository,
    ConnectionRepository,
    Cursor,
    CustomDomainRepository,
    JobRepository,
    OperationRepository,
    PurgedCertificate,
    PurgedConnection,
    PurgedService,
    PurgedServices,
    RequestIdRepository,
    RetentionRepository,
    ServiceRepository,
    TagRepository,
)
from .unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "AccountRepository",
    "CertificateRepository",
    "ClaimedJob",
    "ComputeDriver",
    "ComputeError",
    "ConnectionRepository",
    "Cursor",
    "CustomDomainRepository",
    "DnsValidator",
    "EventFeed",
    "EventRecord",
    "JobBacklog",
    "JobContext",
    "JobError",
    "JobFailure",
    "JobHandler",
    "JobRepository",
    "LeaseLost",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreUnavailable",
    "OperationRepository",
    "OperationWaiter",
    "PermanentJobError",
    "PurgedCertificate",
    "PurgedConnection",
    "PurgedService",
    "PurgedServices",
    "RequestIdRepository",
    "RetentionRepository",
    "RetryableJobError",
    "RunsBlocking",
    "ServiceRepository",
    "TagRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
]
