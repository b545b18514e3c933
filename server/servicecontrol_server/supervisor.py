"""Job workers in processes of their own under `servicecontrol serve`.

Requests and jobs in one process share one event loop and one interpreter: under a
steady stream of calls the jobs starve (and the reverse). So, by default, `serve` starts
its job workers as child processes (`python -m servicecontrol_server worker`, with the
server's own settings and database URL, also when `serve` started the embedded
PostgreSQL) and supervises them:

- a worker process that dies is started again after a backoff (0.5 s doubling to 30 s,
  back to 0.5 s once a worker has run a minute), with one warning line each time;
- on SIGTERM/SIGINT/SIGHUP the server sends each worker SIGTERM: the worker finishes or
  hands back its jobs within the shutdown grace, as `servicecontrol worker` does; one
  still running well past it is killed (and its leases expire as after any crash);
- a worker never outlives the server: on Linux the kernel sends it SIGTERM when the
  server dies (PR_SET_PDEATHSIG), and on every platform it stops when its stdin (a pipe
  from the server) reaches end of file, which happens when the server exits however it
  exits, SIGKILL included;
- its logs go to the server's standard error in the server's format, each line tagged
  with `worker` (the worker's number); its job metrics are written to a directory the
  server reads when scraped (prometheus_client's multiprocess files) and are summed into
  the server's own /metrics;
- each worker holds the same presence lock as `servicecontrol worker`, so
  `WaitOperation`'s hints and the start-up warning see it.

`--worker-mode in-process` (SERVICECONTROL_WORKER_MODE) keeps the workers on the
server's event loop instead, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from . import logs
from .settings import Settings

log = logging.getLogger(__name__)

# prometheus_client writes a process's metrics into files in this directory when the
# variable is set before it is imported: how worker processes hand theirs to the server.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
# A worker that ran at least this long before it died restarts after the first delay.
STABLE_SECONDS = 60.0
# Past the shutdown grace, what a stopping worker gets to hand its jobs back: it waits the
# grace for running jobs, then up to the grace again for interrupted ones.
STOP_MARGIN_SECONDS = 5.0
# Linux prctl(2) option: the signal a process receives when its parent dies.
PR_SET_PDEATHSIG = 1


def in_processes(settings: Settings) -> bool:
    """Whether `serve` runs its job workers as child processes."""
    return settings.worker_mode == "process" and settings.workers_in_server > 0


def child_environment(settings: Settings, url: str, *, json_logs: bool) -> dict[str, str]:
    """The server's environment, with every setting as the server resolved it (flags
    included) and the database it runs on (the embedded server's URL, when it started one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple | dict | set):
            value = json.dumps(list(value) if isinstance(value, set) else value)
        env[f"SERVICECONTROL_{name.upper()}"] = str(value)
    env["SERVICECONTROL_DATABASE_URL"] = url
    # The server has migrated (or was told not to); a worker only checks nothing.
    env["SERVICECONTROL_MIGRATE_ON_START"] = "false"
    env["SERVICECONTROL_LOG_FORMAT"] = "json" if json_logs else "text"
    return env


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class WorkerSupervisor:
    """Starts `processes` worker processes of `concurrency` jobs each and keeps them
    running until `stop`; then stops them within the grace."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        json_logs: bool,
        debug: bool = False,
        metrics_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.processes = settings.worker_processes
        self.concurrency = settings.workers_in_server
        self.debug = debug
        self.metrics_dir = metrics_dir
        self.env = child_environment(settings, url, json_logs=json_logs)
        if metrics_dir is not None:
            self.env[METRICS_DIR_ENV] = str(metrics_dir)
        # The live worker processes, by worker number.
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._readers: set[asyncio.Task[None]] = set()

    def command(self, index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "servicecontrol_server",
            *(["--debug"] if self.debug else []),
            "worker",
            "--concurrency",
            str(self.concurrency),
            "--supervised-by",
            str(os.getpid()),
            "--worker-index",
            str(index),
        ]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.children.values() if p.returncode is None]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._keep(i, stop) for i in range(1, self.processes + 1)))

    async def _keep(self, index: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_RESTART_DELAY
        while not stop.is_set():
            started = loop.time()
            try:
                proc = await self._spawn(index)
            except OSError as exc:
                code_text = f"could not start ({exc})"
            else:
                code = await _exit_or_stop(proc, stop)
                if code is None:
                    await self._stop_child(index, proc)
                    return
                code_text = _describe_exit(code)
                self.children.pop(index, None)
            if stop.is_set():
                return
            if loop.time() - started >= STABLE_SECONDS:
                delay = FIRST_RESTART_DELAY
            self.restarts += 1
            log.warning(
                f"job worker {index} {code_text}; restarting it in {delay:g} s",
                extra={"worker": index, "restart_in_seconds": delay},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.command(index),
            env=self.env,
            # Its stdin is the pipe whose end of file tells it the server is gone; its
            # stdout carries its ready line; its logs go where the server's go.
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            # Its own process group: a terminal's Ctrl-C reaches the server only, which
            # then stops its workers in order.
            process_group=0,
        )
        self.children[index] = proc
        reader = asyncio.create_task(_announce_ready(index, proc), name=f"worker-{index}-stdout")
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return proc

    async def _stop_child(self, index: int, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        limit = 2 * self.settings.grpc_grace_seconds + STOP_MARGIN_SECONDS
        try:
            await asyncio.wait_for(proc.wait(), limit)
        except TimeoutError:
            log.warning(
                f"job worker {index} did not stop within {limit:g} s; killing it",
                extra={"worker": index, "pid": proc.pid},
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        self.children.pop(index, None)


async def _exit_or_stop(proc: asyncio.subprocess.Process, stop: asyncio.Event) -> int | None:
    """The process's exit status once it exits, or None once `stop` is set first."""
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if exited.done():
        return exited.result()
    exited.cancel()
    return None


async def _announce_ready(index: int, proc: asyncio.subprocess.Process) -> None:
    """Logs the worker's start once it says it is ready; then reads its stdout to the end
    (nothing else is written there) so that it never blocks on a full pipe."""
    assert proc.stdout is not None
    with contextlib.suppress(OSError, ValueError):
        line = await proc.stdout.readline()
        if line.startswith(b"SERVICECONTROL_READY"):
            log.info("job worker started", extra={"worker": index, "pid": proc.pid})
        while await proc.stdout.read(65536):
            pass


@contextlib.contextmanager
def worker_processes(settings: Settings, url: str) -> Iterator[WorkerSupervisor | None]:
    """The supervisor of `serve`'s worker processes (None when it runs them in-process or
    runs none), with a private directory for their metrics files, removed on exit."""
    if not in_processes(settings):
        yield None
        return
    from . import metrics

    path = Path(tempfile.mkdtemp(prefix="servicecontrol-worker-metrics-"))
    metrics.include_worker_processes(path)
    try:
        yield WorkerSupervisor(
            settings,
            url,
            json_logs=logs.use_json(settings.log_format, sys.stderr),
            debug=logging.getLogger().isEnabledFor(logging.DEBUG),
            metrics_dir=path,
        )
    finally:
        metrics.include_worker_processes(None)
        shutil.rmtree(path, ignore_errors=True)


async def alongside(
    supervisor: WorkerSupervisor | None,
    stop: asyncio.Event,
    main: Callable[[asyncio.Event], Awaitable[None]],
) -> None:
    """Runs `main(stop)` with the supervisor's workers beside it; once `main` returns
    (or fails), the workers are stopped before this returns."""
    if supervisor is None:
        await main(stop)
        return
    workers = asyncio.create_task(supervisor.run(stop), name="worker-supervisor")
    try:
        await main(stop)
    finally:
        stop.set()
        await workers


# ----------------------------------------------------------------------- the worker's side


def bind_to_parent(parent_pid: int) -> bool:
    """Asks the kernel (Linux) for SIGTERM when the server dies; False when it already
    has (this process was re-parented before it could ask)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent_pid


async def stop_when_parent_goes(stop: asyncio.Event) -> None:
    """Sets `stop` once stdin, the server's pipe, reaches end of file: the server exited."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.read(4096):
            pass
    except (OSError, ValueError):
        return  # no pipe to watch (started by hand): the signals still stop it
    if not stop.is_set():
        log.info("the server is gone; stopping")
        stop.set()


async def run_supervised_worker(
    settings: Settings, concurrency: int, parent_pid: int, index: int
) -> int:
    """`servicecontrol worker` as one of `serve`'s worker processes: job workers only (the
    server runs the outbox relay and the reaper), its log lines tagged with its number,
    stopping when the server goes."""
    from .api.server import run_until_signalled
    from .bootstrap import build, starting_on_database, work

    logs.tag(worker=index)
    if not bind_to_parent(parent_pid):
        log.info("the server is gone; not starting")
        return 0
    url = settings.database_url
    with starting_on_database(url):
        app = await build(settings, url, migrate=False)
    try:
        print("SERVICECONTROL_READY worker", flush=True)

        async def main(stop: asyncio.Event) -> None:
            watcher = asyncio.create_task(stop_when_parent_goes(stop), name="parent-watch")
            try:
                await work(
                    app, stop, concurrency, role=f"serve-worker-{index}", relay_and_reaper=False
                )
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

        await run_until_signalled(main)
    finally:
        await app.close()
    return 0
