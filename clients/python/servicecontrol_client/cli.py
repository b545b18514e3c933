"""`scctl`: the ServiceControl command line, shaped like `aws apprunner`.

    scctl services create --service-name hello-web --image-identifier hello-web:1.0 --wait
    scctl services delete --service-arn ARN --wait

Exit codes: 0 success; 2 usage error; 3 the API refused the call (the reason and field
violations are printed on stderr); 4 a deadline passed (a call's --timeout or a wait's
--wait-timeout); 5 the waited-on operation ended without succeeding.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from servicecontrol.v1 import resources_pb2 as pb

from .client import DEFAULT_ENDPOINT, ServiceControlClient
from .errors import (
    OperationFailedError,
    OperationTimeoutError,
    RequestTimeoutException,
    ServiceControlError,
)
from .output import LIST_COLUMNS, Progress, header, render, to_dict

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_OPERATION_FAILED = 5

DEFAULT_WAIT_TIMEOUT = 1200.0

Handler = Callable[[ServiceControlClient, argparse.Namespace], int]
M = TypeVar("M", bound=Message)


class UsageError(Exception):
    """Arguments that parse but make no sense together; exits 2 like argparse does."""


# ----- output -----


def _emit(args: argparse.Namespace, data: dict[str, Any]) -> None:
    print(render(data, args.output), flush=True)


def _message_json(text: str, message_type: type[M], flag: str) -> M:
    try:
        return json_format.Parse(text, message_type())
    except json_format.ParseError as exc:
        raise UsageError(f"{flag}: not a valid {message_type.DESCRIPTOR.name}: {exc}") from exc


def _progress() -> Progress:
    return Progress(sys.stderr, sys.stderr.isatty())


def _wait(
    client: ServiceControlClient, args: argparse.Namespace, operation_id: str
) -> pb.Operation:
    progress = _progress()
    try:
        return client.wait_for_operation(
            operation_id, timeout=args.wait_timeout, on_update=progress.update
        )
    finally:
        progress.finish()


def _finish_mutation(
    client: ServiceControlClient, args: argparse.Namespace, response: Message
) -> int:
    """Prints a mutation's answer; with --wait, first waits for its operation and prints
    the service as it ends, with the operation."""
    data = to_dict(response)
    operation_id = getattr(response, "operation_id", "")
    if not (getattr(args, "wait", False) and operation_id):
        _emit(args, data)
        return EXIT_OK
    op = _wait(client, args, operation_id)
    service_arn = op.target_arn or data.get("service", {}).get("serviceArn", "")
    data["service"] = to_dict(client.describe_service(service_arn).service)
    data["operation"] = to_dict(op)
    _emit(args, data)
    if op.status != pb.Operation.SUCCEEDED:
        print(
            f"scctl: operation {op.id} ended {pb.Operation.Status.Name(op.status)}"
            + (f": {op.error.message}" if op.error.message else ""),
            file=sys.stderr,
        )
        return EXIT_OPERATION_FAILED
    return EXIT_OK


# ----- services -----


def _image_configuration(args: argparse.Namespace, base: pb.ImageConfiguration) -> None:
    if args.port is not None:
        base.port = args.port
    if args.start_command is not None:
        base.start_command = args.start_command
    for pair in args.env or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {pair!r}: expected KEY=VALUE")
        base.runtime_environment_variables[key] = value


def _source_flags_given(args: argparse.Namespace) -> bool:
    return any(
        v is not None for v in (args.image_identifier, args.port, args.start_command, args.env)
    )


def _instance(args: argparse.Namespace, base: pb.InstanceConfiguration) -> bool:
    changed = False
    if args.instance_configuration:
        base.CopyFrom(
            _message_json(
                args.instance_configuration, pb.InstanceConfiguration, "--instance-configuration"
            )
        )
        changed = True
    if args.cpu is not None:
        base.cpu, changed = args.cpu, True
    if args.memory is not None:
        base.memory, changed = args.memory, True
    return changed


def services_create(client: ServiceControlClient, args: argparse.Namespace) -> int:
    source = pb.SourceConfiguration()
    if args.source_configuration:
        source.CopyFrom(
            _message_json(
                args.source_configuration, pb.SourceConfiguration, "--source-configuration"
            )
        )
    elif args.image_identifier is None:
        raise UsageError("give --image-identifier or --source-configuration")
    if args.image_identifier is not None:
        source.image_repository.image_identifier = args.image_identifier
    if _source_flags_given(args):
        _image_configuration(args, source.image_repository.image_configuration)
    instance = pb.InstanceConfiguration()
    health = pb.HealthCheckConfiguration()
    if args.health_check_configuration:
        health.CopyFrom(
            _message_json(
                args.health_check_configuration,
                pb.HealthCheckConfiguration,
                "--health-check-configuration",
            )
        )
    response = client.create_service(
        service_name=args.service_name,
        source_configuration=source,
        instance_configuration=instance if _instance(args, instance) else None,
        health_check_configuration=health if args.health_check_configuration else None,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    return _finish_mutation(client, args, response)


def services_describe(client: ServiceControlClient, args: argparse.Namespace) -> int:
    _emit(args, to_dict(client.describe_service(args.service_arn)))
    return EXIT_OK


def services_list(client: ServiceControlClient, args: argparse.Namespace) -> int:
    services = client.iter_services(page_size=args.page_size)
    _emit(args, {"services": [to_dict(s) for s in services]})
    return EXIT_OK


def services_update(client: ServiceControlClient, args: argparse.Namespace) -> int:
    # A given configuration replaces the current one whole, so flags are merged into the
    # current configuration; its etag makes the update refuse if someone changed it since.
    current = client.describe_service(args.service_arn).service
    source: pb.SourceConfiguration | None = None
    if args.source_configuration:
        source = pb.SourceConfiguration()
        source.CopyFrom(
            _message_json(
                args.source_configuration, pb.SourceConfiguration, "--source-configuration"
            )
        )
    if _source_flags_given(args):
        if source is None:
            source = pb.SourceConfiguration()
            source.CopyFrom(current.source_configuration)
        if args.image_identifier is not None:
            source.image_repository.image_identifier = args.image_identifier
        _image_configuration(args, source.image_repository.image_configuration)
    instance = pb.InstanceConfiguration()
    instance.CopyFrom(current.instance_configuration)
    instance_changed = _instance(args, instance)
    health: pb.HealthCheckConfiguration | None = None
    if args.health_check_configuration:
        health = pb.HealthCheckConfiguration()
        health.CopyFrom(
            _message_json(
                args.health_check_configuration,
                pb.HealthCheckConfiguration,
                "--health-check-configuration",
            )
        )
    if source is None and not instance_changed and health is None:
        raise UsageError("nothing to change: give at least one configuration flag")
    response = client.update_service(
        args.service_arn,
        source_configuration=source,
        instance_configuration=instance if instance_changed else None,
        health_check_configuration=health,
        etag=args.etag or current.etag,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    return _finish_mutation(client, args, response)


def services_delete(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.delete_service(
        args.service_arn, etag=args.etag, request_id=args.request_id, validate_only=args.dry_run
    )
    return _finish_mutation(client, args, response)


def services_pause(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.pause_service(
        args.service_arn,
        etag=args.etag,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    return _finish_mutation(client, args, response)


def services_resume(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.resume_service(
        args.service_arn,
        etag=args.etag,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    return _finish_mutation(client, args, response)


# ----- operations -----


def operations_list(client: ServiceControlClient, args: argparse.Namespace) -> int:
    operations = client.iter_operations(args.service_arn, page_size=args.page_size)
    _emit(args, {"operations": [to_dict(o) for o in operations]})
    return EXIT_OK


def operations_describe(client: ServiceControlClient, args: argparse.Namespace) -> int:
    _emit(args, to_dict(client.describe_operation(args.operation_id)))
    return EXIT_OK


def operations_wait(client: ServiceControlClient, args: argparse.Namespace) -> int:
    op = _wait(client, args, args.operation_id)
    _emit(args, {"operation": to_dict(op)})
    return EXIT_OK if op.status == pb.Operation.SUCCEEDED else EXIT_OPERATION_FAILED


# ----- connections, domains, certificates -----


def connections_create(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.create_connection(
        connection_name=args.connection_name,
        provider_type=args.provider_type,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    _emit(args, to_dict(response))
    return EXIT_OK


def connections_list(client: ServiceControlClient, args: argparse.Namespace) -> int:
    connections = client.iter_connections(
        connection_name=args.connection_name, page_size=args.page_size
    )
    _emit(args, {"connections": [to_dict(c) for c in connections]})
    return EXIT_OK


def connections_delete(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.delete_connection(
        args.connection_arn, request_id=args.request_id, validate_only=args.validate_only
    )
    _emit(args, to_dict(response))
    return EXIT_OK


def domains_associate(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.associate_custom_domain(
        args.service_arn,
        domain_name=args.domain_name,
        enable_www_subdomain=args.enable_www_subdomain,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    _emit(args, to_dict(response))
    return EXIT_OK


def domains_disassociate(client: ServiceControlClient, args: argparse.Namespace) -> int:
    response = client.disassociate_custom_domain(
        args.service_arn,
        domain_name=args.domain_name,
        request_id=args.request_id,
        validate_only=args.validate_only,
    )
    _emit(args, to_dict(response))
    return EXIT_OK


def domains_describe(client: ServiceControlClient, args: argparse.Namespace) -> int:
    first = client.describe_custom_domains(args.service_arn)
    domains = list(first.custom_domains)
    if first.next_page_token:
        domains = list(client.iter_custom_domains(args.service_arn))
    _emit(
        args,
        {
            "dnsTarget": first.dns_target,
            "serviceArn": first.service_arn,
            "customDomains": [to_dict(d) for d in domains],
        },
    )
    return EXIT_OK


def certificates_list(client: ServiceControlClient, args: argparse.Namespace) -> int:
    certificates = client.iter_certificates(domain_name=args.domain_name, page_size=args.page_size)
    _emit(args, {"certificates": [to_dict(c) for c in certificates]})
    return EXIT_OK


# ----- events -----


def events_watch(client: ServiceControlClient, args: argparse.Namespace) -> int:
    """One line per event as it arrives (JSON Lines, or table rows)."""
    seen = 0
    if args.max_events == 0:
        return EXIT_OK
    stream = client.watch_events(cursor=args.cursor, resource_arn=args.resource_arn)
    columns = LIST_COLUMNS["events"]
    if args.output == "table":
        # Rows arrive one by one, so columns are tab-separated rather than aligned.
        print("\t".join(header(c) for c in columns), flush=True)
    try:
        for response in stream:
            event = to_dict(response.event)
            if args.output == "table":
                print("\t".join(str(event.get(c, "")) for c in columns), flush=True)
            else:
                print(json.dumps(event, separators=(",", ":")), flush=True)
            seen += 1
            if args.max_events is not None and seen >= args.max_events:
                break
    finally:
        # Closing the generator cancels the stream now rather than at garbage collection.
        stream.close()
    return EXIT_OK


# ----- images -----


def images_push(args: argparse.Namespace) -> int:
    """Pushing writes into the source registry's object store directly, which only the
    server's own CLI can do; the client package does not depend on the server package, so
    it is imported here, on demand."""
    try:
        server_cli = importlib.import_module("servicecontrol_server.cli")
    except ImportError:
        print(
            "scctl: `images push` runs the server-side push (`servicecontrol images push`), "
            "which writes into the source registry's object store directly. The servicecontrol "
            "server package is not installed with this client: run the push on a machine "
            "where it is installed (with the same SERVICECONTROL_* storage settings as the "
            "server), e.g. `servicecontrol images push app.tar name:tag`.",
            file=sys.stderr,
        )
        return EXIT_API_ERROR
    argv = ["images", "push"]
    argv += ["--sample"] if args.sample else []
    argv += [str(args.archive)] if args.archive is not None else []
    return int(server_cli.main([*argv, args.identifier]))


# ----- the parser -----


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global flags. Sub-commands repeat them with suppressed defaults, so they may be
    given before or after the command words, as with `aws`."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--endpoint",
        default=default(os.environ.get("SCCTL_ENDPOINT", DEFAULT_ENDPOINT)),
        help=f"host:port of the API (env SCCTL_ENDPOINT; default {DEFAULT_ENDPOINT})",
    )
    parser.add_argument(
        "--api-key",
        default=default(None),
        help="<key id>.<secret>, sent as `authorization: Bearer KEY`; the key decides the "
        "account (default: env SERVICECONTROL_API_KEY, else the credentials file in "
        "$SERVICECONTROL_DATA_DIR or .servicecontrol)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="use TLS (system roots unless --ca-file)",
    )
    parser.add_argument(
        "--ca-file", type=Path, default=default(None), help="PEM roots to trust; implies --tls"
    )
    parser.add_argument(
        "--output",
        choices=("json", "table"),
        default=default("json"),
        help="json (default) or a human table",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(30.0),
        help="deadline of each API call in seconds, retries included (30)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scctl",
        description="Manage ServiceControl services from the command line.",
        epilog="Exit codes: 0 ok, 2 usage, 3 API error, 4 timeout, 5 operation failed.",
    )
    _global_options(parser, suppress=False)
    leaf_globals = argparse.ArgumentParser(add_help=False)
    _global_options(leaf_globals, suppress=True)

    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--wait",
        action="store_true",
        help="wait for the operation to end, showing its progress on stderr",
    )
    waiting.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        help=f"seconds to wait at most ({DEFAULT_WAIT_TIMEOUT:g})",
    )
    mutating = argparse.ArgumentParser(add_help=False)
    mutating.add_argument(
        "--request-id", default=None, help="idempotency key (default: a fresh UUID)"
    )
    etag = argparse.ArgumentParser(add_help=False)
    etag.add_argument("--etag", default="", help="refuse if the service changed since")
    paging = argparse.ArgumentParser(add_help=False)
    paging.add_argument("--page-size", type=int, default=0, help="items per call (server max)")

    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def command(
        sub: Any,
        name: str,
        handler: Handler | None,
        help_text: str,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> argparse.ArgumentParser:
        leaf: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text, parents=[leaf_globals, *parents]
        )
        leaf.set_defaults(handler=handler)
        return leaf

    # services
    services = groups.add_parser("services", help="create, inspect, change and delete services")
    svc = services.add_subparsers(dest="action", required=True, metavar="ACTION")

    def configuration_flags(leaf: argparse.ArgumentParser) -> None:
        leaf.add_argument("--image-identifier", help="repository:tag in the source registry")
        leaf.add_argument("--port", help="port the application listens on (8080)")
        leaf.add_argument("--start-command")
        leaf.add_argument(
            "--env",
            action="append",
            metavar="KEY=VALUE",
            help="a runtime environment variable (repeatable)",
        )
        leaf.add_argument("--cpu", help="e.g. `1 vCPU` or 1024")
        leaf.add_argument("--memory", help="e.g. `2 GB` or 2048")
        leaf.add_argument(
            "--source-configuration",
            metavar="JSON",
            help="a whole SourceConfiguration in proto JSON",
        )
        leaf.add_argument("--instance-configuration", metavar="JSON")
        leaf.add_argument("--health-check-configuration", metavar="JSON")
        leaf.add_argument(
            "--validate-only", action="store_true", help="check everything, change nothing"
        )

    create = command(
        svc, "create", services_create, "create a service from an image", [waiting, mutating]
    )
    create.add_argument("--service-name", required=True)
    configuration_flags(create)
    describe = command(svc, "describe", services_describe, "describe a service in any state")
    describe.add_argument("--service-arn", required=True)
    command(svc, "list", services_list, "list the account's services", [paging])
    update = command(
        svc,
        "update",
        services_update,
        "change a service's configuration (flags merge into the current one)",
        [waiting, mutating, etag],
    )
    update.add_argument("--service-arn", required=True)
    configuration_flags(update)
    delete = command(svc, "delete", services_delete, "delete a service", [waiting, mutating, etag])
    delete.add_argument("--service-arn", required=True)
    delete.add_argument(
        "--dry-run", action="store_true", help="print the deletion plan and change nothing"
    )
    for name, handler, text in (
        ("pause", services_pause, "pause a RUNNING service"),
        ("resume", services_resume, "resume a PAUSED service on the same URL"),
    ):
        leaf = command(svc, name, handler, text, [waiting, mutating, etag])
        leaf.add_argument("--service-arn", required=True)
        leaf.add_argument("--validate-only", action="store_true")

    # operations
    operations = groups.add_parser("operations", help="follow services' operations")
    ops = operations.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(ops, "list", operations_list, "list a service's operations", [paging])
    leaf.add_argument("--service-arn", required=True)
    leaf = command(ops, "describe", operations_describe, "describe an operation")
    leaf.add_argument("--operation-id", required=True)
    leaf = command(ops, "wait", operations_wait, "wait until an operation ends")
    leaf.add_argument("--operation-id", required=True)
    leaf.add_argument("--wait-timeout", type=float, default=DEFAULT_WAIT_TIMEOUT)

    # connections
    connections = groups.add_parser("connections", help="links to source-code providers")
    conn = connections.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(conn, "create", connections_create, "create a connection", [mutating])
    leaf.add_argument("--connection-name", required=True)
    leaf.add_argument("--provider-type", choices=("GITHUB", "BITBUCKET"), default="GITHUB")
    leaf.add_argument("--validate-only", action="store_true")
    leaf = command(conn, "list", connections_list, "list connections", [paging])
    leaf.add_argument("--connection-name", default="")
    leaf = command(conn, "delete", connections_delete, "delete a connection", [mutating])
    leaf.add_argument("--connection-arn", required=True)
    leaf.add_argument("--validate-only", action="store_true")

    # custom domains
    domains = groups.add_parser("domains", help="custom domains of a service")
    dom = domains.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
        ("associate", domains_associate, "link a domain name to a service"),
        ("disassociate", domains_disassociate, "unlink a domain name from a service"),
    ):
        leaf = command(dom, name, handler, text, [mutating])
        leaf.add_argument("--service-arn", required=True)
        leaf.add_argument("--domain-name", required=True)
        leaf.add_argument("--validate-only", action="store_true")
        if name == "associate":
            leaf.add_argument(
                "--enable-www-subdomain",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="also link www.<domain> (default: yes)",
            )
    leaf = command(dom, "describe", domains_describe, "list a service's custom domains")
    leaf.add_argument("--service-arn", required=True)

    # certificates
    certificates = groups.add_parser("certificates", help="certificate records")
    cert = certificates.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(cert, "list", certificates_list, "list certificate records", [paging])
    leaf.add_argument("--domain-name", default="")

    # events
    events = groups.add_parser("events", help="the account's event stream")
    ev = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(
        ev, "watch", events_watch, "print events as they happen (until --max-events or Ctrl-C)"
    )
    leaf.add_argument("--cursor", default="", help="resume after this cursor")
    leaf.add_argument("--resource-arn", default="", help="only events about this resource")
    leaf.add_argument("--max-events", type=int, default=None, help="stop after N events")

    # images
    images = groups.add_parser("images", help="the source registry")
    img = images.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(
        img,
        "push",
        None,
        "push a `docker save` tarball (runs the server-side `servicecontrol images "
        "push`; needs the server package)",
    )
    leaf.add_argument("archive", type=Path, nargs="?", help="the tarball (omit with --sample)")
    leaf.add_argument("identifier", help="repository:tag")
    leaf.add_argument(
        "--sample", action="store_true", help="push a small generated sample image instead"
    )
    return parser


def _report(exc: ServiceControlError) -> None:
    lines = [f"scctl: {type(exc).__name__}: {exc.message}"]
    if exc.reason:
        lines.append(f"  reason: {exc.reason}")
    lines.append(f"  code: {exc.code.name}")
    lines += [f"  metadata {key}: {value}" for key, value in sorted(exc.metadata.items())]
    lines += [f"  field {v.field}: {v.description}" for v in exc.field_violations]
    lines += [f"  quota {v.subject}: {v.description}" for v in exc.quota_violations]
    lines += [
        f"  precondition {v.type} {v.subject}: {v.description}" for v in exc.precondition_violations
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group == "images":
        return images_push(args)
    root_certificates = args.ca_file.read_bytes() if args.ca_file else None
    try:
        with ServiceControlClient(
            args.endpoint,
            api_key=args.api_key,
            tls=args.tls,
            root_certificates=root_certificates,
            timeout=args.timeout,
        ) as client:
            handler: Handler = args.handler
            return handler(client, args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"scctl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OperationTimeoutError, RequestTimeoutException) as exc:
        print(f"scctl: timed out: {exc.message}", file=sys.stderr)
        return EXIT_TIMEOUT
    except OperationFailedError as exc:
        _report(exc)
        return EXIT_OPERATION_FAILED
    except ServiceControlError as exc:
        _report(exc)
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
