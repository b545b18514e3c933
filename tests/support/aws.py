"""Talking to the App Runner endpoint as AWS clients do, and holding every answer to
App Runner's API model as botocore ships it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.model import OperationModel, ServiceModel, Shape

from tests.support.waiting import wait_until

REGION = "us-east-1"
CONTENT_TYPE = "application/x-amz-json-1.0"
# Errors any AWS JSON endpoint may answer besides those an operation's model declares.
PROTOCOL_ERRORS = frozenset(
    {
        "UnknownOperationException",
        "SerializationException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "ThrottlingException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "AccessDeniedException",
        "ServiceUnavailableException",
    }
)


def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("apprunner")


def shape_problems(shape: Shape, value: Any, path: str = "$") -> list[str]:
    """Everything about `value` (a decoded AWS JSON body) that App Runner's model does not
    allow: unknown members, missing required members, wrong types, enum values outside
    the model, lengths and ranges outside its bounds. Patterns are not checked: the model's
    own ServiceId pattern (a dashed UUID) contradicts its length (32)."""
    if value is None:
        return [f"{path}: null"]
    check = _CHECKS.get(shape.type_name)
    if check is None:
        return [f"{path}: shape type {shape.type_name} is not handled by this checker"]
    return check(shape, value, path)


def _structure(shape: Any, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object for {shape.name}, got {type(value).__name__}"]
    problems = [
        f"{path}.{name}: not a member of {shape.name}"
        for name in value
        if name not in shape.members
    ]
    problems += [
        f"{path}.{name}: required by {shape.name}, missing"
        for name in shape.required_members
        if name not in value
    ]
    for name, item in value.items():
        if name in shape.members:
            problems += shape_problems(shape.members[name], item, f"{path}.{name}")
    return problems


def _list(shape: Any, value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{path}: expected a list, got {type(value).__name__}"]
    problems = _bounds(shape, path, len(value), "length")
    for i, item in enumerate(value):
        problems += shape_problems(shape.member, item, f"{path}[{i}]")
    return problems


def _map(shape: Any, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected a map, got {type(value).__name__}"]
    problems: list[str] = []
    for key, item in value.items():
        problems += shape_problems(shape.key, key, f"{path}<key {key}>")
        problems += shape_problems(shape.value, item, f"{path}[{key}]")
    return problems


# Enums App Runner itself answers in another spelling than its model lists: a custom
# domain's status is lowercase on the wire (`pending_certificate_dns_validation`), and so is
# an auto scaling configuration's (`active`, `inactive`; Terraform waits on those).
WIRE_SPELLING: dict[str, Callable[[str], str]] = {
    "CustomDomainAssociationStatus": str.upper,
    "AutoScalingConfigurationStatus": str.upper,
}


def _string(shape: Any, value: Any, path: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{path}: expected a string, got {type(value).__name__}"]
    problems = _bounds(shape, path, len(value), "length")
    spelling = WIRE_SPELLING.get(shape.name)
    if spelling is not None:
        if value != value.lower():
            problems.append(f"{path}: {value!r} is not in App Runner's lowercase spelling")
        value = spelling(value)
    if shape.enum and value not in shape.enum:
        problems.append(f"{path}: {value!r} is not one of {shape.enum}")
    return problems


def _integer(shape: Any, value: Any, path: str) -> list[str]:
    if not isinstance(value, int) or isinstance(value, bool):
        return [f"{path}: expected an integer, got {type(value).__name__}"]
    return _bounds(shape, path, value, "value")


def _boolean(shape: Any, value: Any, path: str) -> list[str]:
    if not isinstance(value, bool):
        return [f"{path}: expected a boolean, got {type(value).__name__}"]
    return []


def _number(shape: Any, value: Any, path: str) -> list[str]:
    # AWS JSON 1.0 sends timestamps as epoch seconds: a JSON number.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return [f"{path}: expected a number, got {type(value).__name__}"]
    return []


_CHECKS: dict[str, Callable[[Any, Any, str], list[str]]] = {
    "structure": _structure,
    "list": _list,
    "map": _map,
    "string": _string,
    "integer": _integer,
    "long": _integer,
    "boolean": _boolean,
    "timestamp": _number,
    "double": _number,
    "float": _number,
}


def _bounds(shape: Shape, path: str, n: int, what: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and n < low:
        return [f"{path}: {what} {n} below the model's minimum {low}"]
    if high is not None and n > high:
        return [f"{path}: {what} {n} above the model's maximum {high}"]
    return []


def body_problems(operation: str, status: int, body: bytes, model: ServiceModel) -> list[str]:
    """A whole answer of `operation`: a success against its output shape, an error
    against the errors its model declares (plus the protocol's own)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return [f"{operation}: body is not JSON: {body[:200]!r}"]
    if operation in model.operation_names:
        op: OperationModel | None = model.operation_model(operation)
    else:
        op = None
    if 200 <= status < 300:
        if op is None:
            return [f"{operation}: answered {status} but is not an App Runner operation"]
        assert op.output_shape is not None
        return [f"{operation}: {p}" for p in shape_problems(op.output_shape, decoded)]
    if not isinstance(decoded, dict):
        return [f"{operation}: error body is not an object"]
    error_type = str(decoded.get("__type", "")).rpartition("#")[2]
    declared = {e.name: e for e in op.error_shapes} if op is not None else {}
    if error_type not in declared and error_type not in PROTOCOL_ERRORS:
        return [f"{operation}: error {error_type!r} is not declared by the model"]
    problems = [
        f"{operation}: error member {k!r} is not in the error shape"
        for k in decoded
        if k not in ("__type", "Message")
    ]
    message = decoded.get("Message")
    if not isinstance(message, str) or len(message) > 600:
        problems.append(f"{operation}: error Message must be a string of at most 600 characters")
    return problems


@dataclass
class Answer:
    operation: str
    status: int
    # Lower-case names: HTTP header names are case-insensitive.
    headers: Mapping[str, str]
    body: bytes

    @staticmethod
    def of(operation: str, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return Answer(operation, status, {k.lower(): v for k, v in headers.items()}, body)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Every answer the tests receive, from boto3, the AWS CLI (its stdout is not an
    answer body, so not recorded) or raw HTTP; `problems()` checks all of them."""

    answers: list[Answer] = field(default_factory=list)

    def record(self, answer: Answer) -> None:
        self.answers.append(answer)

    def problems(self) -> list[str]:
        model = service_model()
        out: list[str] = []
        for a in self.answers:
            out += body_problems(a.operation, a.status, a.body, model)
            if not a.headers.get("x-amzn-requestid"):
                out.append(f"{a.operation}: no x-amzn-RequestId header")
            if not a.headers.get("content-type", "").startswith(CONTENT_TYPE):
                out.append(f"{a.operation}: Content-Type {a.headers.get('content-type')!r}")
        return out


class AppRunnerClient:
    """A real boto3 App Runner client against the local endpoint. Its calls run in a
    thread: the server under test runs on this event loop and must keep serving."""

    def __init__(
        self,
        port: int,
        recorder: Recorder,
        credentials: tuple[str, str],
        *,
        region: str = REGION,
    ) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self.recorder = recorder
        self.client = boto3.client(
            "apprunner",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            # One attempt: a retried 5xx would hide the first answer from the recorder.
            config=Config(retries={"total_max_attempts": 1}),
        )
        self.client.meta.events.register("after-call.apprunner", self._after_call)

    def _after_call(self, http_response: Any, model: OperationModel, **_: Any) -> None:
        self.recorder.record(
            Answer.of(
                model.name,
                http_response.status_code,
                dict(http_response.headers),
                http_response.content,
            )
        )

    @cached_property
    def exceptions(self) -> Any:
        return self.client.exceptions

    def __getattr__(self, name: str) -> Callable[..., Awaitable[dict[str, Any]]]:
        method = getattr(self.client, name)

        async def call(**kwargs: Any) -> dict[str, Any]:
            return await asyncio.to_thread(method, **kwargs)

        return call

    async def wait_status(self, arn: str, status: str, timeout: float = 20) -> dict[str, Any]:
        """The service once DescribeService reports `status`."""
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            seen.update((await self.describe_service(ServiceArn=arn))["Service"])
            return bool(seen["Status"] == status)

        await wait_until(reached, timeout=timeout, interval=0.1)
        return seen


async def raw_call(
    port: int,
    target: str | None,
    body: bytes | dict[str, Any] | None = None,
    *,
    credentials: tuple[str, str] | None = None,
    recorder: Recorder | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
) -> Answer:
    """A request as any HTTP client would send it, signed with SigV4 when given the
    credentials (access key id, secret access key)."""
    url = f"http://127.0.0.1:{port}{path}"
    data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    request_headers = {"Content-Type": CONTENT_TYPE}
    if target is not None:
        request_headers["X-Amz-Target"] = target
    if credentials is not None:
        signed = AWSRequest(method=method, url=url, data=data, headers=request_headers)
        SigV4Auth(Credentials(*credentials), "apprunner", REGION).add_auth(signed)
        request_headers = dict(signed.headers.items())
    request_headers.update(headers or {})
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=request_headers) as response,
    ):
        answer = Answer.of(
            (target or "").partition(".")[2] or "(none)",
            response.status,
            dict(response.headers),
            await response.read(),
        )
    if recorder is not None:
        recorder.record(answer)
    return answer


# ----- the AWS CLI and Terraform: every credential they are given is set here -----

AWS_CLI = Path(sys.executable).parent / "aws"
TERRAFORM_PROVIDER = "registry.terraform.io/hashicorp/aws"
TERRAFORM_PROVIDER_VERSION = "5.100.0"
# Where a filesystem mirror of the hashicorp/aws provider may be installed.
TERRAFORM_MIRROR_ROOTS = (
    "/opt/tf-plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
)


def aws_cli_environment(credentials: tuple[str, str]) -> dict[str, str]:
    """The environment of an `aws` process: an API key as the AWS credentials, the test
    region, no profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=credentials[0],
        AWS_SECRET_ACCESS_KEY=credentials[1],
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


async def aws_cli(
    port: int,
    credentials: tuple[str, str],
    service: str,
    operation: str,
    *args: str,
    region: str = REGION,
) -> tuple[int, bytes, str]:
    """Runs `aws <service> <operation> ...` against the endpoint, signed with
    `credentials` (an API key's id and secret) for `region`; (exit code, stdout, stderr).
    The process is awaited, never waited for: the server may run on this event loop."""
    proc = await asyncio.create_subprocess_exec(
        str(AWS_CLI),
        service,
        operation,
        *args,
        "--endpoint-url",
        f"http://127.0.0.1:{port}",
        "--region",
        region,
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=aws_cli_environment(credentials),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


def terraform_binary() -> str | None:
    return shutil.which("terraform") or (
        "/usr/local/bin/terraform" if Path("/usr/local/bin/terraform").is_file() else None
    )


def terraform_mirror() -> Path | None:
    """The first known root holding hashicorp/aws at the pinned version."""
    for root in TERRAFORM_MIRROR_ROOTS:
        path = Path(root).expanduser()
        if (path / TERRAFORM_PROVIDER / TERRAFORM_PROVIDER_VERSION).is_dir():
            return path
    return None


def terraform_provider_block(credentials: tuple[str, str]) -> str:
    """The `terraform` and `provider "aws"` blocks. The App Runner endpoint is not among
    them: it is the provider process's `AWS_ENDPOINT_URL_APPRUNNER`
    (terraform_provider_environment), since an `endpoints` block costs the provider
    seconds of CPU in every plan and apply."""
    return f"""
terraform {{
  required_providers {{
    aws = {{
      source  = "hashicorp/aws"
      version = "{TERRAFORM_PROVIDER_VERSION}"
    }}
  }}
}}

provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "{credentials[0]}"
  secret_key                  = "{credentials[1]}"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}}
"""


def terraform_environment(workdir: Path, mirror: Path) -> dict[str, str]:
    """A CLI config that installs providers only from `mirror`, and an environment that
    names it; no credentials or profile leak in from the machine."""
    config = workdir / "terraform.rc"
    config.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(
        TF_CLI_CONFIG_FILE=str(config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def terraform_provider_environment(terraform_env: dict[str, str], port: int) -> dict[str, str]:
    """The terraform commands' environment (no credentials or profile from the machine)
    with App Runner's endpoint, for a provider process started on its own or for the
    provider processes terraform starts."""
    return {**terraform_env, "AWS_ENDPOINT_URL_APPRUNNER": f"http://127.0.0.1:{port}"}
