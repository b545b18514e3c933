"""Starting against a database that is itself starting, recovering or restarting: waited
for (bounded), and a database lost during the start is one clear line, not a traceback."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from servicecontrol_server import bootstrap
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.startup import StartupError

URL = "postgresql://app:secret@127.0.0.1:5999/app"
RECOVERING = "connection failed: FATAL:  the database system is not yet accepting connections"


class _Connection:
    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def connect_failing(times: int, message: str, calls: list[int]) -> Any:
    def connect(*args: Any, **kwargs: Any) -> _Connection:
        calls.append(1)
        if len(calls) <= times:
            raise psycopg.OperationalError(message)
        return _Connection()

    return connect


def test_a_recovering_database_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(bootstrap.psycopg, "connect", connect_failing(3, RECOVERING, calls))
    monkeypatch.setattr(bootstrap.time, "sleep", lambda seconds: None)
    bootstrap.check_database(URL, starting_wait=60)
    assert len(calls) == 4


def test_a_database_that_stays_in_recovery_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(bootstrap.psycopg, "connect", connect_failing(10**6, RECOVERING, calls))
    monkeypatch.setattr(bootstrap.time, "sleep", lambda seconds: None)
    with pytest.raises(StartupError) as refused:
        bootstrap.check_database(URL, starting_wait=0)
    assert "not yet accepting connections" in str(refused.value.lines)
    assert "secret" not in str(refused.value.lines)


def test_a_refused_connection_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    refused = "connection failed: Connection refused"
    monkeypatch.setattr(bootstrap.psycopg, "connect", connect_failing(10**6, refused, calls))
    with pytest.raises(StartupError):
        bootstrap.check_database(URL, starting_wait=60)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "lost",
    [
        OperationalError("SELECT 1", {}, psycopg.OperationalError(RECOVERING)),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        BackendUnavailable("database unavailable"),
    ],
)
def test_losing_the_database_while_starting_is_a_startup_error(lost: Exception) -> None:
    with pytest.raises(StartupError) as stopped, bootstrap.starting_on_database(URL):
        raise lost
    (line,) = stopped.value.lines
    assert line.startswith("lost the database at ") and "secret" not in line


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), bootstrap.starting_on_database(URL):
        raise KeyError("not a database problem")
