"""The Postgres repositories, one module per aggregate; each implements its Protocol in
application/ports/repositories.py inside the unit of work's transaction.

SQL style: statements built with SQLAlchemy Core in the repository that runs them; the
few on the request's hot path (a service read and write, an operation insert) are named
`text()` constants at the top of their module, because building them per call cost more
than their round trip. The queue's, the outbox's and the reaper's SQL are named
constants in jobqueue.py, outbox.py and ttl.py."""

from .accounts import AccountRepository
from .certificates import CertificateRepository
from .config_resources import ConfigResourceRepository
from .connections import ConnectionRepository
from .custom_domains import CustomDomainRepository
from .jobs import JobRepository
from .operations import OPERATIONS_CHANNEL, OperationRepository
from .request_ids import RequestIdRepository
from .retention import RetentionRepository
from .services import ServiceRepository
from .tags import TagRepository
from .vpc import VpcRepository

__all__ = [
    "OPERATIONS_CHANNEL",
    "AccountRepository",
    "CertificateRepository",
    "ConfigResourceRepository",
    "ConnectionRepository",
    "CustomDomainRepository",
    "JobRepository",
    "OperationRepository",
    "RequestIdRepository",
    "RetentionRepository",
    "ServiceRepository",
    "TagRepository",
    "VpcRepository",
]
