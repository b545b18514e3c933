"""How the console words what it shows: statuses as text (never colour alone), times,
countdowns and sizes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

STATUS_TEXT = {
    "OPERATION_IN_PROGRESS": "Operation in progress",
    "RUNNING": "Running",
    "PAUSED": "Paused",
    "CREATE_FAILED": "Create failed",
    "DELETE_FAILED": "Delete failed",
    "DELETED": "Deleted",
    "IN_PROGRESS": "In progress",
    "PENDING": "Pending",
    "SUCCEEDED": "Succeeded",
    "FAILED": "Failed",
    "ROLLBACK_SUCCEEDED": "Rolled back",
    "ROLLBACK_FAILED": "Rollback failed",
    "PENDING_HANDSHAKE": "Pending handshake",
    "AVAILABLE": "Available",
    "ERROR": "Error",
    "PENDING_VALIDATION": "Pending validation",
    "PENDING_CERTIFICATE_DNS_VALIDATION": "Pending DNS validation",
    "ACTIVE": "Active",
    "ISSUED": "Issued",
    "VALIDATION_FAILED": "Validation failed",
}

# The badge's tone: the text above says the same thing, the tone only helps the eye.
TONE = {
    "RUNNING": "ok",
    "SUCCEEDED": "ok",
    "AVAILABLE": "ok",
    "ACTIVE": "ok",
    "ISSUED": "ok",
    "PAUSED": "neutral",
    "DELETED": "neutral",
    "OPERATION_IN_PROGRESS": "busy",
    "IN_PROGRESS": "busy",
    "PENDING": "busy",
    "PENDING_HANDSHAKE": "busy",
    "PENDING_VALIDATION": "busy",
    "PENDING_CERTIFICATE_DNS_VALIDATION": "busy",
}


def status_text(status: Any) -> str:
    value = getattr(status, "value", str(status))
    return STATUS_TEXT.get(value, value.replace("_", " ").capitalize())


def tone(status: Any) -> str:
    value = getattr(status, "value", str(status))
    return TONE.get(value, "bad")


def when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    return value.isoformat()


def countdown(until: datetime | str | None, now: datetime) -> str:
    """'in 6 days 23 hours', 'in 5 minutes', or 'expired'."""
    if until is None or until == "":
        return ""
    if isinstance(until, str):
        until = datetime.fromisoformat(until)
    left = int((until - now).total_seconds())
    if left <= 0:
        return "expired"
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if not days and (minutes or not parts):
        minutes = max(minutes, 1)
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return "in " + " ".join(parts)


def size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def humanize_key(key: str) -> str:
    """A configuration key, spaced: 'image_identifier' or 'ImageIdentifier' → words."""
    out = []
    for i, ch in enumerate(key.replace("_", " ")):
        if ch.isupper() and i and key[i - 1].islower():
            out.append(" ")
        out.append(ch)
    text = "".join(out).strip()
    return text[:1].upper() + text[1:].lower()
