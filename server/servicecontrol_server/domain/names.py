"""Names, ids and ARNs, with App Runner's rules."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,39}")
CONNECTION_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,31}")
ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")
RESOURCE_ID_RE = re.compile(r"[0-9a-f]{32}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Labels of 1-63 letters, digits and inner hyphens; an optional leading `*.` wildcard.
DOMAIN_NAME_RE = re.compile(
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
MAX_DOMAIN_NAME_LENGTH = 255
# App Runner's ARN members are at most 1011 characters.
MAX_ARN_LENGTH = 1011

_URL_ALPHABET = string.ascii_lowercase + string.digits


def new_resource_id() -> str:
    """A service or connection id: 32 lowercase hex characters."""
    return secrets.token_hex(16)


def new_url_label() -> str:
    """The random subdomain label of a service URL: 10 lowercase letters and digits."""
    return "".join(secrets.choice(_URL_ALPHABET) for _ in range(10))


def is_service_name(name: str) -> bool:
    return SERVICE_NAME_RE.fullmatch(name) is not None


def is_connection_name(name: str) -> bool:
    return CONNECTION_NAME_RE.fullmatch(name) is not None


def is_account_id(value: str) -> bool:
    return ACCOUNT_ID_RE.fullmatch(value) is not None


def is_uuid(value: str) -> bool:
    return UUID_RE.fullmatch(value.lower()) is not None


def is_domain_name(value: str) -> bool:
    return len(value) <= MAX_DOMAIN_NAME_LENGTH and DOMAIN_NAME_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Arn:
    """An App Runner style ARN: arn:aws:apprunner:<region>:<account>:<kind>/<name>[/<id>]."""

    region: str
    account_id: str
    kind: str
    name: str
    resource_id: str

    def __str__(self) -> str:
        path = f"{self.kind}/{self.name}" if self.name else self.kind
        return f"arn:aws:apprunner:{self.region}:{self.account_id}:{path}/{self.resource_id}"


_ARN_RE = re.compile(
    r"arn:aws:apprunner:(?P<region>[a-z0-9-]{1,63}):(?P<account>[0-9]{12}):"
    r"(?P<kind>service|connection|certificate)/(?:(?P<name>[A-Za-z0-9_-]{1,40})/)?(?P<id>[0-9a-f]{32})"
)


def parse_arn(value: str, kind: str) -> Arn | None:
    """Parses an ARN of the given kind; None when it is malformed or of another kind."""
    match = _ARN_RE.fullmatch(value)
    if match is None or match["kind"] != kind:
        return None
    name = match["name"] or ""
    if kind in ("service", "connection") and not name:
        return None
    return Arn(match["region"], match["account"], kind, name, match["id"])


def service_arn(region: str, account_id: str, name: str, service_id: str) -> str:
    return str(Arn(region, account_id, "service", name, service_id))


def connection_arn(region: str, account_id: str, name: str, connection_id: str) -> str:
    return str(Arn(region, account_id, "connection", name, connection_id))


def certificate_arn(region: str, account_id: str, certificate_id: str) -> str:
    return str(Arn(region, account_id, "certificate", "", certificate_id))


MAX_REPOSITORY_LENGTH = 255
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# A manifest digest, as the registry names an image by its content.
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


# The registry hosts of App Runner's image identifiers: a private ECR registry
# (`<account>.dkr.ecr.<region>.amazonaws.com/`) or ECR Public (`public.ecr.aws/`). Both
# name a repository of the source registry, which stands in for them.
_ECR_HOST = re.compile(r"[0-9]{12}\.dkr\.ecr\.[a-z]{2}(-[a-z]+)+-[0-9]\.amazonaws\.com/")
ECR_PUBLIC_HOST = "public.ecr.aws/"


def image_registry_type(identifier: str) -> str:
    """The ImageRepositoryType an identifier's form calls for: ECR_PUBLIC for
    `public.ecr.aws/...`, ECR otherwise."""
    return "ECR_PUBLIC" if identifier.startswith(ECR_PUBLIC_HOST) else "ECR"


def source_image_name(identifier: str) -> str:
    """The identifier without its registry host: the name in the source registry."""
    if identifier.startswith(ECR_PUBLIC_HOST):
        return identifier[len(ECR_PUBLIC_HOST) :]
    host = _ECR_HOST.match(identifier)
    return identifier[host.end() :] if host else identifier


def is_digest(reference: str) -> bool:
    """Whether an image reference (what parse_image_identifier returns beside the
    repository) is a manifest digest rather than a tag."""
    return DIGEST_RE.fullmatch(reference) is not None


def parse_image_identifier(identifier: str) -> tuple[str, str]:
    """`[<registry host>/]<repository>[:<tag>|@sha256:<digest>]` -> (repository, tag or
    digest); a missing tag means `latest`. The registry host, if any, is App Runner's
    (see source_image_name)."""
    if identifier.startswith(ECR_PUBLIC_HOST) and "/" not in source_image_name(identifier):
        raise ValueError(
            f"invalid image identifier {identifier!r}: an ECR Public image is "
            "public.ecr.aws/<registry alias>/<repository>[:<tag>]"
        )
    identifier = source_image_name(identifier)
    first, slash, _ = identifier.partition("/")
    if slash and "." in first:
        # As in Docker, a first component with a dot is a registry host.
        raise ValueError(
            f"invalid image identifier {identifier!r}: the registry {first!r} is not "
            "<account>.dkr.ecr.<region>.amazonaws.com or public.ecr.aws"
        )
    if "@" in identifier:
        repository, _, tag = identifier.partition("@")
        if not DIGEST_RE.fullmatch(tag):
            raise ValueError(
                f"invalid image identifier {identifier!r}: a digest is sha256:<64 lowercase "
                "hex digits>"
            )
    else:
        repository, colon, tag = identifier.rpartition(":")
        if not colon:
            repository, tag = identifier, "latest"
    if not repository:
        raise ValueError(f"invalid image identifier {identifier!r}: the repository is empty")
    if len(repository) > MAX_REPOSITORY_LENGTH:
        raise ValueError(
            f"invalid image identifier {identifier!r}: the repository is longer than "
            f"{MAX_REPOSITORY_LENGTH} characters"
        )
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(
            f"invalid image identifier {identifier!r}: the repository {repository!r} must be "
            "lowercase letters and digits, separated by single '.', '_', '-' or '/'"
        )
    if not is_digest(tag) and not _TAG.fullmatch(tag):
        raise ValueError(
            f"invalid image identifier {identifier!r}: the tag {tag!r} must be 1-128 "
            "letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        )
    return repository, tag
