"""Tags on App Runner resources: key/value pairs with App Runner's limits and key rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import FieldViolation

MAX_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
# App Runner's TagKey pattern `^(?!aws:).+`: the `aws:` prefix is AWS's own.
RESERVED_PREFIX = "aws:"
_KEY_RE = re.compile(r"(?!aws:).+", re.DOTALL)


def key_violations(key: str, field: str) -> list[FieldViolation]:
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return [FieldViolation(field, f"a tag key is 1-{MAX_KEY_LENGTH} characters")]
    if not _KEY_RE.fullmatch(key):
        return [FieldViolation(field, f"a tag key must not start with {RESERVED_PREFIX!r}")]
    return []


def tag_violations(tags: Iterable[tuple[str, str]], field: str = "tags") -> list[FieldViolation]:
    """What is wrong with a request's tags (a list of pairs, as sent: a key twice is an
    error, not a silent overwrite)."""
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for i, (key, value) in enumerate(tags):
        violations += key_violations(key, f"{field}[{i}].key")
        if len(value) > MAX_VALUE_LENGTH:
            violations.append(
                FieldViolation(f"{field}[{i}].value", f"at most {MAX_VALUE_LENGTH} characters")
            )
        if key in seen:
            violations.append(FieldViolation(f"{field}[{i}].key", f"duplicate tag key {key!r}"))
        seen.add(key)
    return violations


def check_count(existing: Mapping[str, str], added: Mapping[str, str]) -> list[FieldViolation]:
    """A resource holds at most MAX_TAGS tags once `added` is applied."""
    total = len({*existing, *added})
    if total > MAX_TAGS:
        return [
            FieldViolation(
                "tags", f"a resource has at most {MAX_TAGS} tags; this would make {total}"
            )
        ]
    return []
