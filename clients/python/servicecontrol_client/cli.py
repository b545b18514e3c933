"""`scctl`: the ServiceControl command line, shaped like `aws apprunner`.

    scctl services create --service-name hello-web --image-identifier hello-web:1.0 --wait
    scctl services delete --service-arn ARN --wait

Exit codes: 0 success; 2 usage error; 3 the API refused the call (the reason and field
violations are printed on stderr); 4 a deadline passed (a call's --timeout or a wait's
--wait-timeout); 5 the waited-on operation ended without succeeding.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import argcomplete
from google.protobuf import json_format
from google.protobuf.message import Message

from servicecontrol.v1 import resources_pb2 as pb

from . import __version__
from .client import ServiceControlClient
from .config import (
    DEFAULT_ENDPOINT,
    DEFAULT_PROFILE,
    KEYS,
    OUTPUTS,
    ConfigError,
    config_path,
    describe,
    load_profile,
    read_config,
    write_setting,
)
from .errors import (
    OperationFailedError,
    OperationTimeoutError,
    RequestTimeoutException,
    ServiceControlError,
    ServiceUnavailableException,
)
from .images import docker_archive, sample_image
from .output import (
    LIST_COLUMNS,
    Progress,
    QueryError,
    TransferProgress,
    header,
    query,
    render,
    to_dict,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_OPERATION_FAILED = 5
EXIT_UNREACHABLE = 6
EXIT_DECLINED = 1
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    success
  1    declined at a confirmation prompt: nothing changed
  2    usage or configuration error (bad flags, profile, endpoint, CA file)
  3    the API refused the call (reason and field violations on stderr)
  4    a deadline passed (--timeout of a call, --wait-timeout of a wait)
  5    the waited-on operation ended without succeeding
  6    the server could not be reached
  130  interrupted (Ctrl-C); a wait prints the command that resumes it"""

DEFAULT_WAIT_TIMEOUT = 1200.0

Handler = Callable[[ServiceControlClient, argparse.Namespace], int]
M = TypeVar("M", bound=Message)


class UsageError(Exception):
    """Arguments that parse but make no sense together; exits 2 like argparse does."""


class WaitInterrupted(Exception):
    """Ctrl-C while waiting on an operation, which goes on without us."""

    def __init__(self, operation_id: str) -> None:
        super().__init__(operation_id)
        self.operation_id = operation_id


# ----- output -----


def _emit(args: argparse.Namespace, data: dict[str, Any]) -> None:
    print(render(query(data, getattr(args, "query", None)), args.output), flush=True)


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
    except KeyboardInterrupt:
        raise WaitInterrupted(operation_id) from None
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
    if not args.dry_run and not args.yes and sys.stdin.isatty():
        plan = client.delete_service(args.service_arn, etag=args.etag, validate_only=True)
        print(_deletion_plan(plan), file=sys.stderr)
        sys.stderr.write(f"Delete service {plan.service.service_name}? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("scctl: not deleted", file=sys.stderr)
            return EXIT_DECLINED
    response = client.delete_service(
        args.service_arn, etag=args.etag, request_id=args.request_id, validate_only=args.dry_run
    )
    return _finish_mutation(client, args, response)


def _deletion_plan(response: Any) -> str:
    """What a delete would do, from DeleteService's validate_only answer."""
    service = response.service
    lines = [f"Deleting {service.service_name} ({service.service_arn}) will:"]
    plan = to_dict(response.plan) if response.HasField("plan") else {}
    lines += [f"  {key}: {_plan_value(value)}" for key, value in plan.items()]
    if len(lines) == 1:
        lines.append("  stop it and delete its image copy and configuration")
    return "\n".join(lines)


def _plan_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


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


def images_push(client: ServiceControlClient, args: argparse.Namespace) -> int:
    """Pushes through the server at --endpoint, so the image lands where the server
    looks; a push that broke off resumes where it stopped when run again."""
    if args.sample == (args.archive is not None):
        raise UsageError("give either an archive or --sample")
    progress = TransferProgress(sys.stderr, sys.stderr.isatty(), f"pushing {args.identifier}")
    with contextlib.ExitStack() as stack:
        if args.archive is None:
            image = sample_image(args.identifier)
        else:
            try:
                image = stack.enter_context(docker_archive(args.archive, args.identifier))
            except (ValueError, OSError) as exc:
                raise UsageError(str(exc)) from exc
        try:
            response = client.push_image(args.identifier, image, on_progress=progress.update)
        finally:
            progress.finish()
    _emit(args, to_dict(response))
    return EXIT_OK


# ----- the parser -----


def _global_options(parser: argparse.ArgumentParser, *, leaf: bool) -> None:
    """The global flags, documented once (in `scctl --help`). Commands accept them too,
    hidden from their help, so they may come before or after the command words, as with
    `aws`. Unset flags stay None so that the environment and the profile can fill them."""

    def text(value: str) -> str:
        return argparse.SUPPRESS if leaf else value

    default = argparse.SUPPRESS if leaf else None
    parser.add_argument(
        "--endpoint",
        default=default,
        help=text(
            "the API: host:port, http://host:port (plaintext) or https://host:port (TLS) "
            f"(env SCCTL_ENDPOINT; default {DEFAULT_ENDPOINT})"
        ),
    )
    parser.add_argument(
        "--api-key",
        default=default,
        help=text(
            "<key id>.<secret>, sent as `authorization: Bearer KEY`; the key decides the "
            "account (env SCCTL_API_KEY; default: env SERVICECONTROL_API_KEY, else the "
            "credentials file in $SERVICECONTROL_DATA_DIR or .servicecontrol)"
        ),
    )
    parser.add_argument(
        "--region",
        default=default,
        help=text(
            "the region every call acts in, sent as `x-servicecontrol-region` "
            "(env SCCTL_REGION; default: the server's default region)"
        ),
    )
    parser.add_argument(
        "--tls",
        action="store_const",
        const=True,
        default=default,
        help=text("use TLS with a host:port endpoint (system roots unless --ca-file)"),
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        default=default,
        help=text("PEM roots to trust; implies TLS (env SCCTL_CA_FILE)"),
    )
    parser.add_argument(
        "--cert-file",
        type=Path,
        default=default,
        help=text("PEM client certificate for mutual TLS; implies TLS (env SCCTL_CERT_FILE)"),
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=default,
        help=text("PEM private key of --cert-file (env SCCTL_KEY_FILE)"),
    )
    parser.add_argument(
        "--output",
        choices=OUTPUTS,
        default=default,
        help=text("json (default), yaml, table or text (tab-separated) (env SCCTL_OUTPUT)"),
    )
    parser.add_argument(
        "--query",
        default=default,
        metavar="JMESPATH",
        help=text(
            "a JMESPath expression applied to the JSON answer before printing, as the AWS "
            "CLI's --query (e.g. 'services[].serviceName')"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default,
        help=text("deadline of each API call in seconds, retries included (30)"),
    )
    parser.add_argument(
        "--profile",
        default=default,
        help=text(
            "the profile of the config file to use (env SCCTL_PROFILE; default: default); "
            "see `scctl configure`"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scctl",
        description="Manage ServiceControl services from the command line.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    _global_options(parser, leaf=False)
    leaf_globals = argparse.ArgumentParser(add_help=False)
    _global_options(leaf_globals, leaf=True)

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
            name,
            help=help_text,
            description=help_text,
            parents=[leaf_globals, *parents],
            epilog="Global flags (--endpoint, --api-key, --output, --query, --profile, ...): "
            "see `scctl --help`.",
        )
        leaf.set_defaults(handler=handler)
        return leaf

    # services
    services = groups.add_parser("services", help="create, inspect, change and delete services")
    svc = services.add_subparsers(dest="action", required=True, metavar="ACTION")

    def service_flag(leaf: argparse.ArgumentParser) -> None:
        leaf.add_argument(
            "--service",
            "--service-arn",
            dest="service_arn",
            required=True,
            metavar="NAME_OR_ARN",
            help="the service: its name (in the account) or its ARN",
        )

    def validate_only(leaf: argparse.ArgumentParser) -> None:
        leaf.add_argument(
            "--validate-only", action="store_true", help="check everything, change nothing"
        )

    def configuration_flags(leaf: argparse.ArgumentParser) -> None:
        leaf.add_argument("--image-identifier", help="repository:tag in the source registry")
        leaf.add_argument("--port", help="port the application listens on (8080)")
        leaf.add_argument("--start-command", help="the command that starts the application")
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
        leaf.add_argument(
            "--instance-configuration",
            metavar="JSON",
            help="a whole InstanceConfiguration in proto JSON",
        )
        leaf.add_argument(
            "--health-check-configuration",
            metavar="JSON",
            help="a whole HealthCheckConfiguration in proto JSON",
        )
        validate_only(leaf)

    create = command(
        svc, "create", services_create, "create a service from an image", [waiting, mutating]
    )
    create.add_argument("--service-name", required=True, help="the new service's name")
    configuration_flags(create)
    describe = command(svc, "describe", services_describe, "describe a service in any state")
    service_flag(describe)
    command(svc, "list", services_list, "list the account's services", [paging])
    update = command(
        svc,
        "update",
        services_update,
        "change a service's configuration (flags merge into the current one)",
        [waiting, mutating, etag],
    )
    service_flag(update)
    configuration_flags(update)
    delete = command(svc, "delete", services_delete, "delete a service", [waiting, mutating, etag])
    service_flag(delete)
    delete.add_argument(
        "--dry-run", action="store_true", help="print the deletion plan and change nothing"
    )
    delete.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="do not ask for confirmation (scctl asks only when stdin is a terminal)",
    )
    for name, handler, text in (
        ("pause", services_pause, "pause a RUNNING service"),
        ("resume", services_resume, "resume a PAUSED service on the same URL"),
    ):
        leaf = command(svc, name, handler, text, [waiting, mutating, etag])
        service_flag(leaf)
        validate_only(leaf)

    # operations
    operations = groups.add_parser("operations", help="follow services' operations")
    ops = operations.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(ops, "list", operations_list, "list a service's operations", [paging])
    service_flag(leaf)
    leaf = command(ops, "describe", operations_describe, "describe an operation")
    leaf.add_argument("--operation-id", required=True, help="the operation's id")
    leaf = command(ops, "wait", operations_wait, "wait until an operation ends")
    leaf.add_argument("--operation-id", required=True, help="the operation's id")
    leaf.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        help=f"seconds to wait at most ({DEFAULT_WAIT_TIMEOUT:g})",
    )

    # connections
    connections = groups.add_parser("connections", help="links to source-code providers")
    conn = connections.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(conn, "create", connections_create, "create a connection", [mutating])
    leaf.add_argument("--connection-name", required=True, help="the new connection's name")
    leaf.add_argument(
        "--provider-type",
        choices=("GITHUB", "BITBUCKET"),
        default="GITHUB",
        help="the source-code provider (GITHUB)",
    )
    validate_only(leaf)
    leaf = command(conn, "list", connections_list, "list connections", [paging])
    leaf.add_argument("--connection-name", default="", help="only the connection of this name")
    leaf = command(conn, "delete", connections_delete, "delete a connection", [mutating])
    leaf.add_argument("--connection-arn", required=True, help="the connection's ARN")
    validate_only(leaf)

    # custom domains
    domains = groups.add_parser("domains", help="custom domains of a service")
    dom = domains.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
        ("associate", domains_associate, "link a domain name to a service"),
        ("disassociate", domains_disassociate, "unlink a domain name from a service"),
    ):
        leaf = command(dom, name, handler, text, [mutating])
        service_flag(leaf)
        leaf.add_argument("--domain-name", required=True, help="e.g. app.example.com")
        validate_only(leaf)
        if name == "associate":
            leaf.add_argument(
                "--enable-www-subdomain",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="also link www.<domain> (default: yes)",
            )
    leaf = command(dom, "describe", domains_describe, "list a service's custom domains")
    service_flag(leaf)

    # certificates
    certificates = groups.add_parser("certificates", help="certificate records")
    cert = certificates.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf = command(cert, "list", certificates_list, "list certificate records", [paging])
    leaf.add_argument("--domain-name", default="", help="only records of this domain name")

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
        images_push,
        "push a `docker save` tarball into the source registry, through the server at "
        "--endpoint (resumes a push that broke off; a progress bar on a terminal)",
    )
    leaf.add_argument("archive", type=Path, nargs="?", help="the tarball (omit with --sample)")
    leaf.add_argument("identifier", help="repository:tag")
    leaf.add_argument(
        "--sample", action="store_true", help="push a small generated sample image instead"
    )

    # configure
    configure = command(
        groups,
        "configure",
        None,
        "set up a profile: prompts for its settings (or `configure set|get|list`)",
    )
    configure.add_argument(
        "action",
        nargs="?",
        choices=("set", "get", "list"),
        help="set KEY VALUE, get KEY, list (the resolved settings); none: prompt",
    )
    configure.add_argument("words", nargs="*", metavar="KEY [VALUE]", help="for set and get")

    # completion
    completion = command(
        groups,
        "completion",
        None,
        'print the shell completion script: eval "$(scctl completion bash)"',
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")
    return parser


def configure_command(args: argparse.Namespace) -> int:
    profile_name = args.profile or os.environ.get("SCCTL_PROFILE") or DEFAULT_PROFILE
    if args.action == "set":
        if len(args.words) != 2:
            raise UsageError("usage: scctl configure set KEY VALUE")
        path = write_setting(profile_name, args.words[0], args.words[1])
        print(f"{args.words[0]} set in profile {profile_name} of {path}", file=sys.stderr)
        return EXIT_OK
    if args.action == "get":
        if len(args.words) != 1 or args.words[0] not in KEYS:
            raise UsageError(f"usage: scctl configure get KEY, KEY one of {', '.join(KEYS)}")
        value = getattr(load_profile(args.profile, {}), args.words[0])
        print("" if value is None else value)
        return EXIT_OK
    if args.action == "list":
        profile = load_profile(args.profile, _overrides(args))
        for key, value in describe(profile):
            print(f"{key:10} {value}")
        print(f"(profile {profile_name} of {config_path()})")
        return EXIT_OK
    if args.words:
        raise UsageError("configure takes words only after set or get")
    return _configure_prompt(profile_name)


def _configure_prompt(profile_name: str) -> int:
    # Prompting, as `aws configure`: Enter keeps the value shown in brackets.
    current = (
        dict(read_config().items(profile_name)) if read_config().has_section(profile_name) else {}
    )
    for key in ("endpoint", "api_key", "output", "ca_file"):
        shown = current.get(key, "")
        sys.stderr.write(f"{key} ({KEYS[key]}) [{shown}]: ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            break
        if line.strip():
            write_setting(profile_name, key, line.strip())
    print(f"profile {profile_name} saved in {config_path()}", file=sys.stderr)
    return EXIT_OK


def completion_command(args: argparse.Namespace) -> int:
    print(argcomplete.shellcode(["scctl"], shell=args.shell))
    return EXIT_OK


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        key: getattr(args, key, None)
        for key in (
            "endpoint",
            "api_key",
            "tls",
            "ca_file",
            "cert_file",
            "key_file",
            "output",
            "timeout",
            "region",
        )
    }


def _resolve_service(client: ServiceControlClient, args: argparse.Namespace) -> None:
    """--service NAME becomes the ARN of the account's (not deleted) service of that name."""
    value = getattr(args, "service_arn", None)
    if not value or value.startswith("arn:"):
        return
    for service in client.iter_services():
        if service.service_name == value:
            args.service_arn = service.service_arn
            return
    raise ServiceNameNotFound(
        f"no service named {value!r} in the key's account (give its name or its ARN)"
    )


class ServiceNameNotFound(Exception):
    pass


def _resume_command(args: argparse.Namespace, operation_id: str) -> str:
    words = ["scctl", "operations", "wait", "--operation-id", operation_id]
    for flag in ("endpoint", "profile"):
        value = getattr(args, flag, None)
        if value:
            words += [f"--{flag}", shlex.quote(str(value))]
    return " ".join(words)


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


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one exit code per failure
    parser = build_parser()
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)

    def usage(message: str) -> int:
        print(f"scctl: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        if args.group == "configure":
            return configure_command(args)
        if args.group == "completion":
            return completion_command(args)
        profile = load_profile(args.profile, _overrides(args))
        target, secure = profile.target()
        root_certificates = profile.root_certificates()
        client_certificate = profile.client_certificate()
    except (ConfigError, UsageError) as exc:
        return usage(str(exc))
    args.output = profile.output
    try:
        with ServiceControlClient(
            target,
            api_key=profile.api_key,
            tls=secure,
            root_certificates=root_certificates,
            certificate_chain=client_certificate[0] if client_certificate else None,
            private_key=client_certificate[1] if client_certificate else None,
            timeout=profile.timeout,
            region=profile.region,
        ) as client:
            _resolve_service(client, args)
            handler: Handler = args.handler
            return handler(client, args)
    except (UsageError, QueryError) as exc:
        parser.print_usage(sys.stderr)
        return usage(str(exc))
    except ServiceNameNotFound as exc:
        print(f"scctl: {exc}", file=sys.stderr)
        return EXIT_API_ERROR
    except WaitInterrupted as exc:
        print(
            f"\nscctl: stopped waiting; operation {exc.operation_id} goes on. Resume waiting "
            f"with:\n  {_resume_command(args, exc.operation_id)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (OperationTimeoutError, RequestTimeoutException) as exc:
        print(f"scctl: timed out: {exc.message}", file=sys.stderr)
        return EXIT_TIMEOUT
    except OperationFailedError as exc:
        _report(exc)
        return EXIT_OPERATION_FAILED
    except ServiceUnavailableException as exc:
        if exc.reason:  # the server answered: one of its backends is down
            _report(exc)
            return EXIT_API_ERROR
        scheme = "TLS" if secure else "plaintext"
        print(
            f"scctl: cannot reach the server at {target} ({scheme}): {exc.message}\n"
            "  hint: is `servicecontrol serve` running there? Set the endpoint with "
            "--endpoint, SCCTL_ENDPOINT or `scctl configure`; https:// means TLS, "
            "http:// plaintext.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except ServiceControlError as exc:
        _report(exc)
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
