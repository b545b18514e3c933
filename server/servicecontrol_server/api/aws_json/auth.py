"""Who is calling: the seam where AWS Signature Version 4 is checked.

Until API keys exist every well-formed SigV4 request is accepted and belongs to the
default account. A verifier of signatures against per-account access keys implements
the same `RequestAuthenticator` protocol and replaces `AcceptAnySignature`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from .errors import INCOMPLETE_SIGNATURE, INVALID_SIGNATURE, MISSING_TOKEN, AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
SIGNING_NAME = "apprunner"
_DATE_RE = re.compile(r"[0-9]{8}")
_DATE_TIME_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")


class RequestAuthenticator(Protocol):
    async def authenticate(self, request: web.Request) -> str:
        """The account the request acts for; AwsError when it is not authenticated."""
        ...


@dataclass(frozen=True)
class SigV4Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str) -> SigV4Authorization:
    """Splits a SigV4 Authorization header; IncompleteSignatureException when it is not one."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AwsError(
            INCOMPLETE_SIGNATURE,
            f"Unsupported authorization type {algorithm or '(none)'}; expected {ALGORITHM}.",
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            fields[key] = value
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise AwsError(
            INCOMPLETE_SIGNATURE,
            "Authorization header requires "
            + ", ".join(f"'{k}'" for k in missing)
            + f" parameter{'s' if len(missing) > 1 else ''}. Authorization={header[:200]}",
        )
    scope = fields["Credential"].split("/")
    if (
        len(scope) != 5
        or not scope[0]
        or not _DATE_RE.fullmatch(scope[1])
        or not scope[2]
        or scope[4] != "aws4_request"
    ):
        raise AwsError(
            INCOMPLETE_SIGNATURE,
            "Credential must have the form "
            "<access key id>/<yyyymmdd>/<region>/<service>/aws4_request.",
        )
    return SigV4Authorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=tuple(h for h in fields["SignedHeaders"].lower().split(";") if h),
        signature=fields["Signature"],
    )


class AcceptAnySignature:
    """Checks that a request is SigV4-signed for this endpoint, not that the signature is
    right, and maps every caller to one account."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region

    async def authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header:
            raise AwsError(MISSING_TOKEN, "Missing Authentication Token")
        auth = parse_authorization(header)
        stamp = request.headers.get("X-Amz-Date", "")
        if not stamp and not request.headers.get("Date"):
            raise AwsError(
                INCOMPLETE_SIGNATURE,
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header.",
            )
        if stamp and not _DATE_TIME_RE.fullmatch(stamp):
            raise AwsError(
                INCOMPLETE_SIGNATURE, f"X-Amz-Date {stamp[:40]} is not yyyymmddThhmmssZ."
            )
        if auth.service != SIGNING_NAME:
            raise AwsError(
                INVALID_SIGNATURE,
                f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
            )
        # ARNs carry the server's region: a request signed for another one would only
        # ever find nothing, so it is refused up front, as a regional endpoint does.
        if auth.region != self.region:
            raise AwsError(
                INVALID_SIGNATURE,
                f"Credential should be scoped to a valid region, not '{auth.region}'. "
                f"This endpoint serves '{self.region}'.",
            )
        return self.account_id
