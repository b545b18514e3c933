"""The server's log lines (logs.py): one JSON object per line off a terminal, with the
record's extra fields; a person's line on a terminal; and a line costs no lookup of where
it was logged from, or of its thread and process, which neither format prints."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from servicecontrol_server import logs


@pytest.fixture
def restored() -> Iterator[None]:
    """The logging module's globals and the root logger as they were."""
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    yield
    (
        root.handlers[:],
        level,
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    ) = saved
    root.setLevel(level)
    logging.captureWarnings(False)


class _Opaque:
    def __str__(self) -> str:
        return "opaque-value"


def test_a_json_line_carries_the_message_and_the_extra_fields(restored: None) -> None:
    out = io.StringIO()
    assert logs.configure("INFO", "auto", out) is True  # not a terminal: JSON
    logging.getLogger("servicecontrol_server.access").info(
        "call", extra={"method": "DescribeService", "code": "OK", "what": _Opaque()}
    )
    line = json.loads(out.getvalue())
    assert line["level"] == "INFO"
    assert line["logger"] == "servicecontrol_server.access"
    assert line["message"] == "call"
    assert line["method"] == "DescribeService" and line["code"] == "OK"
    assert line["what"] == "opaque-value"  # what JSON cannot hold, as text
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    # Where it was logged from, its thread and its process are not printed.
    assert not {"pathname", "lineno", "funcName", "thread", "process"} & set(line)


def test_a_json_line_keeps_the_exception(restored: None) -> None:
    out = io.StringIO()
    logs.configure("INFO", "json", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    line = json.loads(out.getvalue())
    assert "ValueError: boom" in line["exception"]


def test_a_text_line_for_a_person(restored: None) -> None:
    out = io.StringIO()
    assert logs.configure("INFO", "text", out) is False
    logging.getLogger("x").warning("disk low", extra={"free": "2 GB", "path": "/data"})
    text = out.getvalue()
    assert "WARNING disk low" in text and 'free="2 GB"' in text and "path=/data" in text


def test_a_line_looks_up_neither_its_caller_nor_its_thread_or_process(
    restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    logs.configure("INFO", "json", out)

    def no_lookup(*args: object, **kwargs: object) -> object:
        raise AssertionError("a line looked up where it was logged from")

    monkeypatch.setattr(logging.Logger, "findCaller", no_lookup)
    logging.getLogger("servicecontrol_server.access").info("call")
    record = logging.getLogger().makeRecord("x", logging.INFO, "", 0, "m", (), None)
    assert record.thread is None and record.process is None
    assert json.loads(out.getvalue())["message"] == "call"
