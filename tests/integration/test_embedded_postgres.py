"""The embedded PostgreSQL of the two-command setup, as another local user would see it:
its socket in a private directory (also when the data directory's path is too long for a
socket), no TCP port, a data directory others cannot read, and an application role that
is no superuser and owns only the application's schema, migrations included."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.adapters.postgres.embedded import APPLICATION_ROLE
from servicecontrol_server.adapters.postgres.migrate import upgrade_to_head
from servicecontrol_server.bootstrap import database_url
from servicecontrol_server.settings import Settings

pytestmark = pytest.mark.slow


def _private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o077 == 0, f"{path} is mode {oct(mode)}"


@pytest.fixture(scope="module")
def long_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Longer than any Unix socket path may be.
    return tmp_path_factory.mktemp("pg") / ("a-very-long-directory-name-" * 5) / "data"


@pytest.fixture(scope="module")
def app_url(long_data_dir: Path) -> Iterator[str]:
    settings = Settings(data_dir=long_data_dir, database_url="")
    with database_url(settings) as url:
        upgrade_to_head(url)
        yield url


def _socket_dir(url: str) -> Path:
    return Path(psycopg.conninfo.conninfo_to_dict(libpq_url(url))["host"])


def test_socket_is_in_a_private_directory_and_no_tcp_port(app_url: str) -> None:
    socket_dir = _socket_dir(app_url)
    assert len(str(socket_dir)) < 100
    assert not str(socket_dir).startswith(str(Path(app_url).parent))
    _private(socket_dir)
    _private(socket_dir.parent)
    assert list(socket_dir.glob(".s.PGSQL.*")), "no socket there"
    with psycopg.connect(libpq_url(app_url)) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)


def test_data_directory_is_not_readable_by_others(app_url: str, long_data_dir: Path) -> None:
    for path in (long_data_dir, long_data_dir / "postgres"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o066 == 0, f"{path} is mode {oct(mode)}"
        assert mode & 0o044 == 0


def test_application_role_is_no_superuser_and_owns_only_its_schema(app_url: str) -> None:
    with psycopg.connect(libpq_url(app_url), autocommit=True) as conn:
        role = conn.execute(
            "SELECT current_user, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role == (APPLICATION_ROLE, False, False, False, False)
        # Migrations ran as the role: it owns every table, and the schema.
        owners = {
            r[0]
            for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }
        assert owners == {APPLICATION_ROLE}
        assert conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone() == (APPLICATION_ROLE,)
        for statement in (
            "CREATE DATABASE elsewhere",
            "CREATE ROLE intruder",
            "CREATE SCHEMA other",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "SELECT pg_read_file('PG_VERSION')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_an_existing_superuser_owned_schema_is_handed_over(long_data_dir: Path) -> None:
    """A database created before the role existed (its tables the superuser's) is given
    to the role on the next start."""
    settings = Settings(data_dir=long_data_dir, database_url="")
    with database_url(settings) as url:
        admin = libpq_url(url).replace(f"://{APPLICATION_ROLE}:", "://postgres:", 1)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.left_behind (id bigint generated always as identity)")
            conn.execute("CREATE TYPE public.mood AS ENUM ('ok')")
    with database_url(settings) as url, psycopg.connect(libpq_url(url), autocommit=True) as conn:
        assert conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'left_behind'"
        ).fetchone() == (APPLICATION_ROLE,)
        conn.execute("DROP TABLE public.left_behind")
        conn.execute("DROP TYPE public.mood")
