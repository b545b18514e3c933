"""Problems an operator can fix before the server runs: each one becomes a line that names
the problem and the fix, and `servicecontrol` exits with code 2 (no traceback)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

EXIT_CONFIGURATION = 2

# The flag that sets each setting, where there is one, for the fix in the message.
FLAGS = {
    "data_dir": "--data-dir",
    "database_url": "--database-url",
    "s3_endpoint": "--s3-endpoint",
    "grpc_listen": "--listen",
    "aws_listen": "--aws-listen",
    "metrics_listen": "--metrics-listen",
    "console_listen": "--console",
    "tls_cert": "--tls-cert",
    "tls_key": "--tls-key",
    "tls_client_ca": "--tls-client-ca",
    "workers_in_server": "--workers",
    "worker_mode": "--worker-mode",
    "worker_processes": "--worker-processes",
    "regions": "--regions",
    "log_format": "--log-format",
}


class StartupError(Exception):
    """One or more lines, each naming a problem and its fix."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def setting_hint(name: str) -> str:
    env = f"SERVICECONTROL_{name.upper()}"
    flag = FLAGS.get(name)
    return f"{flag} or {env}" if flag else env


def settings_error(errors: list[Any]) -> StartupError:
    """A pydantic ValidationError's errors(), one line per bad setting."""
    lines = []
    for error in errors:
        name = ".".join(str(part) for part in error.get("loc", ())) or "settings"
        given = error.get("input")
        shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
        lines.append(
            f"setting {name}{shown}: {error.get('msg', 'invalid')}; fix {setting_hint(name)}"
        )
    return StartupError(*lines)


def check_data_dir(data_dir: Path) -> Path:
    """The data directory as an absolute path, created if missing; refused when it is a
    file or cannot be written."""
    path = data_dir.expanduser().absolute()
    hint = f"choose another with {setting_hint('data_dir')}"
    if path.exists() and not path.is_dir():
        raise StartupError(f"data dir {path} is a file, not a directory: {hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create data dir {path} ({exc.strerror}): {hint}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"data dir {path} is not writable by this user: {hint}")
    return path


def address_in_use(what: str, listen: str, setting: str) -> StartupError:
    return StartupError(
        f"{what} address {listen} is already in use (another server is listening there?): "
        f"stop it or choose another address with {setting_hint(setting)}"
    )


def redact(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
