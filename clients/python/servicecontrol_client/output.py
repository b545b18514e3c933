"""How scctl prints: JSON (the proto3 JSON mapping), human tables, and the progress line
shown while a command waits on an operation."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import jmespath
import jmespath.exceptions
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from servicecontrol.v1 import resources_pb2 as pb

# Columns shown for lists of each kind of resource, by their JSON field name.
LIST_COLUMNS: dict[str, list[str]] = {
    "services": ["serviceName", "status", "serviceArn", "serviceUrl", "updatedAt"],
    "operations": ["id", "type", "status", "currentStep", "attempt", "startedAt", "endedAt"],
    "connections": ["connectionName", "providerType", "status", "connectionArn"],
    "certificates": ["domainName", "status", "serviceArn", "expiresAt", "certificateArn"],
    "customDomains": ["domainName", "status", "enableWwwSubdomain"],
    "events": ["cursor", "occurredAt", "type", "resourceArn"],
}


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def header(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).upper()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, _cell(value)))
    return rows


def grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def table(data: Mapping[str, Any]) -> str:
    """A human rendering of a response: lists of resources as one row each, everything
    else as FIELD / VALUE rows (nested fields dotted)."""
    sections: list[str] = []
    rest: dict[str, Any] = {}
    for key, value in data.items():
        columns = LIST_COLUMNS.get(key)
        if columns is not None and isinstance(value, list):
            rows = [[_cell(item.get(c)) for c in columns] for item in value]
            sections.append(grid([header(c) for c in columns], rows) if rows else f"(no {key})")
        else:
            rest[key] = value
    if rest:
        # One top-level resource (`{"service": {...}}`) reads better without its prefix.
        single = len(rest) == 1 and isinstance(next(iter(rest.values())), dict)
        flat = _flatten(next(iter(rest.values())) if single else rest)
        sections.insert(0, grid(["FIELD", "VALUE"], [list(r) for r in flat]))
    return "\n\n".join(sections)


class QueryError(ValueError):
    """A --query that is not a valid JMESPath expression."""


def query(data: Any, expression: str | None) -> Any:
    """data filtered by a JMESPath expression (as the AWS CLI's --query), on the JSON
    shape that `--output json` prints."""
    if not expression:
        return data
    try:
        return jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise QueryError(f"--query {expression!r}: {exc}") from exc


def render(data: Any, output: str) -> str:
    if output == "table":
        if isinstance(data, Mapping):
            return table(data)
        return _generic_table(data)
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
    if output == "text":
        return text(data)
    return json.dumps(data, indent=2)


def _generic_table(data: Any) -> str:
    """A query's result: rows of a list of objects, or one value per line."""
    if isinstance(data, list) and data and all(isinstance(item, Mapping) for item in data):
        columns = list(dict.fromkeys(key for item in data for key in item))
        rows = [[_cell(item.get(c)) for c in columns] for item in data]
        return grid([header(c) for c in columns], rows)
    if isinstance(data, list):
        return "\n".join(_cell(item) for item in data)
    return _cell(data)


def text(data: Any) -> str:
    """Tab-separated values, as the AWS CLI's text output: a list of objects is one line
    per object (its values in key order), an object is its values on one line, a list
    of scalars one line of them; nested lists and objects are flattened in turn."""
    lines: list[str] = []
    _text_lines(data, lines)
    return "\n".join(lines)


def _nested(value: Any) -> bool:
    return isinstance(value, Mapping | list)


def _text_lines(value: Any, lines: list[str]) -> None:
    if isinstance(value, Mapping):
        items: list[Any] = list(value.values())
        scalars = [v for v in items if not _nested(v)]
        if scalars:
            lines.append("\t".join(_cell(v) for v in scalars))
        for nested in (v for v in items if _nested(v)):
            _text_lines(nested, lines)
    elif isinstance(value, list) and not any(_nested(v) for v in value):
        if value:
            lines.append("\t".join(_cell(v) for v in value))
    elif isinstance(value, list):
        for item in value:
            _text_lines(item, lines)
    elif value is not None:
        lines.append(_cell(value))


class Progress:
    """Shows a waited-on operation's state. On a terminal: one line rewritten in place
    (so elapsed seconds tick); otherwise: a new line whenever the state changes, so logs
    stay readable."""

    def __init__(
        self, stream: TextIO, tty: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.clock = clock
        self.started = clock()
        self._last_state: tuple[Any, ...] | None = None
        self._drawn = False

    def line(self, op: pb.Operation) -> str:
        elapsed = self.clock() - self.started
        parts = [
            pb.Operation.Type.Name(op.type),
            op.id,
            pb.Operation.Status.Name(op.status),
            f"step={op.current_step or '-'}",
            f"attempt={op.attempt}",
            f"elapsed={elapsed:.0f}s",
        ]
        if op.last_error and op.status == pb.Operation.IN_PROGRESS:
            parts.append(f"retrying after: {op.last_error}")
        return " ".join(parts)

    def update(self, op: pb.Operation) -> None:
        if self.tty:
            # \r and erase-line: the same line, redrawn.
            self.stream.write("\r\x1b[2K" + self.line(op))
            self._drawn = True
        else:
            state = (op.status, op.current_step, op.attempt, op.last_error)
            if state == self._last_state:
                return
            self._last_state = state
            self.stream.write(self.line(op) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class TransferProgress:
    """A progress bar for a transfer, on a terminal only: one line redrawn in place, at
    most every `interval` seconds and once more at the end."""

    WIDTH = 30

    def __init__(
        self,
        stream: TextIO,
        tty: bool,
        label: str,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.1,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.label = label
        self.clock = clock
        self.interval = interval
        self._last_drawn = float("-inf")
        self._drawn = False

    def line(self, done: int, total: int) -> str:
        fraction = done / total if total else 1.0
        filled = round(self.WIDTH * fraction)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return (
            f"{self.label} [{bar}] {fraction:4.0%} {done / 1048576:.1f}/{total / 1048576:.1f} MiB"
        )

    def update(self, done: int, total: int) -> None:
        if not self.tty:
            return
        now = self.clock()
        if done < total and now - self._last_drawn < self.interval:
            return
        self._last_drawn = now
        self.stream.write("\r\x1b[2K" + self.line(done, total))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
