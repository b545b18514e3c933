"""The worker: claims jobs, runs them through their handlers under a heartbeated lease,
and turns their outcome into completion, a delayed retry, or a recorded failure."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..application.ports import (
    ClaimedJob,
    JobError,
    JobFailure,
    JobHandler,
    LeaseLost,
    PermanentJobError,
    RetryableJobError,
    UnitOfWorkFactory,
)
from ..latches import wait_any
from .backoff import backoff_delay
from .context import AttemptContext
from .ports import Attempt, AttemptTracer, JobQueue, WakeUps
from .retry_policy import RetryPolicy

log = logging.getLogger(__name__)

# How often recording an exhausted job's failure is tried in-process before the job is
# handed back to the queue (whose next claim retries the recording).
_EXHAUST_TRIES = 3
# Wait at least this long before re-claiming when a due job exists but was not claimable
# (another worker is claiming it right now), so that case does not spin.
_MIN_DUE_WAIT = 0.05


@dataclass(slots=True, eq=False)
class _Running:
    """One claimed job: ONE task runs its handler and settles its outcome; the worker's
    shared loops extend its lease and complete it. The job holds its slot until its
    outcome is written: when its handler returns without one, the task ends there and the
    statement that completes the job frees the slot."""

    job: ClaimedJob
    ctx: AttemptContext
    started: float
    task: asyncio.Task[None] | None = None
    # True while the handler runs: only then may the worker cancel the task on its own
    # account (a lost lease, a shutdown), and the task tells that cancellation apart from
    # its own teardown by `interrupted`.
    in_handler: bool = False
    interrupted: bool = False
    # Set when the worker itself interrupts the job to stop; its lease is then released.
    shutting_down: bool = False
    # Set when the handler returned without writing an outcome: the job waits in the
    # worker's next batch of completions.
    completing: bool = False
    # Only for a traced attempt: its task waits here for the completion, so that the
    # attempt's span ends with its outcome. An untraced task ends when its handler does.
    settled: asyncio.Future[None] | None = None
    attempt: Attempt | None = None
    # When the lease was last known extended (loop time of the asking heartbeat).
    extended_at: float = 0.0

    def fields(self, **more: Any) -> dict[str, Any]:
        """The job's fields for a log line (built only when a line is emitted)."""
        job = self.job
        return {
            "job_id": job.job_id,
            "kind": job.kind,
            "attempt": job.attempts,
            "operation_id": job.operation_id,
            "service_arn": job.service_arn,
            **more,
        }

    def interrupt(self) -> None:
        """Cancels the handler, if it is still running."""
        if self.in_handler and self.task is not None and not self.interrupted:
            self.interrupted = True
            self.task.cancel()


class Worker:
    """Runs up to `concurrency` jobs at a time from `queue`; fenced outcomes are written
    through units of work from `uow`.

    Wake-ups: a notification from `wakeups` (a NOTIFY sent at enqueue commit), a finished
    job freeing a slot, a rescued lease, or the `poll_seconds` timer, which is the fallback
    when notifications cannot arrive (connection down, transaction-pooling PgBouncer).
    Wake-ups coalesce: however many arrive while a claim is in flight, the next claim is
    one statement for every free slot.

    Per job there is one task. Leases are extended by one heartbeat loop for all running
    jobs (one statement per beat), and jobs whose handler returns without writing an
    outcome of its own are completed in batches (one statement per batch, each job fenced
    by its own lease token)."""

    def __init__(
        self,
        queue: JobQueue,
        uow: UnitOfWorkFactory,
        handlers: Mapping[str, JobHandler],
        *,
        wakeups: Callable[[], WakeUps],
        owner: str,
        concurrency: int = 2,
        lease_seconds: float = 30,
        heartbeat_seconds: float = 10,
        poll_seconds: float = 1.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        retry_window: float = 15 * 60,
        shutdown_grace: float = 10,
        rng: Callable[[], float] = random.random,
        on_outcome: Callable[[str, str, float], None] | None = None,
        tracer: AttemptTracer | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if heartbeat_seconds >= lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        self.queue = queue
        self.uow = uow
        self.wakeups = wakeups
        self.handlers = dict(handlers)
        self.owner = owner
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.policy = RetryPolicy(retry_window, backoff_base, backoff_max)
        self.shutdown_grace = shutdown_grace
        # The backoff's jitter source; injectable so that tests can pin delays.
        self.rng = rng
        # Told (kind, outcome, seconds) as each attempt ends: succeeded, retried, failed,
        # lease_lost or interrupted.
        self.on_outcome = on_outcome
        # Wraps each attempt (a trace span); none by default.
        self.tracer = tracer
        self._running: dict[int, _Running] = {}
        # The claim loop's one latch: notifications, freed slots, rescues and the stop.
        self._wake = asyncio.Event()
        self._listener: WakeUps | None = None
        self._waiting = False
        # Completions waiting for the next batch, and what wakes the loop that sends them.
        self._completions: list[_Running] = []
        self._completing = asyncio.Event()
        self._stopping = False
        self._claiming = False
        # Set, while a stopping worker waits for its jobs, once none is left.
        self._drained: asyncio.Event | None = None

    @property
    def listening(self) -> bool:
        """True while the worker's LISTEN connection is established."""
        return self._listener is not None and self._listener.connected.is_set()

    @property
    def idle(self) -> bool:
        """True while the worker runs no job and is blocked until a wake-up or its poll
        timer; a job enqueued now starts only through a notification (or that timer)."""
        return self._waiting and not self._running and not self._wake.is_set()

    @property
    def claiming(self) -> bool:
        """True while the worker claims jobs (from start until a stop ends its loop)."""
        return self._claiming

    @property
    def running_jobs(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Claims and runs jobs until `stop` is set, then winds down gracefully."""
        listener = self.wakeups()
        listener.subscribe(self._wake)
        self._listener = listener
        log.info("worker started", extra={"owner": self.owner, "concurrency": self.concurrency})
        async with listener, self.queue.connected():
            loops = [
                asyncio.create_task(self._rescue_loop(stop), name=f"rescuer-{self.owner}"),
                asyncio.create_task(self._heartbeat_loop(), name=f"leases-{self.owner}"),
                asyncio.create_task(self._completion_loop(stop), name=f"completions-{self.owner}"),
                asyncio.create_task(self._relay_stop(stop), name=f"stop-{self.owner}"),
            ]
            try:
                self._claiming = True
                await self._claim_loop(stop)
            finally:
                self._claiming = False
                loops[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loops[0]
                await self._shutdown()
                for loop in loops[1:]:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
                self._listener = None
        log.info("worker stopped", extra={"owner": self.owner})

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            # Cleared before claiming: a wake-up during the claim re-arms it.
            self._wake.clear()
            timeout = self.poll_seconds
            # The jobs waiting for completion free their slots with this very statement.
            batch, self._completions = self._completions, []
            free = self.concurrency - len(self._running) + len(batch)
            if free > 0 or batch:
                try:
                    done, jobs = await self.queue.complete_and_claim(
                        [(r.job.job_id, r.job.lease_token) for r in batch],
                        self.owner,
                        max(free, 0),
                        self.lease_seconds,
                    )
                    failures = 0
                except Exception:
                    failures += 1
                    jobs = []
                    timeout = max(backoff_delay(failures, 0.1, self.poll_seconds), 0.05)
                    log.warning("claiming jobs failed", extra={"failures": failures}, exc_info=True)
                    self._not_completed(batch)
                else:
                    # Their slots are taken again by the jobs this same statement claimed.
                    self._completed(batch, done)
                if stop.is_set():
                    await self._release_unstarted(jobs)
                    return
                # The claim's time stands for each job's start: one clock read per batch.
                loop = asyncio.get_running_loop()
                now = loop.time()
                for job in jobs:
                    self._start(loop, job, now)
                if not failures and not jobs and free > 0:
                    timeout = await self._until_next_due(timeout)
            if self._wake.is_set() and not stop.is_set():
                # Woken during the claim: claim again at once, after one turn of the loop
                # (which lets every callback already due run, and their wake-ups merge).
                await asyncio.sleep(0)
                continue
            self._waiting = True
            try:
                woken = await self._woken(timeout)
            finally:
                self._waiting = False
            if woken and not stop.is_set():
                # One turn of the loop, no more: a notification arrives the instant the
                # enqueuing transaction commits, while that request still answers its
                # caller, and slots freed by the same batch of completions all land now.
                await asyncio.sleep(0)

    async def _woken(self, timeout: float) -> bool:
        """Waits for a wake-up (a stop is one too) or the timeout: one latch, one timer.
        True if woken."""
        if self._wake.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            return self._wake.is_set()
        return True

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        """A stop wakes the claim loop and the completion loop through their own latch."""
        await stop.wait()
        self._stopping = True
        self._wake.set()
        self._completing.set()

    async def _until_next_due(self, timeout: float) -> float:
        """A delayed retry sends no notification when it falls due: wake for it."""
        try:
            due = await self.queue.seconds_until_next()
        except Exception:
            log.warning("reading the next due job failed", exc_info=True)
            return timeout
        if due is None:
            return timeout
        return min(timeout, max(due, _MIN_DUE_WAIT))

    async def _rescue_loop(self, stop: asyncio.Event) -> None:
        interval = self.lease_seconds / 2
        while not stop.is_set():
            try:
                rescued = await self.queue.rescue_expired()
            except Exception:
                log.warning("rescuing expired leases failed", exc_info=True)
            else:
                if rescued:
                    log.warning("requeued jobs whose lease expired", extra={"jobs": rescued})
                    self._wake.set()
            await wait_any(stop, timeout=interval)

    def _start(self, loop: asyncio.AbstractEventLoop, job: ClaimedJob, now: float) -> None:
        running = _Running(job, AttemptContext(self.queue, self.uow, job), now, extended_at=now)
        self._running[job.job_id] = running
        running.task = loop.create_task(self._supervise(running), name=f"job-{job.job_id}")

    def _free(self, running: _Running) -> None:
        """The job's slot is free again."""
        if self._running.get(running.job.job_id) is running:
            del self._running[running.job.job_id]
            if not self._running and self._drained is not None:
                self._drained.set()

    async def _release_unstarted(self, jobs: list[ClaimedJob]) -> None:
        for job in jobs:
            with contextlib.suppress(Exception):
                await self.queue.release(job.job_id, job.lease_token)

    def _ended(self, running: _Running, outcome: str) -> None:
        if running.attempt is not None:
            running.attempt.ended(outcome)
        if self.on_outcome is not None:
            elapsed = asyncio.get_running_loop().time() - running.started
            self.on_outcome(running.job.kind, outcome, elapsed)

    async def _supervise(self, running: _Running) -> None:
        try:
            if self.tracer is None:
                await self._execute(running)
            else:
                with self.tracer.attempt(running.job) as running.attempt:
                    await self._execute(running)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The job keeps its lease until it expires; a rescuer then requeues it.
            _log(logging.ERROR, "job supervision failed", running, exc_info=True)
        finally:
            if not running.completing:
                self._free(running)
                # A free slot: claim again without waiting for the poll timer.
                self._wake.set()

    async def _execute(self, running: _Running) -> None:
        job, ctx = running.job, running.ctx
        handler = self.handlers.get(job.kind)
        if handler is None or job.charged_attempts > job.max_attempts:
            await self._refuse(running, handler)
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job started", extra=running.fields())
        exc: BaseException | None = None
        cancelled = False
        running.in_handler = True
        try:
            await handler.run(ctx)
        except asyncio.CancelledError:
            if not running.interrupted:
                # The worker itself is being torn down without a graceful stop.
                running.in_handler = False
                if not ctx.completed and not ctx.lease_lost.is_set():
                    with contextlib.suppress(Exception):
                        await self.queue.release(job.job_id, job.lease_token)
                raise
            # Our own interruption (lost lease, shutdown): the task goes on to settle.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            cancelled = True
        except Exception as error:
            exc = error
        finally:
            running.in_handler = False
        if running.interrupted and not cancelled:
            # The handler swallowed our cancellation: its request is spent all the same.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()
        await self._settle(running, handler, exc, cancelled=cancelled)

    async def _refuse(self, running: _Running, handler: JobHandler | None) -> None:
        """Fails a job that must not run: no handler for its kind, or no attempts left."""
        job = running.job
        if handler is None:
            failure = JobFailure(
                "INTERNAL_ERROR",
                f"No handler for job kind {job.kind!r}.",
                {"kind": job.kind},
                job.attempts,
            )
            await self._exhaust(
                running, None, failure, f"no handler for kind {job.kind!r}", why="no handler"
            )
            return
        # Rescued after its last allowed attempt died with its worker.
        failure = JobFailure(
            "INTERNAL_ERROR",
            "The job's last attempt was interrupted and no attempts are left.",
            {},
            job.attempts - 1,
        )
        await self._exhaust(
            running,
            handler,
            failure,
            "attempts exhausted by lost leases",
            why="last attempt interrupted",
        )

    async def _settle(
        self,
        running: _Running,
        handler: JobHandler,
        exc: BaseException | None,
        *,
        cancelled: bool = False,
    ) -> None:
        job, ctx = running.job, running.ctx
        if ctx.completed:
            _log(logging.INFO, "job completed", running)
            self._ended(running, "succeeded")
            return
        if ctx.lease_lost.is_set():
            _log(logging.WARNING, "lease lost; job dropped without further writes", running)
            self._ended(running, "lease_lost")
            return
        if cancelled:
            if running.shutting_down:
                released = await self._quietly(self.queue.release(job.job_id, job.lease_token))
                _log(
                    logging.INFO,
                    "job interrupted by shutdown; lease released",
                    running,
                    released=bool(released),
                )
                self._ended(running, "interrupted")
                return
            exc = RuntimeError("the handler was cancelled")

        if exc is None:
            settled = self._complete_for_handler(running)
            if settled is not None:
                await settled
            return
        if isinstance(exc, LeaseLost):
            ctx.lease_lost.set()
            _log(logging.WARNING, "lease lost; job dropped without further writes", running)
            self._ended(running, "lease_lost")
            return

        failure = _failure_of(exc, job.attempts)
        error_text = f"{failure.reason}: {failure.message}"
        # Each failure is logged once, by the retry or the failure record; an unexpected
        # error brings its traceback along.
        unexpected = None if isinstance(exc, JobError) else exc
        if unexpected is not None:
            error_text = f"{failure.reason}: {exc!r}"
        if isinstance(exc, PermanentJobError):
            await self._exhaust(running, handler, failure, error_text, why="permanent error")
            return
        await self._retry_or_exhaust(running, handler, exc, failure, error_text, unexpected)

    async def _retry_or_exhaust(
        self,
        running: _Running,
        handler: JobHandler,
        exc: BaseException,
        failure: JobFailure,
        error_text: str,
        unexpected: BaseException | None,
    ) -> None:
        """What the retry policy says: another attempt later, or the failure outcome."""
        job = running.job
        transient = isinstance(exc, RetryableJobError)
        decision = self.policy.decide(
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            transient=transient,
            retrying_for=self._retrying_for(running),
            spared=job.spared_attempts,
            rng=self.rng,
        )
        if not decision.retry:
            if transient:
                failure = dataclasses.replace(
                    failure,
                    metadata={
                        **failure.metadata,
                        "retry_window_seconds": f"{self.policy.window_seconds:g}",
                    },
                )
            await self._exhaust(
                running, handler, failure, error_text, why=decision.why, cause=unexpected
            )
            return
        failure = dataclasses.replace(failure, window_left_seconds=decision.window_left)
        await self._retry(
            running,
            handler,
            failure,
            error_text,
            decision.delay,
            transient=transient,
            cause=unexpected,
        )

    def _retrying_for(self, running: _Running) -> float | None:
        """Seconds since the job's first transient failure: the database's count at the
        claim plus this attempt's run time. None before any transient failure."""
        if running.job.retrying_seconds is None:
            return None
        elapsed = asyncio.get_running_loop().time() - running.started
        return running.job.retrying_seconds + elapsed

    def _complete_for_handler(self, running: _Running) -> asyncio.Future[None] | None:
        """The handler wrote no outcome: the job joins the next batch of completions,
        which the claim loop sends with its next claim (or, once the worker stops, the
        completion loop sends alone). The job's task ends here; the job keeps its slot
        until that statement has completed it (`_completed`). A traced attempt's task
        waits for that on the future returned, so that its span ends with the outcome."""
        running.completing = True
        self._completions.append(running)
        self._wake.set()
        if self._stopping:
            self._completing.set()
        if self.tracer is None:
            return None
        running.settled = asyncio.get_running_loop().create_future()
        return running.settled

    def _completed(self, batch: list[_Running], done: set[int]) -> None:
        """The statement that completed `done` of `batch` has committed: each job of the
        batch is settled and its slot freed."""
        info = log.isEnabledFor(logging.INFO)
        for running in batch:
            self._free(running)
            if running.job.job_id in done:
                running.ctx.completed = True
                if info:
                    log.info("job completed", extra=running.fields())
                self._ended(running, "succeeded")
            else:
                running.ctx.lease_lost.set()
                _log(logging.WARNING, "lease lost before completion; job dropped", running)
                self._ended(running, "lease_lost")
            if running.settled is not None and not running.settled.done():
                running.settled.set_result(None)

    def _not_completed(self, batch: list[_Running]) -> None:
        """The statement carrying `batch` failed (or was abandoned): each job keeps its
        lease until it expires, and a rescuer then requeues it. Their slots are free."""
        for running in batch:
            self._free(running)
            _log(logging.WARNING, "completing the job failed; its lease will expire", running)
            if running.settled is not None and not running.settled.done():
                running.settled.set_result(None)

    async def _completion_loop(self, stop: asyncio.Event) -> None:
        """Once the claim loop has ended (the worker is stopping), sends the completions
        of the jobs still finishing, each batch in one statement."""
        await stop.wait()
        while True:
            batch, self._completions = self._completions, []
            if not batch:
                self._completing.clear()
                await self._completing.wait()
                continue
            try:
                done = await self.queue.complete_many(
                    [(r.job.job_id, r.job.lease_token) for r in batch]
                )
            except asyncio.CancelledError:
                self._not_completed(batch)
                raise
            except Exception:
                log.warning("completing jobs failed", extra={"jobs": len(batch)}, exc_info=True)
                self._not_completed(batch)
            else:
                self._completed(batch, done)

    async def _retry(
        self,
        running: _Running,
        handler: JobHandler,
        failure: JobFailure,
        error_text: str,
        delay: float,
        *,
        transient: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        job, ctx = running.job, running.ctx
        # Before requeueing, while the lease still keeps the next attempt from starting,
        # so this attempt's note cannot land after the next attempt's progress.
        try:
            await handler.on_retry(ctx, failure, delay)
        except Exception:
            _log(logging.WARNING, "on_retry hook failed", running, exc_info=True)
        if await self.queue.retry_later(
            job.job_id, job.lease_token, delay, error_text, transient=transient
        ):
            _log(
                logging.INFO if cause is None else logging.ERROR,
                "job will be retried",
                running,
                exc_info=cause,
                delay_seconds=delay,
                reason=failure.reason,
            )
            self._ended(running, "retried")
        else:
            _log(logging.WARNING, "lease lost before requeue; job dropped", running)
            self._ended(running, "lease_lost")

    async def _exhaust(
        self,
        running: _Running,
        handler: JobHandler | None,
        failure: JobFailure,
        error_text: str,
        why: str = "",
        cause: BaseException | None = None,
    ) -> None:
        """Marks the job failed and lets the handler write the failure outcome, in one
        transaction. The fence comes first so that a stale worker writes nothing."""
        job, ctx = running.job, running.ctx
        for attempt in range(1, _EXHAUST_TRIES + 1):
            try:
                async with self.uow() as uow:
                    await uow.jobs.mark_failed(job.job_id, job.lease_token, error_text)
                    if handler is not None:
                        await handler.on_exhausted(ctx, uow, failure)
                    await uow.commit()
            except LeaseLost:
                ctx.lease_lost.set()
                _log(
                    logging.WARNING, "lease lost before recording the failure; job dropped", running
                )
                self._ended(running, "lease_lost")
                return
            except Exception:
                _log(
                    logging.WARNING,
                    "recording the job's failure failed",
                    running,
                    exc_info=True,
                    **{"try": attempt},
                )
                await asyncio.sleep(
                    backoff_delay(attempt, self.backoff_base, self.backoff_max, self.rng)
                )
            else:
                _log(
                    logging.WARNING if cause is None else logging.ERROR,
                    "job failed",
                    running,
                    exc_info=cause,
                    reason=failure.reason,
                    why=why,
                )
                self._ended(running, "failed")
                return
        # Hand the job back: its next claim finds no attempts left and records the failure
        # again (as an interrupted last attempt), so the outcome is written eventually.
        delay = backoff_delay(job.attempts, self.backoff_base, self.backoff_max, self.rng)
        await self._quietly(self.queue.retry_later(job.job_id, job.lease_token, delay, error_text))

    async def _heartbeat_loop(self) -> None:
        """Extends every running job's lease each heartbeat_seconds, in one statement.
        A job whose lease is gone has its handler cancelled: either another worker owns
        the job now, or, after a lease's worth of failed attempts, it may."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            beating = [r for r in self._running.values() if r.in_handler]
            if not beating:
                continue
            asked_at = loop.time()
            try:
                held = await self.queue.heartbeat_many(
                    [(r.job.job_id, r.job.lease_token) for r in beating], self.lease_seconds
                )
            except Exception:
                log.warning("heartbeat failed", extra={"jobs": len(beating)}, exc_info=True)
                lost = [r for r in beating if loop.time() - r.extended_at >= self.lease_seconds]
            else:
                lost = []
                for running in beating:
                    if running.job.job_id in held:
                        running.extended_at = asked_at
                    else:
                        lost.append(running)
            for running in lost:
                if running.ctx.completed or not running.in_handler:
                    continue
                _log(logging.WARNING, "lease lost; cancelling the handler", running)
                running.ctx.lease_lost.set()
                running.interrupt()

    async def _shutdown(self) -> None:
        """Gives running jobs `shutdown_grace` seconds, then interrupts them and releases
        their leases so that another worker can take them at once."""
        if not self._running:
            return
        log.info(
            "waiting for running jobs",
            extra={"jobs": len(self._running), "grace_seconds": self.shutdown_grace},
        )
        if await self._drain(self.shutdown_grace):
            return
        for running in list(self._running.values()):
            running.shutting_down = True
            running.interrupt()
        # A handler that swallows cancellation must not hold the process forever.
        if await self._drain(max(self.shutdown_grace, 1.0)):
            return
        stuck = [r.task for r in self._running.values() if r.task is not None and not r.task.done()]
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck)

    async def _drain(self, timeout: float) -> bool:
        """Waits up to `timeout` until no job is left (each one's outcome written, or its
        task ended); True if none is."""
        if not self._running:
            return True
        self._drained = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            pass
        finally:
            self._drained = None
        return not self._running

    async def _quietly(self, call: Any) -> Any:
        try:
            return await call
        except Exception:
            log.warning("job queue write failed", exc_info=True)
            return None


def _log(
    level: int,
    message: str,
    running: _Running,
    exc_info: BaseException | bool | None = None,
    **more: Any,
) -> None:
    """Logs a line about one job, with its fields (built only if the line is emitted)."""
    if log.isEnabledFor(level):
        log.log(level, message, extra=running.fields(**more), exc_info=exc_info)


def _failure_of(exc: BaseException, attempts: int) -> JobFailure:
    if isinstance(exc, JobError):
        return JobFailure(exc.reason, exc.message, dict(exc.metadata), attempts)
    # Internals stay in the logs and the job's last_error, not in the operation's error.
    return JobFailure(
        "INTERNAL_ERROR",
        "Internal error while running the job.",
        {"exception": type(exc).__name__},
        attempts,
    )
