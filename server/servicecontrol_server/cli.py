"""`servicecontrol`: serve the API, run workers, migrate, push images."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from . import logs
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="servicecontrol", description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="where embedded defaults keep data")
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: embedded server)")
    parser.add_argument("--s3-endpoint", help="host:port of an S3 endpoint (default: local dir)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC API (with workers, relay and reaper)")
    serve.add_argument("--listen", help="host:port (default 127.0.0.1:50051; port 0 picks one)")
    serve.add_argument("--workers", type=int, help="job workers inside the server (0: none)")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate on start")

    worker = sub.add_parser("worker", help="run job workers only")
    worker.add_argument("--concurrency", type=int, default=2)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--check", action="store_true", help="only report pending differences")

    images = sub.add_parser("images", help="the source registry")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    push = images_sub.add_parser("push", help="push a `docker save` tarball")
    push.add_argument("archive", type=Path)
    push.add_argument("identifier", help="repository:tag")

    args = parser.parse_args(argv)
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
    settings = Settings(**overrides)
    logs.configure(settings.log_level, settings.log_json)

    if args.command == "serve":
        return asyncio.run(_serve(settings))
    if args.command == "worker":
        return asyncio.run(_worker(settings, args.concurrency))
    if args.command == "migrate":
        return _migrate(settings, args.check)
    if args.command == "images":
        return _push(settings, args.archive, args.identifier)
    return 2


async def _serve(settings: Settings) -> int:
    from .api.server import run_until_signalled, serve
    from .bootstrap import build, database_url

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
    from .api.server import run_until_signalled, work
    from .bootstrap import build, database_url

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


def _push(settings: Settings, archive: Path, identifier: str) -> int:
    from .application.images import push_docker_archive
    from .bootstrap import object_store

    store = object_store(settings)
    try:
        pushed = push_docker_archive(store, settings.source_bucket, archive, identifier)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"pushed {pushed.repository}:{pushed.tag} {pushed.manifest_digest} "
        f"({pushed.objects} objects, {pushed.bytes} bytes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
