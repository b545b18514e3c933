"""Validation and defaults of service configurations, as App Runner defines them.

Configurations travel as plain dicts (the JSON stored in Postgres) with App Runner's
field names in snake_case; the API layer converts them from and to protobuf."""

from __future__ import annotations

import re
from typing import Any

from .errors import FieldViolation
from .names import image_registry_type, parse_arn, parse_image_identifier

CPU_RE = re.compile(r"256|512|1024|2048|4096|(0\.25|0\.5|1|2|4) vCPU")
MEMORY_RE = re.compile(r"512|1024|2048|3072|4096|6144|8192|10240|12288|(0\.5|1|2|3|4|6|8|10|12) GB")
REPOSITORY_URL_RE = re.compile(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)+")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
PORT_RE = re.compile(r"[0-9]{1,5}")
MAX_START_COMMAND = 51200
MAX_ENV_VARS = 100
# App Runner's RoleArn pattern (an IAM role of any partition).
ROLE_ARN_RE = re.compile(
    r"arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):iam::[0-9]{12}:(role|role/service-role)/"
    r"[\w+=,.@\-/]{1,1000}",
    re.ASCII,
)
MAX_ROLE_ARN = 1024

# Both spellings App Runner accepts, in vCPU and in GB.
CPU_VCPU = {"256": 0.25, "512": 0.5, "1024": 1, "2048": 2, "4096": 4}
MEMORY_GB = {
    "512": 0.5,
    "1024": 1,
    "2048": 2,
    "3072": 3,
    "4096": 4,
    "6144": 6,
    "8192": 8,
    "10240": 10,
    "12288": 12,
}
# The memory sizes App Runner offers with each CPU size.
ALLOWED_MEMORY_GB: dict[float, tuple[float, ...]] = {
    0.25: (0.5, 1),
    0.5: (1,),
    1: (2, 3, 4),
    2: (4, 6),
    4: (8, 10, 12),
}

DEFAULT_INSTANCE = {"cpu": "1 vCPU", "memory": "2 GB", "instance_role_arn": ""}
DEFAULT_HEALTH_CHECK = {
    "protocol": "TCP",
    "path": "/",
    "interval": 5,
    "timeout": 2,
    "healthy_threshold": 1,
    "unhealthy_threshold": 5,
}


def validate_source(
    source: dict[str, Any], prefix: str = "source_configuration"
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    image = source.get("image_repository")
    code = source.get("code_repository")
    if image is None and code is None:
        return [
            FieldViolation(prefix, "exactly one of image_repository or code_repository is required")
        ]
    if image is not None:
        violations += _validate_image_repository(image, f"{prefix}.image_repository")
        config = image.get("image_configuration") or {}
        violations += _validate_image_configuration(
            config, f"{prefix}.image_repository.image_configuration"
        )
    violations += role_arn_violations(
        (source.get("authentication_configuration") or {}).get("access_role_arn") or "",
        f"{prefix}.authentication_configuration.access_role_arn",
    )
    if code is not None:
        url = code.get("repository_url", "")
        if not REPOSITORY_URL_RE.fullmatch(url or ""):
            violations.append(
                FieldViolation(
                    f"{prefix}.code_repository.repository_url",
                    "must be an https:// repository URL",
                )
            )
        version = code.get("source_code_version") or {}
        if not version.get("value"):
            violations.append(
                FieldViolation(f"{prefix}.code_repository.source_code_version.value", "required")
            )
        connection = (source.get("authentication_configuration") or {}).get("connection_arn", "")
        field = f"{prefix}.authentication_configuration.connection_arn"
        if not connection:
            violations.append(FieldViolation(field, "required for a code repository source"))
        elif parse_arn(connection, "connection") is None:
            violations.append(FieldViolation(field, "not a connection ARN"))
    return violations


def _validate_image_repository(image: dict[str, Any], prefix: str) -> list[FieldViolation]:
    ident = image.get("image_identifier", "")
    field = f"{prefix}.image_identifier"
    if not ident:
        return [FieldViolation(field, "required")]
    try:
        parse_image_identifier(ident)
    except ValueError as exc:
        return [FieldViolation(field, str(exc))]
    declared = image.get("image_repository_type") or ""
    needed = image_registry_type(ident)
    if declared and declared != needed:
        return [
            FieldViolation(
                f"{prefix}.image_repository_type",
                f"{declared} does not match the image identifier, which needs {needed}",
            )
        ]
    return []


def _validate_image_configuration(config: dict[str, Any], prefix: str) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    env = config.get("runtime_environment_variables") or {}
    if len(env) > MAX_ENV_VARS:
        violations.append(
            FieldViolation(f"{prefix}.runtime_environment_variables", f"at most {MAX_ENV_VARS}")
        )
    for name in env:
        if not ENV_NAME_RE.fullmatch(name) or name.startswith("AWSAPPRUNNER"):
            violations.append(
                FieldViolation(
                    f"{prefix}.runtime_environment_variables[{name[:40]}]",
                    "names are letters, digits and _, not starting with a digit or AWSAPPRUNNER",
                )
            )
    command = config.get("start_command") or ""
    if "\n" in command or "\r" in command:
        violations.append(FieldViolation(f"{prefix}.start_command", "must be a single line"))
    port = config.get("port") or ""
    if port and (not PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535):
        violations.append(FieldViolation(f"{prefix}.port", "must be a port number 1-65535"))
    if len(config.get("start_command") or "") > MAX_START_COMMAND:
        violations.append(
            FieldViolation(f"{prefix}.start_command", f"at most {MAX_START_COMMAND} characters")
        )
    return violations


def validate_instance(
    instance: dict[str, Any], prefix: str = "instance_configuration"
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    cpu = instance.get("cpu") or ""
    if cpu and not CPU_RE.fullmatch(cpu):
        violations.append(
            FieldViolation(f"{prefix}.cpu", "one of 256|512|1024|2048|4096 or 0.25|0.5|1|2|4 vCPU")
        )
    memory = instance.get("memory") or ""
    if memory and not MEMORY_RE.fullmatch(memory):
        violations.append(FieldViolation(f"{prefix}.memory", "one of 512..12288 or 0.5..12 GB"))
    if not violations:
        violations += _pair_violations(
            cpu or DEFAULT_INSTANCE["cpu"], memory or DEFAULT_INSTANCE["memory"], prefix
        )
    violations += role_arn_violations(
        instance.get("instance_role_arn") or "", f"{prefix}.instance_role_arn"
    )
    return violations


def vcpus(cpu: str) -> float:
    """`1024` or `1 vCPU` → 1."""
    return CPU_VCPU[cpu] if cpu in CPU_VCPU else float(cpu.removesuffix(" vCPU"))


def gigabytes(memory: str) -> float:
    """`2048` or `2 GB` → 2."""
    return MEMORY_GB[memory] if memory in MEMORY_GB else float(memory.removesuffix(" GB"))


def _size(value: float) -> str:
    return f"{value:g}"


def _pair_violations(cpu: str, memory: str, prefix: str) -> list[FieldViolation]:
    """Only the CPU and memory combinations App Runner offers (either spelling of each)."""
    offered = ALLOWED_MEMORY_GB[vcpus(cpu)]
    if gigabytes(memory) in offered:
        return []
    sizes = [f"{_size(gb)} GB" for gb in offered]
    takes = sizes[0] if len(sizes) == 1 else f"{', '.join(sizes[:-1])} or {sizes[-1]}"
    return [
        FieldViolation(
            f"{prefix}.memory",
            f"{_size(gigabytes(memory))} GB is not offered with {_size(vcpus(cpu))} vCPU, "
            f"which takes {takes}",
        )
    ]


def role_arn_violations(value: str, field: str) -> list[FieldViolation]:
    if value and (len(value) > MAX_ROLE_ARN or not ROLE_ARN_RE.fullmatch(value)):
        return [FieldViolation(field, "must be the ARN of an IAM role")]
    return []


def validate_health_check(
    health: dict[str, Any], prefix: str = "health_check_configuration"
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    for name in ("interval", "timeout", "healthy_threshold", "unhealthy_threshold"):
        value = health.get(name) or 0
        if value and not 1 <= value <= 20:
            violations.append(FieldViolation(f"{prefix}.{name}", "must be 1-20"))
    path = health.get("path") or ""
    if path and (not path.startswith("/") or len(path) > 51200):
        violations.append(FieldViolation(f"{prefix}.path", "must start with /"))
    return violations


def with_instance_defaults(instance: dict[str, Any]) -> dict[str, Any]:
    return {k: instance.get(k) or v for k, v in DEFAULT_INSTANCE.items()}


def with_health_check_defaults(health: dict[str, Any]) -> dict[str, Any]:
    return {k: health.get(k) or v for k, v in DEFAULT_HEALTH_CHECK.items()}


def image_identifier(source: dict[str, Any]) -> str | None:
    image = source.get("image_repository")
    return image.get("image_identifier") if image else None


def connection_arn(source: dict[str, Any]) -> str | None:
    if source.get("code_repository") is None:
        return None
    return (source.get("authentication_configuration") or {}).get("connection_arn") or None
