"""What every string a caller sends must be, whatever field it is in: storable as
PostgreSQL text (no NUL character, no lone UTF-16 surrogate) and of bounded length.
Both endpoints run every request through `text_violations` before any use case sees it,
so no field can be forgotten."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import FieldViolation

# Longer than any field the contract allows (the longest, a start command or a page
# token, is 51,200 characters): a bound for fields that have no rule of their own.
MAX_FIELD_CHARS = 65536


def _problem(value: str) -> str | None:
    if len(value) > MAX_FIELD_CHARS:
        return f"be at most {MAX_FIELD_CHARS} characters"
    if "\x00" in value:
        return "not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "be valid Unicode (no lone surrogates)"
    return None


def text_violations(value: Any, path: str = "") -> list[FieldViolation]:
    """Every string in a decoded request (mappings, sequences and strings; keys count
    too), as field violations named by their path (`a.b[2]`, `env["KEY"]` for keys)."""
    return [FieldViolation(field, problem) for field, problem in _walk(value, path)]


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        problem = _problem(value)
        if problem is not None:
            yield path, f"must {problem}"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                problem = _problem(key)
                if problem is not None:
                    # The key itself cannot be shown: it is what is wrong.
                    yield path, f"keys must {problem}"
                    continue
            yield from _walk(item, child)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
