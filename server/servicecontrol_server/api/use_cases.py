"""What both API layers (gRPC and App Runner's JSON) are given: the use cases, and the
settings they read. bootstrap.py builds it; the API never builds anything itself."""

from __future__ import annotations

from dataclasses import dataclass

from ..application.backpressure import BacklogGate
from ..application.connection_commands import ConnectionCommands
from ..application.domain_commands import DomainCommands
from ..application.events import EventQueries
from ..application.identity import Identity
from ..application.image_upload import ImageUploads
from ..application.rate_limit import MutationRateLimiter
from ..application.service_commands import ServiceCommands
from ..application.tag_commands import TagCommands
from ..application.workers import WorkerPresence
from ..settings import Settings


@dataclass(frozen=True)
class UseCases:
    commands: ServiceCommands
    connections: ConnectionCommands
    domains: DomainCommands
    tags: TagCommands
    events: EventQueries
    identity: Identity
    settings: Settings
    # One per process, shared by the gRPC and App Runner endpoints.
    rate_limiter: MutationRateLimiter
    # Whether any job worker is alive, for operations waiting on one.
    presence: WorkerPresence | None = None
    # Image pushes through the API (PushImage); None where a server does not take them.
    images: ImageUploads | None = None
    # Refuses mutations while the job backlog is full; None: never.
    backlog_gate: BacklogGate | None = None
