"""`servicecontrol`: serve the API, run workers, migrate, push images, and finish what
needs an operator (connection handshakes, certificate DNS validation)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from . import logs
from .settings import Settings
from .startup import EXIT_CONFIGURATION, StartupError, settings_error

log = logging.getLogger("servicecontrol_server")


def package_version() -> str:
    try:
        return version("servicecontrol")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # gRPC's core prints its own lines for failures this program reports as one line.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # Until the server's own handlers are in place, SIGTERM and SIGHUP unwind the stack
    # (so an embedded PostgreSQL started so far is stopped) instead of killing outright.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    try:
        return _main(parser, args)
    except StartupError as exc:
        if args.debug:
            traceback.print_exc()
        for line in exc.lines:
            print(f"servicecontrol: error: {line}", file=sys.stderr)
        return EXIT_CONFIGURATION


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        settings = _settings(args)
    except ValidationError as exc:
        raise settings_error(exc.errors()) from exc
    logs.configure("DEBUG" if args.debug else settings.log_level, settings.log_format)

    if args.command == "serve":
        from .api.tls import TransportRefused, check_transport

        try:
            check_transport(settings)
        except TransportRefused as exc:
            print(f"servicecontrol: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(_serve(settings))
    if args.command == "worker":
        return asyncio.run(_worker(settings, args.concurrency, args))
    if args.command == "migrate":
        return _migrate(settings, args.check)
    if args.command == "credentials":
        from .identity_cli import print_credentials

        return print_credentials(settings, aws=args.aws)
    if args.command == "images":
        if args.sample == (args.archive is not None):
            parser.error("give either an archive or --sample")
        if args.endpoint:
            return _push_through(args.endpoint, args.api_key, args.archive, args.identifier)
        return _push(settings, args.archive, args.identifier)
    return asyncio.run(_operator_command(settings, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servicecontrol", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="debug logs, and tracebacks for startup errors"
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        help="auto (default): text on a terminal, JSON otherwise",
    )
    parser.add_argument("--data-dir", type=Path, help="where embedded defaults keep data")
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: embedded server)")
    parser.add_argument("--s3-endpoint", help="host:port of an S3 endpoint (default: local dir)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC API (with workers, relay and reaper)")
    serve.add_argument("--listen", help="host:port (default 127.0.0.1:50051; port 0 picks one)")
    serve.add_argument(
        "--aws-listen", help="host:port of the App Runner API (default 127.0.0.1:50080)"
    )
    serve.add_argument(
        "--metrics-listen",
        help="host:port of /metrics, /healthz and /readyz (default 127.0.0.1:9464)",
    )
    serve.add_argument(
        "--console", metavar="HOST:PORT", help="the web console (default 127.0.0.1:50090; '' off)"
    )
    serve.add_argument(
        "--workers", type=int, help="jobs each of the server's job workers runs at once (0: none)"
    )
    serve.add_argument(
        "--worker-mode",
        choices=("process", "in-process"),
        help="process (default): job workers in supervised processes of their own; "
        "in-process: on the server's event loop",
    )
    serve.add_argument(
        "--worker-processes", type=int, help="job worker processes (--worker-mode process)"
    )
    serve.add_argument(
        "--regions",
        metavar="REGION,...",
        help="the regions served, the first the default (default: SERVICECONTROL_REGION, "
        "us-east-1); a request's SigV4 scope or x-servicecontrol-region picks one",
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate on start")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): serve TLS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext on addresses other than loopback",
    )

    worker = sub.add_parser("worker", help="run job workers only")
    worker.add_argument("--concurrency", type=int, default=2)
    # Set by `serve` for the worker processes it supervises.
    worker.add_argument("--supervised-by", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--worker-index", type=int, default=1, help=argparse.SUPPRESS)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--check", action="store_true", help="only report pending differences")

    images = sub.add_parser("images", help="the source registry")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    push = images_sub.add_parser("push", help="push a `docker save` tarball")
    push.add_argument("archive", type=Path, nargs="?", help="the tarball (omit with --sample)")
    push.add_argument("identifier", help="repository:tag")
    push.add_argument(
        "--sample", action="store_true", help="push a small generated sample image instead"
    )
    push.add_argument(
        "--endpoint",
        help="push through the server at host:port (PushImage) instead of writing into "
        "the object store this command's settings name",
    )
    push.add_argument(
        "--api-key",
        help="the key to push with (with --endpoint; default: SERVICECONTROL_API_KEY, else the "
        "credentials file of the data dir)",
    )

    connections = sub.add_parser("connections", help="source-code provider connections")
    connections_sub = connections.add_subparsers(dest="connections_command", required=True)
    handshake = connections_sub.add_parser(
        "complete-handshake",
        help="finish a connection's provider handshake: it becomes AVAILABLE (or ERROR)",
    )
    handshake.add_argument("connection_arn")
    handshake.add_argument("--status", choices=["AVAILABLE", "ERROR"], default="AVAILABLE")
    handshake.add_argument("--account", help="12-digit account id (default: default account)")

    domains = sub.add_parser("domains", help="custom domains")
    domains_sub = domains.add_subparsers(dest="domains_command", required=True)
    validate = domains_sub.add_parser(
        "validate", help="run one certificate DNS validation pass against the zone file"
    )
    validate.add_argument("--account", help="only this account (default: every account)")
    _identity_parsers(sub)
    return parser


def _identity_parsers(sub: Any) -> None:
    accounts = sub.add_parser("accounts", help="accounts")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    create = accounts_sub.add_parser("create", help="create an account")
    create.add_argument("account", help="12-digit account id")
    accounts_sub.add_parser("list", help="list accounts")

    keys = sub.add_parser("keys", help="API keys (gRPC bearer tokens and AWS access keys)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create_key = keys_sub.add_parser("create", help="create a key; its secret is shown once")
    create_key.add_argument("--account", required=True, help="12-digit account id")
    create_key.add_argument("--role", choices=["reader", "writer"], default="writer")
    create_key.add_argument(
        "--expires-in", help="lifetime: seconds, or a number with s, m, h or d (e.g. 30d)"
    )
    list_keys = keys_sub.add_parser("list", help="list an account's keys (never secrets)")
    list_keys.add_argument("--account", required=True)
    revoke = keys_sub.add_parser(
        "revoke",
        help="revoke a key: refused by every server within its key cache's bound (1 s by default)",
    )
    revoke.add_argument("key_id")
    revoke.add_argument("--account", required=True)

    audit = sub.add_parser("audit", help="print an account's audit log")
    audit.add_argument("--account", required=True)
    audit.add_argument(
        "--since", help="an ISO 8601 time, or a duration back from now (e.g. 1h, 7d)"
    )

    credentials = sub.add_parser(
        "credentials", help="print the development credentials made on first start"
    )
    credentials.add_argument(
        "--aws", action="store_true", help="as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY lines"
    )


# Flags and the settings they set, applied when given (None: not given).
_FLAG_SETTINGS = {
    "data_dir": "data_dir",
    "database_url": "database_url",
    "s3_endpoint": "s3_endpoint",
    "listen": "grpc_listen",
    "aws_listen": "aws_listen",
    "metrics_listen": "metrics_listen",
    "console": "console_listen",
    "log_format": "log_format",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "tls_client_ca": "tls_client_ca",
    "workers": "workers_in_server",
    "worker_mode": "worker_mode",
    "worker_processes": "worker_processes",
    "regions": "regions",
}


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command line's flags on top."""
    overrides: dict[str, Any] = {}
    for flag, setting in _FLAG_SETTINGS.items():
        value = getattr(args, flag, None)
        # An empty --data-dir, --database-url, --s3-endpoint or --listen means "not given";
        # an empty --aws-listen, --metrics-listen or --console turns that endpoint off.
        if value is None or (
            value == "" and flag in ("data_dir", "database_url", "s3_endpoint", "listen")
        ):
            continue
        overrides[setting] = value
    if getattr(args, "no_migrate", False):
        overrides["migrate_on_start"] = False
    if getattr(args, "insecure", False):
        overrides["insecure"] = True
    return Settings(**overrides)


async def _serve(settings: Settings) -> int:
    from .api.server import run_until_signalled
    from .bootstrap import Bound, build, database_url, serve, starting_on_database
    from .identity_cli import first_start_credentials
    from .supervisor import alongside, worker_processes

    with database_url(settings) as url:
        with starting_on_database(url):
            app = await build(settings, url, serving=True)
        try:
            with starting_on_database(url):
                await first_start_credentials(app)
                idle = settings.workers_in_server == 0 and await app.presence.live_workers() == 0
            if idle:
                log.warning(
                    "no job workers: this server runs none (--workers 0) and no "
                    "`servicecontrol worker` is running against its database; operations "
                    "stay PENDING until one starts"
                )

            def ready(bound: Bound) -> None:
                _announce(settings, bound)
                # A machine-readable line for scripts and tests that start the server.
                print(f"SERVICECONTROL_READY port={bound.grpc.rpartition(':')[2]}", flush=True)

            with worker_processes(settings, url) as workers:
                await run_until_signalled(
                    lambda stop: alongside(workers, stop, lambda s: serve(app, s, ready))
                )
        finally:
            await app.close()
    return 0


def _announce(settings: Settings, bound: Any) -> None:
    """The banner on a terminal; one structured line otherwise."""
    from .banner import Endpoints, lines

    endpoints = Endpoints(
        grpc=bound.grpc,
        aws=bound.aws,
        metrics=bound.metrics,
        data_dir=settings.data_dir.expanduser().absolute(),
        account=settings.default_account,
        credentials_path=_credentials_file(settings),
        console=bound.console,
    )
    if logs.use_json(settings.log_format, sys.stderr):
        log.info(
            "serving",
            extra={
                "grpc": endpoints.grpc,
                "aws": endpoints.aws,
                "metrics": endpoints.metrics,
                "console": endpoints.console,
                "data_dir": str(endpoints.data_dir),
                "account": endpoints.account,
            },
        )
        return
    print("\n".join(lines(package_version(), endpoints)), file=sys.stderr, flush=True)


def _credentials_file(settings: Settings) -> Path | None:
    """The development credentials file, when the embedded default has written one."""
    from .identity_cli import credentials_path

    path = credentials_path(settings)
    return path.absolute() if path.exists() else None


async def _worker(settings: Settings, concurrency: int, args: argparse.Namespace) -> int:
    from .api.server import run_until_signalled
    from .bootstrap import build, database_url, starting_on_database, work

    if args.supervised_by is not None:  # one of `serve`'s worker processes
        from .supervisor import run_supervised_worker

        return await run_supervised_worker(
            settings, concurrency, args.supervised_by, args.worker_index
        )

    with database_url(settings) as url:
        # Migrating is safe from any number of processes at once (an advisory lock
        # serialises it), so a worker never starts against an unmigrated database.
        with starting_on_database(url):
            app = await build(settings, url)
        try:
            print("SERVICECONTROL_READY worker", flush=True)
            await run_until_signalled(lambda stop: work(app, stop, concurrency))
        finally:
            await app.close()
    return 0


def _migrate(settings: Settings, check: bool) -> int:
    from .adapters.postgres import migrate
    from .bootstrap import database_url

    with database_url(settings) as url:
        if check:
            diffs = migrate.pending_differences(url)
            for diff in diffs:
                print(diff)
            return 1 if diffs else 0
        migrate.upgrade_to_head(url)
        print(f"database at revision {migrate.current_revision(url)}")
    return 0


def _push(settings: Settings, archive: Path | None, identifier: str) -> int:
    from .application.images import push_docker_archive
    from .application.sample_image import build_docker_archive
    from .bootstrap import ensure_buckets, object_store

    store = object_store(settings)
    ensure_buckets(store, settings)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            if archive is None:
                archive = build_docker_archive(
                    Path(scratch) / "sample.tar",
                    layers=2,
                    layer_size=4096,
                    legacy=False,
                    repo_tag=identifier,
                )
            pushed = push_docker_archive(store, settings.source_bucket, archive, identifier)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"pushed {pushed.repository}:{pushed.tag} {pushed.manifest_digest} "
        f"({pushed.objects} objects, {pushed.bytes} bytes) into {_registry(settings)}"
    )
    embedded = not settings.s3_endpoint and not settings.database_url
    if embedded and not (settings.data_dir / "postgres").is_dir():
        print(
            f"warning: no server has run on the data dir {settings.data_dir.resolve()}; a "
            "server started with another data dir will not find this image: push with "
            "--endpoint HOST:PORT (through the server) or --data-dir",
            file=sys.stderr,
        )
    return 0


def _registry(settings: Settings) -> str:
    """Where the source registry is, as a server with these settings finds it."""
    if settings.s3_endpoint:
        return f"bucket {settings.source_bucket} at {settings.s3_endpoint}"
    return str((settings.data_dir / "objects" / settings.source_bucket).resolve())


def _push_through(endpoint: str, api_key: str | None, archive: Path | None, identifier: str) -> int:
    from servicecontrol_client import ServiceControlClient, ServiceControlError
    from servicecontrol_client.images import docker_archive, sample_image

    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(ServiceControlClient(endpoint, api_key=api_key))
            image = (
                sample_image(identifier)
                if archive is None
                else stack.enter_context(docker_archive(archive, identifier))
            )
            pushed = client.push_image(identifier, image)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServiceControlError as exc:
        print(f"error: {exc.reason or exc.code.name}: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"pushed {pushed.image_identifier} {pushed.manifest_digest} "
        f"({pushed.objects} objects, {pushed.bytes} bytes) through {endpoint}"
    )
    return 0


async def _operator_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "connections":
        account = args.account or settings.default_account
        return await _complete_handshake(settings, account, args.connection_arn, args.status)
    if args.command == "domains":
        return await _validate_domains(settings, args.account)
    from .identity_cli import identity_command

    return await identity_command(settings, args)


async def _complete_handshake(settings: Settings, account: str, arn: str, status: str) -> int:
    from .bootstrap import operator_commands
    from .domain import names
    from .domain.errors import DomainError

    if not names.is_account_id(account):
        print("error: --account must be 12 digits", file=sys.stderr)
        return 2
    async with operator_commands(settings) as commands:
        try:
            connection = await commands.connections.complete_handshake(account, arn, status)
        except DomainError as exc:
            print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
            return 1
    print(f"{connection.connection_arn} {connection.status.value}")
    return 0


async def _validate_domains(settings: Settings, account: str | None) -> int:
    from .bootstrap import operator_commands
    from .domain import names

    if account is not None and not names.is_account_id(account):
        print("error: --account must be 12 digits", file=sys.stderr)
        return 2
    async with operator_commands(settings) as commands:
        summary = await commands.dns_validation.run_once(account)
    print(f"issued {summary.issued}, failed {summary.failed}, pending {summary.pending}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
