"""The operator's identity commands (`accounts`, `keys`, `audit`, `credentials`) and the
development credentials the embedded default creates on first start."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .application.identity import Identity
from .bootstrap import CREDENTIALS_FILE, Application, operator_commands
from .domain.errors import DomainError
from .domain.identity import NewKey, Role
from .logs import use_json
from .settings import Settings

_DURATION_RE = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int | None:
    """Seconds in `90`, `15m`, `12h` or `30d`; None when it is none of these."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT[match.group(2)]


def parse_since(text: str) -> datetime | None:
    seconds = parse_duration(text)
    if seconds is not None:
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def credentials_path(settings: Settings) -> Path:
    return settings.data_dir / CREDENTIALS_FILE


def credentials_text(settings: Settings, account_id: str, new: NewKey) -> str:
    return (
        "# ServiceControl development credentials, created on first start. Keep private.\n"
        f"SERVICECONTROL_ACCOUNT_ID={account_id}\n"
        f"SERVICECONTROL_API_KEY={new.token}\n"
        f"AWS_ACCESS_KEY_ID={new.key.key_id}\n"
        f"AWS_SECRET_ACCESS_KEY={new.secret}\n"
        f"AWS_DEFAULT_REGION={settings.region}\n"
    )


def read_credentials(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


async def first_start_credentials(app: Application) -> None:
    """The embedded default's first start (no database configured, no key in it, no
    credentials file): a development account (the default account) with a writer key,
    printed once and kept in the data dir's credentials file (mode 0600). A configured
    database gets its accounts and keys from the operator only."""
    path = credentials_path(app.settings)
    if app.settings.database_url or path.exists() or await app.identity.store.has_keys():
        return
    account = app.settings.default_account
    await app.identity.create_account(account)
    new = await app.identity.create_key(account, Role.WRITER)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(credentials_text(app.settings, account, new))
    if use_json(app.settings.log_format, sys.stderr):
        # Off a terminal the stream is JSON lines: the block is one record of them.
        logging.getLogger(__name__).info(
            "development credentials created (shown once)",
            extra={
                "account": account,
                "api_key": new.token,
                "aws_access_key_id": new.key.key_id,
                "aws_secret_access_key": new.secret,
                "kept_in": str(path),
            },
        )
        return
    print(
        "ServiceControl development credentials (shown once; kept in "
        f"{path}):\n"
        f"  account          {account}\n"
        f"  API key          {new.token}\n"
        f"  AWS access key   {new.key.key_id}\n"
        f"  AWS secret key   {new.secret}",
        file=sys.stderr,
        flush=True,
    )


def print_credentials(settings: Settings, *, aws: bool) -> int:
    path = credentials_path(settings)
    if not path.exists():
        print(
            f"error: no credentials file at {path} (it is written on the first start of "
            "`servicecontrol serve` with this data dir)",
            file=sys.stderr,
        )
        return 1
    values = read_credentials(path)
    names = (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        if aws
        else ("SERVICECONTROL_API_KEY",)
    )
    for name in names:
        print(f"export {name}={values.get(name, '')}")
    return 0


async def identity_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        async with operator_commands(settings) as commands:
            identity = commands.identity
            if args.command == "accounts":
                if args.accounts_command == "create":
                    created = await identity.create_account(args.account)
                    print(f"{args.account} {'created' if created else 'already exists'}")
                else:
                    for account in await identity.list_accounts():
                        print(
                            f"{account.account_id} created {account.created_at.isoformat()} "
                            f"active keys {account.active_keys}"
                        )
                return 0
            if args.command == "keys":
                return await _keys(identity, args)
            if args.command == "audit":
                return await _audit(identity, args)
    except DomainError as exc:
        print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    return 2


async def _keys(identity: Identity, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        expires = None
        if args.expires_in is not None:
            expires = parse_duration(args.expires_in)
            if not expires:
                print("error: --expires-in must be like 3600, 15m, 12h or 30d", file=sys.stderr)
                return 2
        new = await identity.create_key(args.account, Role(args.role), expires)
        expiry = new.key.expires_at.isoformat() if new.key.expires_at else "never"
        print(f"key id      {new.key.key_id}")
        print(f"secret      {new.secret}")
        print(f"role        {new.key.role.value}, account {new.key.account_id}, expires {expiry}")
        print(f"gRPC        authorization: Bearer {new.token}")
        print("The secret is shown only now: it cannot be read back.")
        return 0
    if args.keys_command == "revoke":
        key = await identity.revoke_key(args.account, args.key_id)
        print(f"{key.key_id} revoked")
        return 0
    keys = await identity.list_keys(args.account)
    now = datetime.now(UTC)
    for key in keys:
        expiry = key.expires_at.isoformat() if key.expires_at else "never"
        print(f"{key.key_id} {key.role.value} {key.state(now)} expires {expiry}")
    return 0


async def _audit(identity: Identity, args: argparse.Namespace) -> int:
    since = None
    if args.since is not None:
        since = parse_since(args.since)
        if since is None:
            print("error: --since must be an ISO 8601 time or like 1h, 7d", file=sys.stderr)
            return 2
    for e in await identity.audit(args.account, since):
        when = e.occurred_at.isoformat() if e.occurred_at else ""
        print(
            f"{when} {e.action} {e.outcome} key={e.key_id or '-'} "
            f"resource={e.resource_arn or '-'} operation={e.operation_id or '-'} "
            f"request={e.request_id} source={e.source or '-'}"
        )
    return 0
