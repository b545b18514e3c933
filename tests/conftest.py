"""Test fixtures: one real PostgreSQL server for the session, a migrated template
database, and a fresh clone of it for every test that asks for `database_url`."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.database import with_database
from tests.support.postgres import postgres_server_url, prepare_template

pytest_plugins = ["tests.support.s3", "tests.support.server"]

TEMPLATE = "servicecontrol_template"


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server URL (postgres database). SERVICECONTROL_TEST_DATABASE_URL names an
    external server; otherwise an embedded server runs for the session."""
    external = os.environ.get("SERVICECONTROL_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: pytest deletes old basetemps when later sessions start,
    # which would pull the data directory from under a long-running session's server.
    data = Path(tempfile.mkdtemp(prefix="servicecontrol-pg-"))
    try:
        with postgres_server_url(data / "pgdata") as url:
            yield url
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data directory for a `servicecontrol` process on its embedded PostgreSQL, outside
    pytest's temporary root: run as root, PostgreSQL runs as another user, and every pytest
    session that starts takes that user's access to pytest's root away."""
    base = Path(tempfile.mkdtemp(prefix="servicecontrol-data-"))
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{TEMPLATE}_{worker}"
    prepare_template(postgres_admin_url, name)
    return name


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield with_database(postgres_admin_url, name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    from servicecontrol_server.adapters.postgres.database import create_engine

    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


# The longest tests, longest first: run first, so that with several workers (`-n 3` in the
# suite's command) they run side by side from the start instead of one of them keeping a
# worker busy after the other has run out of tests.
# Measured with --durations on a loaded machine (load average 6-7): the benchmarks' quick
# pass ~145 s, the soak ~158 s, the 1,000-object image copies 71 s + 27 s, the terraform
# tests 58 s and 46 s, the statement plans' module 40 s, the grpcurl recipes and the
# README walkthrough 40 s each.
LONGEST_FIRST = (
    "tests/e2e/test_bench_smoke.py::test_every_benchmark_runs_and_reports",
    "tests/e2e/test_soak_smoke.py",
    "tests/integration/test_images.py::test_delete_image_copy_of_more_than_1000_objects",
    "tests/e2e/test_terraform.py::test_configurations_apply_plan_destroy",
    "tests/e2e/test_terraform.py::test_apply_plan_import_destroy",
    "tests/integration/test_statement_plans.py",
    "tests/e2e/test_grpcurl.py::test_every_recipe_works_against_a_real_server",
    "tests/e2e/test_readme.py::test_grpcurl_walkthrough_works_when_pasted",
)


def pytest_configure(config: pytest.Config) -> None:
    """With several workers, pytest-xdist's default scheduler first hands each worker a
    quarter of its share in one consecutive chunk, so the first worker would get every
    test of LONGEST_FIRST, one after the other. One test at a time (`--maxschedchunk 1`,
    unless the command line says otherwise) spreads them over the workers and keeps
    the order meaningful."""
    if getattr(config.option, "maxschedchunk", False) is None:
        config.option.maxschedchunk = 1


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for position, prefix in enumerate(LONGEST_FIRST):
            if item.nodeid.startswith(prefix):
                return position
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its place
