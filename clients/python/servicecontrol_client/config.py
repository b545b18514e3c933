"""scctl's connection settings: one `Profile`, resolved from the command line, the
environment and a profile in the config file, in that order of precedence.

The config file (`$SCCTL_CONFIG_FILE`, default `~/.config/scctl/config`) is INI, one
section per profile, as the AWS CLI keeps its own:

    [default]
    endpoint = https://sc.example.com:443
    ca_file = /etc/ssl/private-ca.pem
    output = table

    [staging]
    endpoint = http://127.0.0.1:50051
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "127.0.0.1:50051"
DEFAULT_PROFILE = "default"
OUTPUTS = ("json", "yaml", "table", "text")
# Settings a profile may hold, with what each means (shown by `scctl configure list`).
KEYS: dict[str, str] = {
    "endpoint": "host:port, http://host:port (plaintext) or https://host:port (TLS)",
    "api_key": "sent as `authorization: Bearer KEY`",
    "tls": "true: use TLS with a host:port endpoint",
    "ca_file": "PEM roots to trust (implies TLS)",
    "cert_file": "PEM client certificate for mutual TLS (implies TLS; goes with key_file)",
    "key_file": "PEM private key of cert_file",
    "output": f"default output format: {', '.join(OUTPUTS)}",
    "timeout": "deadline of each API call in seconds",
    "region": "region every call acts in (x-servicecontrol-region); unset: the server's default",
}


class ConfigError(Exception):
    """A setting that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Profile:
    endpoint: str = DEFAULT_ENDPOINT
    api_key: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    output: str = "json"
    timeout: float = 30.0
    region: str | None = None

    def target(self) -> tuple[str, bool]:
        """The gRPC target (host:port) and whether to use TLS. `http://` means
        plaintext and `https://` TLS; a bare host:port follows `tls` and `ca_file`."""
        value = self.endpoint.strip()
        if "://" not in value:
            if not value or "/" in value:
                raise ConfigError(f"endpoint {value!r}: expected host:port")
            return value, self.tls or self.ca_file is not None or self.cert_file is not None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(
                f"endpoint {value!r}: the scheme must be http:// (plaintext) or https:// "
                "(TLS), or give host:port"
            )
        if parts.path not in ("", "/") or parts.query or not parts.hostname:
            raise ConfigError(f"endpoint {value!r}: expected {parts.scheme}://host:port")
        secure = parts.scheme == "https"
        if not secure and (self.ca_file is not None or self.cert_file is not None):
            raise ConfigError(
                f"endpoint {value!r} is plaintext (http://) but a CA or client certificate "
                "file is set: use https:// for TLS"
            )
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError as exc:
            raise ConfigError(f"endpoint {value!r}: {exc}") from exc
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{port}", secure

    def root_certificates(self) -> bytes | None:
        return _read_pem(self.ca_file, "CA file", "--ca-file")

    def client_certificate(self) -> tuple[bytes, bytes] | None:
        """(certificate chain, private key) for mutual TLS, or None."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("--cert-file and --key-file go together: give both or neither")
        chain = _read_pem(self.cert_file, "client certificate file", "--cert-file")
        key = _read_pem(self.key_file, "client key file", "--key-file")
        return (chain, key) if chain is not None and key is not None else None


def _read_pem(path: Path | None, what: str, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{what} {path}: {reason}; give a readable PEM file with {flag}") from exc


def config_path() -> Path:
    configured = os.environ.get("SCCTL_CONFIG_FILE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "scctl" / "config"


def read_config(path: Path | None = None) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    target = path or config_path()
    try:
        parser.read(target, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"config file {target}: {exc}") from exc
    return parser


def write_setting(profile: str, key: str, value: str, path: Path | None = None) -> Path:
    if key not in KEYS:
        raise ConfigError(f"unknown setting {key!r}: one of {', '.join(KEYS)}")
    target = path or config_path()
    parser = read_config(target)
    if not parser.has_section(profile):
        parser.add_section(profile)
    parser.set(profile, key, value)
    _coerce(profile, {key: value})  # refuse a value that would not load
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        parser.write(out)
    # An API key may be in it: readable by its owner only.
    target.chmod(0o600)
    return target


def load_profile(name: str | None, overrides: dict[str, object]) -> Profile:
    """The profile `name` (or $SCCTL_PROFILE, or `default`) from the config file, under
    the SCCTL_* environment, under `overrides` (the command line's flags; None values
    are ignored)."""
    profile_name = name or os.environ.get("SCCTL_PROFILE") or DEFAULT_PROFILE
    parser = read_config()
    values: dict[str, str] = {}
    if parser.has_section(profile_name):
        values.update(parser.items(profile_name))
    elif name is not None or os.environ.get("SCCTL_PROFILE"):
        raise ConfigError(
            f"profile {profile_name!r} is not in {config_path()}: create it with "
            f"`scctl configure --profile {profile_name}`"
        )
    for key in KEYS:
        env = os.environ.get(f"SCCTL_{key.upper()}")
        if env:
            values[key] = env
    unknown = set(values) - set(KEYS)
    if unknown:
        raise ConfigError(
            f"profile {profile_name!r} in {config_path()}: unknown setting "
            f"{', '.join(sorted(unknown))}"
        )
    profile = _coerce(profile_name, values)
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(profile, **given)  # type: ignore[arg-type]


def _coerce(profile: str, values: dict[str, str]) -> Profile:
    loaded: dict[str, object] = {}
    for key, raw in values.items():
        try:
            if key == "tls":
                lowered = raw.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError("expected true or false")
                loaded[key] = lowered in ("true", "1", "yes")
            elif key == "timeout":
                loaded[key] = float(raw)
            elif key in ("ca_file", "cert_file", "key_file"):
                loaded[key] = Path(raw).expanduser()
            elif key == "output":
                if raw not in OUTPUTS:
                    raise ValueError(f"one of {', '.join(OUTPUTS)}")
                loaded[key] = raw
            else:
                loaded[key] = raw
        except ValueError as exc:
            raise ConfigError(f"profile {profile!r}: {key} = {raw!r}: {exc}") from exc
    return Profile(**loaded)  # type: ignore[arg-type]


def describe(profile: Profile) -> list[tuple[str, str]]:
    return [
        (f.name, "" if getattr(profile, f.name) is None else str(getattr(profile, f.name)))
        for f in fields(profile)
    ]
