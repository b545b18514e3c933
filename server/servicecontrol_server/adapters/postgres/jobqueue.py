"""The job queue on the `jobs` table: transactional enqueue, SKIP LOCKED claiming, leases
fenced by a per-claim token, and rescue of expired leases.

Every write a worker makes to a job it claimed names the job AND its lease token. A worker
whose lease expired and was handed to another worker therefore cannot complete, fail,
requeue or extend the job any more: its statement matches no row and it learns that it
lost the job (`LeaseLost`, or False). Execution stays at-least-once (a handler may run
again after a crash or a lost lease) but each job's outcome is committed exactly once.

All times come from the database clock; the process clock is never written."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...application.ports import ClaimedJob, LeaseLost
from .direct import OwnConnection
from .listen import engine_libpq_url

JOBS_CHANNEL = "servicecontrol_jobs"

# Why an INSERT plus a separate pg_notify rather than a trigger: the notification is
# part of the caller's transaction either way (delivered at commit, dropped on rollback),
# and keeping it here leaves the schema free of behaviour. The payload is the kind so that
# a future worker pool dedicated to some kinds could ignore the others.
# The notification rides in the same statement (one round trip on the request path): the
# cross join makes Postgres evaluate pg_notify exactly once per inserted job.
ENQUEUE = text(
    """
    WITH job AS (
        INSERT INTO jobs (kind, operation_id, service_id, account_id, payload, progress,
                          max_attempts)
        VALUES (:kind, CAST(:operation_id AS uuid), :service_id, :account_id, :payload,
                :progress, :max_attempts)
        RETURNING job_id
    )
    SELECT job.job_id FROM job CROSS JOIN LATERAL (
        SELECT pg_notify('servicecontrol_jobs', :kind)
    ) AS notified
    """
).bindparams(bindparam("payload", type_=JSONB), bindparam("progress", type_=JSONB))

# The worker side's statements are plain driver SQL (pyformat parameters), sent over the
# queue's own autocommit connection as prepared statements: each is one round trip with no
# BEGIN/COMMIT around it, and Postgres plans it once per connection. Every one of them is
# a single statement, so autocommit makes it atomic.

# Fenced by (job_id, lease_token, state): a lease that was rescued, released or finished
# cannot be extended, so a worker learns on its next heartbeat that it lost the job.
# One statement extends every lease a worker holds: the pairs come as two parallel
# arrays, and the answer names the jobs whose lease is still the caller's.
# `j.job_id = ANY(…)` says again what the join says, for the prepared statement's generic
# plan: without it that plan (which cannot see how many ids come) reads every running
# job's lease to join them, instead of looking the few ids up by primary key.
HEARTBEAT = """
    UPDATE jobs AS j
    SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        updated_at = now()
    FROM unnest(%(job_ids)s::bigint[], %(tokens)s::uuid[]) AS held(job_id, token)
    WHERE j.job_id = ANY(%(job_ids)s::bigint[])
      AND j.job_id = held.job_id AND j.lease_token = held.token AND j.state = 'running'
    RETURNING j.job_id
"""

# jsonb `||` merges top-level keys, so a handler saves only what changed and concurrent
# keys it set earlier survive. Fenced: a stale worker must not overwrite the progress the
# job's current owner relies on.
SAVE_PROGRESS = """
    UPDATE jobs
    SET progress = progress || %(changes)s, updated_at = now()
    WHERE job_id = %(job_id)s AND lease_token = CAST(%(token)s AS uuid) AND state = 'running'
    RETURNING job_id
"""

# The same save, which also shows the step it belongs to on the job's operation: one
# statement (and one durable commit) where a step marker and a save took two
# transactions. The operation's row is found through the saved job's row, so the marker
# is fenced by the same lease token.
SAVE_PROGRESS_AT_STEP = """
    WITH saved AS (
        UPDATE jobs
        SET progress = progress || %(changes)s, updated_at = now()
        WHERE job_id = %(job_id)s AND lease_token = CAST(%(token)s AS uuid)
          AND state = 'running'
        RETURNING job_id, operation_id
    ),
    marked AS (
        UPDATE operations AS o
        SET status = 'IN_PROGRESS', current_step = %(step)s, attempt = %(attempt)s,
            next_attempt_at = NULL, updated_at = now()
        FROM saved
        WHERE o.operation_id = saved.operation_id
    )
    SELECT job_id FROM saved
"""

# A step marker on the job's operation, fenced by the job's lease token, as one
# autocommit statement (no BEGIN/COMMIT round trips) whose commit does not wait for the
# disk: set_config(..., is_local => true) holds for this statement's transaction only,
# and the one-row subquery runs once. A marker is progress every attempt writes again;
# Postgres writes commits in order, so the job's durable outcome commit makes it durable
# too, and a database crash before that loses only the marker.
MARK_STEP = """
    UPDATE operations AS o
    SET status = 'IN_PROGRESS', current_step = %(step)s, attempt = %(attempt)s,
        next_attempt_at = NULL, updated_at = now()
    FROM jobs AS j, (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
    WHERE j.job_id = %(job_id)s AND j.lease_token = CAST(%(token)s AS uuid)
      AND j.state = 'running' AND o.operation_id = j.operation_id
    RETURNING j.job_id
"""

# A finished job's row is deleted in the handler's final transaction, so its outcome and
# the job's disappearance commit together or not at all. Fenced: if the lease moved on,
# nothing is deleted and the caller rolls the whole outcome back. The row lock this takes
# also keeps rescuers (SKIP LOCKED) off the job until that transaction ends.
COMPLETE = text(
    """
    DELETE FROM jobs
    WHERE job_id = :job_id AND lease_token = CAST(:token AS uuid) AND state = 'running'
    RETURNING job_id
    """
)

# The same fenced completion, which FAILS when the lease is gone instead of matching
# nothing, so that it can be sent with the COMMIT in one round trip (the unit of work
# holds it until then): an error aborts the transaction, the COMMIT after it commits
# nothing, and the unit of work raises LeaseLost. Plain SQL has no RAISE; the error is
# a cast of text that is no number (SQLSTATE 22P02, its text starting with LEASE_LOST).
# The text counts the deleted rows so that it depends on the statement's result:
# Postgres folds constant expressions while planning, and a constant one would fail
# every time.
LEASE_LOST = "lease lost"
COMPLETE_OR_FAIL = text(
    """
    WITH done AS (
        DELETE FROM jobs
        WHERE job_id = :job_id AND lease_token = CAST(:token AS uuid) AND state = 'running'
        RETURNING job_id
    )
    SELECT CASE WHEN count(*) = 1 THEN max(job_id)
                ELSE CAST('lease lost (' || count(*) || ' jobs completed)' AS bigint) END
    FROM done
    """
)


def is_lease_lost(exc: BaseException) -> bool:
    """Whether `exc` (the driver's, or SQLAlchemy's around it) is COMPLETE_OR_FAIL's
    failure: the lease was gone."""
    exc = getattr(exc, "orig", None) or exc
    return isinstance(exc, psycopg.errors.InvalidTextRepresentation) and (
        f'"{LEASE_LOST} (' in str(exc)
    )


# The engine's own completions, for jobs whose handler wrote no outcome of its own: one
# statement completes a whole batch, each job fenced by its own lease token. The answer
# names the jobs completed; a job missing from it had lost its lease. (`ANY`: as in
# HEARTBEAT, primary-key lookups in the generic plan too.)
COMPLETE_MANY = """
    DELETE FROM jobs AS j
    USING unnest(%(job_ids)s::bigint[], %(tokens)s::uuid[]) AS done(job_id, token)
    WHERE j.job_id = ANY(%(job_ids)s::bigint[])
      AND j.job_id = done.job_id AND j.lease_token = done.token AND j.state = 'running'
    RETURNING j.job_id
"""

# The claim, and the claim loop's round trip: the completions gathered since the last
# claim (none for a plain claim) and the next claim, in one statement and one commit.
# The completions are fenced as in COMPLETE_MANY; the deleted rows are running, so the
# claim never sees them. The outer join keeps one row when nothing is claimed, to carry
# the completed ids.
# The claim selects in a MATERIALIZED CTE and updates by join. The tempting
# `UPDATE … WHERE job_id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` is planned as a
# join whose subquery may be re-executed, so it can lock and claim more than n rows; the
# materialized CTE runs exactly once (an optimisation fence). SKIP LOCKED lets concurrent
# claimers pass over each other's rows instead of queueing behind them. The ordering
# matches the partial index ix_jobs_ready (run_at, job_id) WHERE state = 'queued'; the
# final SELECT restores it, since RETURNING of an UPDATE … FROM keeps no order.
# FOR UPDATE re-checks the WHERE clause on rows changed since the snapshot, so a row that
# another claimer took in the meantime is not claimed twice.
COMPLETE_AND_CLAIM = """
    WITH done AS (
        DELETE FROM jobs AS j
        USING unnest(%(job_ids)s::bigint[], %(tokens)s::uuid[]) AS d(job_id, token)
        WHERE j.job_id = d.job_id AND j.lease_token = d.token AND j.state = 'running'
        RETURNING j.job_id
    ),
    ready AS MATERIALIZED (
        SELECT job_id
        FROM jobs
        WHERE state = 'queued' AND run_at <= now()
        ORDER BY run_at, job_id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE jobs AS j
        SET state = 'running',
            attempts = j.attempts + 1,
            lease_token = gen_random_uuid(),
            lease_owner = %(owner)s,
            lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
            updated_at = now()
        FROM ready
        WHERE j.job_id = ready.job_id
        RETURNING j.job_id, j.kind, j.operation_id::text AS operation_id, j.service_id,
                  j.account_id, j.payload, j.progress, j.attempts, j.max_attempts,
                  j.lease_token::text AS lease_token, j.run_at,
                  extract(epoch FROM now() - j.retry_since)::float8 AS retrying_seconds
    )
    SELECT finished.completed, claimed.*, operations.target_arn AS service_arn
    FROM (SELECT coalesce(array_agg(job_id), '{}') AS completed FROM done) AS finished
    LEFT JOIN claimed ON true
    LEFT JOIN operations ON operations.operation_id = claimed.operation_id::uuid
    ORDER BY claimed.run_at, claimed.job_id
"""

# Failed jobs stay (state 'failed', no lease) for inspection and so that a later job can
# resume from their progress; `attempts` keeps the count that exhausted them.
MARK_FAILED = text(
    """
    UPDATE jobs
    SET state = 'failed', last_error = :error, lease_token = NULL, lease_owner = NULL,
        lease_expires_at = NULL, updated_at = now()
    WHERE job_id = :job_id AND lease_token = CAST(:token AS uuid) AND state = 'running'
    RETURNING job_id
    """
)

# Back to the queue with a delay computed by the worker's backoff; run_at uses the
# database clock so every replica agrees on when the job becomes claimable again.
# A transient failure starts the job's retry window (retry_since, once) and does not use
# up one of its attempts: those count failures of other kinds, and lost workers. It is
# counted apart (the payload's SPARED_KEY), so `attempts` still numbers every attempt and
# `max_attempts` keeps the limit the job was given.
RETRY_LATER = """
    UPDATE jobs
    SET state = 'queued', run_at = now() + make_interval(secs => %(delay_seconds)s),
        last_error = %(error)s, lease_token = NULL, lease_owner = NULL,
        lease_expires_at = NULL, updated_at = now(),
        retry_since = CASE WHEN %(transient)s THEN coalesce(retry_since, now())
                           ELSE retry_since END,
        payload = CASE WHEN %(transient)s
                       THEN jsonb_set(payload, '{_spared_attempts}', to_jsonb(
                           coalesce((payload ->> '_spared_attempts')::int, 0) + 1))
                       ELSE payload END
    WHERE job_id = %(job_id)s AND lease_token = CAST(%(token)s AS uuid) AND state = 'running'
    RETURNING job_id
"""

# A graceful shutdown hands the job back at once and gives back the attempt it was
# charged, because the interruption was ours and not the job's fault.
RELEASE = """
    UPDATE jobs
    SET state = 'queued', run_at = now(), attempts = greatest(attempts - 1, 0),
        lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE job_id = %(job_id)s AND lease_token = CAST(%(token)s AS uuid) AND state = 'running'
    RETURNING job_id
"""

# Expired leases go back to the queue with their attempt count kept, so a job that
# crashes its worker every time still exhausts its attempts instead of looping forever.
# SKIP LOCKED lets several rescuers run at once, and skips a job whose owner is in the
# middle of its fenced final transaction (that transaction holds the row lock). The
# bounded, materialized CTE keeps each rescue a short transaction (see COMPLETE_AND_CLAIM
# for why not `IN (SELECT …)`); ix_jobs_leases serves the scan.
RESCUE_EXPIRED = """
    WITH expired AS MATERIALIZED (
        SELECT job_id
        FROM jobs
        WHERE state = 'running' AND lease_expires_at < now()
        ORDER BY lease_expires_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs AS j
    SET state = 'queued', run_at = now(),
        last_error = 'lease of ' || coalesce(j.lease_owner, '?') || ' expired',
        lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM expired
    WHERE j.job_id = expired.job_id
    RETURNING j.job_id
"""

# Deletes (rather than reads) the failed jobs so that their progress is handed over once:
# a concurrent caller blocks on the row locks and then finds nothing. The newest failed
# job's progress is the most advanced.
TAKE_FAILED_PROGRESS = text(
    """
    WITH taken AS (
        DELETE FROM jobs
        WHERE kind = :kind AND service_id = :service_id AND state = 'failed'
        RETURNING job_id, progress
    )
    SELECT progress FROM taken ORDER BY job_id DESC LIMIT 1
    """
)

# How long until the earliest queued job becomes claimable, on the database clock, so an
# idle worker can wake for a delayed retry instead of waiting for its next poll.
# NULL when nothing is queued (and not clamped in SQL: greatest() ignores NULLs and would
# turn "nothing queued" into "due now").
SECONDS_UNTIL_NEXT = """
    SELECT extract(epoch FROM min(run_at) - now())::float8
    FROM jobs
    WHERE state = 'queued'
"""


# Where a traced enqueue keeps the trace context of the call that made the job (W3C
# headers); the handlers never see it in their payload.
TRACE_CONTEXT_KEY = "_trace"
# Where RETRY_LATER counts the job's attempts that ended in a transient failure (they do
# not count against max_attempts); the handlers never see it in their payload either.
SPARED_KEY = "_spared_attempts"


# The columns of a COMPLETE_AND_CLAIM row, in the order of its SELECT (`claimed.*` is
# the claim's RETURNING list). The queue reads its rows as plain tuples.
(
    _COMPLETED,
    _JOB_ID,
    _KIND,
    _OPERATION_ID,
    _SERVICE_ID,
    _ACCOUNT_ID,
    _PAYLOAD,
    _PROGRESS,
    _ATTEMPTS,
    _MAX_ATTEMPTS,
    _LEASE_TOKEN,
    _RUN_AT,
    _RETRYING_SECONDS,
    _SERVICE_ARN,
) = range(14)


def claimed_job(row: Sequence[Any]) -> ClaimedJob:
    """The job of one claimed COMPLETE_AND_CLAIM row."""
    payload = row[_PAYLOAD]
    # Decoded afresh for this row: the job may keep it without a copy.
    payload = {} if payload is None else payload
    trace_context = payload.pop(TRACE_CONTEXT_KEY, None)
    spared = payload.pop(SPARED_KEY, 0)
    progress = row[_PROGRESS]
    return ClaimedJob(
        job_id=row[_JOB_ID],
        kind=row[_KIND],
        operation_id=row[_OPERATION_ID],
        service_id=row[_SERVICE_ID],
        account_id=row[_ACCOUNT_ID],
        payload=payload,
        progress={} if progress is None else progress,
        attempts=row[_ATTEMPTS],
        max_attempts=row[_MAX_ATTEMPTS],
        lease_token=row[_LEASE_TOKEN],
        service_arn=row[_SERVICE_ARN],
        trace_context=dict(trace_context) if isinstance(trace_context, dict) else {},
        retrying_seconds=row[_RETRYING_SECONDS],
        spared_attempts=spared if isinstance(spared, int) else 0,
    )


def id_array(values: list[int] | list[str]) -> str:
    """An array literal (`{1,2,3}`) of ids or lease tokens, whose text needs no quoting:
    sent as one text parameter, which the statement casts, instead of a list the driver
    adapts element by element."""
    return "{" + ",".join(map(str, values)) + "}"


async def enqueue(
    conn: AsyncConnection,
    *,
    kind: str,
    payload: dict[str, Any],
    max_attempts: int,
    operation_id: str | None = None,
    service_id: str | None = None,
    account_id: str | None = None,
    progress: dict[str, Any] | None = None,
) -> int:
    """Adds a queued job in the caller's transaction; workers are notified at commit."""
    job_id = (
        await conn.execute(
            ENQUEUE,
            enqueue_parameters(
                kind=kind,
                payload=payload,
                max_attempts=max_attempts,
                operation_id=operation_id,
                service_id=service_id,
                account_id=account_id,
                progress=progress,
            ),
        )
    ).scalar_one()
    return int(job_id)


def enqueue_parameters(
    *,
    kind: str,
    payload: dict[str, Any],
    max_attempts: int,
    operation_id: str | None,
    service_id: str | None,
    account_id: str | None,
    progress: dict[str, Any] | None,
) -> dict[str, Any]:
    """ENQUEUE's parameters (`payload` and `progress` are JSONB)."""
    return {
        "kind": kind,
        "operation_id": operation_id,
        "service_id": service_id,
        "account_id": account_id,
        "payload": payload,
        "progress": progress or {},
        "max_attempts": max_attempts,
    }


async def take_failed_progress(
    conn: AsyncConnection, kind: str, service_id: str
) -> dict[str, Any] | None:
    """In the caller's transaction: removes the failed `kind` jobs of the service and
    returns the newest one's progress, so a new job can resume where it stopped."""
    progress = (
        await conn.execute(TAKE_FAILED_PROGRESS, {"kind": kind, "service_id": service_id})
    ).scalar_one_or_none()
    return None if progress is None else dict(progress)


async def complete(conn: AsyncConnection, job_id: int, token: str) -> None:
    """In the caller's transaction: deletes the job if `token` still holds its lease;
    otherwise raises LeaseLost."""
    row = (await conn.execute(COMPLETE, {"job_id": job_id, "token": token})).first()
    if row is None:
        raise LeaseLost(job_id)


async def mark_failed(conn: AsyncConnection, job_id: int, token: str, error: str) -> None:
    """In the caller's transaction: marks the job failed if `token` still holds its lease;
    otherwise raises LeaseLost."""
    row = (
        await conn.execute(MARK_FAILED, {"job_id": job_id, "token": token, "error": error})
    ).first()
    if row is None:
        raise LeaseLost(job_id)


class JobQueue:
    """The worker side of the queue (engine.ports.JobQueue): each method is one statement,
    its own transaction. The fenced writes that join a unit of work's transaction are the
    functions above, used by repositories/jobs.py.

    While `connected()` is entered (a worker's lifetime), the statements go over the
    queue's own autocommit connections, prepared: one for claims, one for everything
    else, so that a claim and a batch of completions travel at the same time. A broken
    connection is replaced on the next call. Outside `connected()` each call borrows a
    pooled connection of `engine`, as any one-off caller (a test, a tool) wants."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pinned = 0
        self._conns: dict[str, OwnConnection] = {}

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        self._pinned += 1
        try:
            yield
        finally:
            self._pinned -= 1
            if not self._pinned:
                conns, self._conns = self._conns, {}
                for conn in conns.values():
                    await conn.close()

    async def _rows(self, sql: str, params: dict[str, Any], role: str = "finish") -> list[Any]:
        if not self._pinned:
            async with self.engine.begin() as pooled:
                return list((await pooled.exec_driver_sql(sql, params)).all())
        conn = self._conns.get(role)
        if conn is None:
            conn = self._conns[role] = OwnConnection(engine_libpq_url(self.engine))
        # Every statement of the queue answers rows (a SELECT or RETURNING).
        return await conn.rows(sql, params)

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        _, jobs = await self.complete_and_claim([], owner, limit, lease_seconds)
        return jobs

    async def complete_and_claim(
        self,
        leases: Sequence[tuple[int, str]],
        owner: str,
        limit: int,
        lease_seconds: float,
    ) -> tuple[set[int], list[ClaimedJob]]:
        """Completes the (job_id, token) jobs still leased to the caller and claims up to
        `limit` more, in one statement: (the jobs completed, the jobs claimed)."""
        if not leases and limit <= 0:
            return set(), []
        rows = await self._rows(
            COMPLETE_AND_CLAIM,
            {
                "job_ids": id_array([job_id for job_id, _ in leases]),
                "tokens": id_array([t for _, t in leases]),
                "limit": max(limit, 0),
                "owner": owner,
                "lease_seconds": float(lease_seconds),
            },
            role="claim",
        )
        done = set(rows[0][_COMPLETED]) if rows else set()
        return done, [claimed_job(row) for row in rows if row[_JOB_ID] is not None]

    async def heartbeat(self, job_id: int, token: str, lease_seconds: float) -> bool:
        """Extends the lease; False means the lease is gone and the job is not ours."""
        return job_id in await self.heartbeat_many([(job_id, token)], lease_seconds)

    async def heartbeat_many(
        self, leases: Sequence[tuple[int, str]], lease_seconds: float
    ) -> set[int]:
        """Extends every lease in one statement; answers the jobs still held."""
        if not leases:
            return set()
        rows = await self._rows(
            HEARTBEAT,
            {
                "job_ids": id_array([job_id for job_id, _ in leases]),
                "tokens": id_array([token for _, token in leases]),
                "lease_seconds": float(lease_seconds),
            },
        )
        return {row[0] for row in rows}

    async def complete_many(self, leases: Sequence[tuple[int, str]]) -> set[int]:
        """Deletes the jobs whose lease is still the caller's, in one statement; answers
        the jobs completed (the others had lost their lease)."""
        if not leases:
            return set()
        rows = await self._rows(
            COMPLETE_MANY,
            {
                "job_ids": id_array([job_id for job_id, _ in leases]),
                "tokens": id_array([t for _, t in leases]),
            },
        )
        return {row[0] for row in rows}

    async def save_progress(
        self,
        job_id: int,
        token: str,
        progress: dict[str, Any],
        step: tuple[str, int] | None = None,
    ) -> None:
        params: dict[str, Any] = {"job_id": job_id, "token": token, "changes": Jsonb(progress)}
        if step is None:
            rows = await self._rows(SAVE_PROGRESS, params)
        else:
            params["step"], params["attempt"] = step
            rows = await self._rows(SAVE_PROGRESS_AT_STEP, params)
        if not rows:
            raise LeaseLost(job_id)

    async def mark_step(self, job_id: int, token: str, step: str, attempt: int) -> None:
        rows = await self._rows(
            MARK_STEP, {"job_id": job_id, "token": token, "step": step, "attempt": attempt}
        )
        if not rows:
            raise LeaseLost(job_id)

    async def retry_later(
        self,
        job_id: int,
        token: str,
        delay_seconds: float,
        error: str,
        *,
        transient: bool = False,
    ) -> bool:
        rows = await self._rows(
            RETRY_LATER,
            {
                "job_id": job_id,
                "token": token,
                "delay_seconds": max(float(delay_seconds), 0.0),
                "error": error,
                "transient": transient,
            },
        )
        return bool(rows)

    async def release(self, job_id: int, token: str) -> bool:
        return bool(await self._rows(RELEASE, {"job_id": job_id, "token": token}))

    async def rescue_expired(self, limit: int = 100) -> int:
        return len(await self._rows(RESCUE_EXPIRED, {"limit": limit}))

    async def seconds_until_next(self) -> float | None:
        """Seconds until the earliest queued job is due (0 if one is due), or None."""
        rows = await self._rows(SECONDS_UNTIL_NEXT, {}, role="claim")
        value = rows[0][0] if rows else None
        return None if value is None else max(float(value), 0.0)
