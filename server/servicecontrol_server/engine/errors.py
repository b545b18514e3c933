"""How a job handler reports failure, and what the engine reports back to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class JobError(Exception):
    """A failure with an ErrorInfo reason (e.g. "OBJECT_STORE_UNAVAILABLE"), a message for
    the operation's error, and string metadata."""

    def __init__(
        self, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class RetryableJobError(JobError):
    """Transient: the job is retried with backoff until its attempts run out."""


class PermanentJobError(JobError):
    """Retrying cannot help: the job fails at once."""


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed, as passed to on_retry and on_exhausted."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    # Attempts made so far, the failed one included.
    attempts: int = 0
