"""`servicecontrol`: serve the API, run workers, migrate, push images, and finish what
needs an operator (connection handshakes, certificate DNS validation)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import logs
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_json)

    if args.command == "serve":
        from .api.tls import TransportRefused, check_transport

        try:
            check_transport(settings)
        except TransportRefused as exc:
            print(f"servicecontrol: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(_serve(settings))
    if args.command == "worker":
        return asyncio.run(_worker(settings, args.concurrency))
    if args.command == "migrate":
        return _migrate(settings, args.check)
    if args.command == "images":
        if args.sample == (args.archive is not None):
            parser.error("give either an archive or --sample")
        if args.endpoint:
            return _push_through(args.endpoint, args.account, args.archive, args.identifier)
        return _push(settings, args.archive, args.identifier)
    return asyncio.run(_operator_command(settings, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servicecontrol", description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="where embedded defaults keep data")
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: embedded server)")
    parser.add_argument("--s3-endpoint", help="host:port of an S3 endpoint (default: local dir)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC API (with workers, relay and reaper)")
    serve.add_argument("--listen", help="host:port (default 127.0.0.1:50051; port 0 picks one)")
    serve.add_argument("--workers", type=int, help="job workers inside the server (0: none)")
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
    push.add_argument("--account", help="12-digit account to push as (with --endpoint)")

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
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command line's flags on top."""
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.s3_endpoint:
        overrides["s3_endpoint"] = args.s3_endpoint
    if getattr(args, "listen", None):
        overrides["grpc_listen"] = args.listen
    if getattr(args, "workers", None) is not None:
        overrides["workers_in_server"] = args.workers
    if getattr(args, "no_migrate", False):
        overrides["migrate_on_start"] = False
    for flag in ("tls_cert", "tls_key", "tls_client_ca"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    if getattr(args, "insecure", False):
        overrides["insecure"] = True
    return Settings(**overrides)


async def _serve(settings: Settings) -> int:
    from .api.server import run_until_signalled
    from .bootstrap import build, database_url, serve

    with database_url(settings) as url:
        app = await build(settings, url)
        try:

            def ready(port: int) -> None:
                # A machine-readable line for scripts and tests that start the server.
                print(f"SERVICECONTROL_READY port={port}", flush=True)

            await run_until_signalled(lambda stop: serve(app, stop, ready))
        finally:
            await app.close()
    return 0


async def _worker(settings: Settings, concurrency: int) -> int:
    from .api.server import run_until_signalled
    from .bootstrap import build, database_url, work

    with database_url(settings) as url:
        # Migrating is safe from any number of processes at once (an advisory lock
        # serialises it), so a worker never starts against an unmigrated database.
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
    from .bootstrap import object_store

    store = object_store(settings)
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


def _push_through(endpoint: str, account: str | None, archive: Path | None, identifier: str) -> int:
    from servicecontrol_client import ServiceControlClient, ServiceControlError
    from servicecontrol_client.images import docker_archive, sample_image

    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(ServiceControlClient(endpoint, account=account))
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
    return 2


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
