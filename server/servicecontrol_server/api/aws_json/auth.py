"""Who is calling: AWS Signature Version 4, verified against API keys. The access key id
is the key id and the secret access key is the key's secret, so AWS tools sign with an
API key as they would with IAM keys."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aiohttp import web

from ...application.identity import Identity
from ...domain.identity import ApiKey, NotAuthenticated
from .errors import (
    EXPIRED_TOKEN,
    INCOMPLETE_SIGNATURE,
    INVALID_SIGNATURE,
    MISSING_TOKEN,
    UNRECOGNIZED_CLIENT,
    AwsError,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SIGNING_NAME = "apprunner"
_DATE_RE = re.compile(r"[0-9]{8}")
_DATE_TIME_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
MAX_SKEW = timedelta(minutes=5)


class RequestAuthenticator(Protocol):
    async def authenticate(self, request: web.Request, body: bytes) -> ApiKey:
        """The key that signed the request; AwsError when it is not authenticated."""
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


def _canonical_query(raw: str) -> str:
    pairs = []
    for part in raw.split("&") if raw else ():
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_headers(request: web.Request, signed: tuple[str, ...]) -> str:
    lines = []
    for name in signed:
        values = request.headers.getall(name, [])
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def canonical_request(request: web.Request, signed: tuple[str, ...], payload_hash: str) -> str:
    return "\n".join(
        (
            request.method,
            request.rel_url.raw_path or "/",
            _canonical_query(request.rel_url.raw_query_string),
            _canonical_headers(request, signed),
            ";".join(signed),
            payload_hash,
        )
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _stamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class SigV4Verifier:
    """AWS Signature Version 4, verified against the API key the access key id names: the
    canonical request, the signed headers (host and x-amz-date at least), the payload
    hash, the credential scope (a region served here, this service, the request's date)
    and a clock skew of at most five minutes from the database clock."""

    def __init__(self, identity: Identity, regions: Sequence[str]) -> None:
        self.identity = identity
        self.regions = tuple(regions)

    async def authenticate(self, request: web.Request, body: bytes) -> ApiKey:
        header = request.headers.get("Authorization", "")
        if not header:
            raise AwsError(MISSING_TOKEN, "Missing Authentication Token")
        auth = parse_authorization(header)
        stamp = request.headers.get("X-Amz-Date", "")
        self._check_scope(auth, stamp)
        try:
            key, secret, now = await self.identity.signing_secret(auth.access_key_id)
        except NotAuthenticated as exc:
            if exc.kind == "expired":
                raise AwsError(
                    EXPIRED_TOKEN, "The security token included in the request is expired"
                ) from exc
            raise AwsError(
                UNRECOGNIZED_CLIENT, "The security token included in the request is invalid."
            ) from exc
        signed_at = _stamp(stamp)
        if abs(signed_at - now) > MAX_SKEW:
            raise AwsError(
                INVALID_SIGNATURE,
                f"Signature expired: {stamp} is now earlier than {_fmt(now - MAX_SKEW)} "
                f"({_fmt(now)} - 5 min.)"
                if signed_at < now
                else f"Signature not yet current: {stamp} is still later than "
                f"{_fmt(now + MAX_SKEW)} ({_fmt(now)} + 5 min.)",
            )
        _check_signature(request, auth, stamp, secret, body)
        return key

    def _check_scope(self, auth: SigV4Authorization, stamp: str) -> None:
        if not stamp:
            raise AwsError(
                INCOMPLETE_SIGNATURE,
                "Authorization header requires existence of a 'X-Amz-Date' header.",
            )
        if not _DATE_TIME_RE.fullmatch(stamp):
            raise AwsError(
                INCOMPLETE_SIGNATURE, f"X-Amz-Date {stamp[:40]} is not yyyymmddThhmmssZ."
            )
        if auth.service != SIGNING_NAME:
            raise AwsError(
                INVALID_SIGNATURE,
                f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
            )
        # The scope's region is the request's region: one not served here is refused up
        # front, as a regional endpoint refuses a request signed for another region.
        if auth.region not in self.regions:
            served = ", ".join(f"'{region}'" for region in self.regions)
            raise AwsError(
                INVALID_SIGNATURE,
                f"Credential should be scoped to a valid region, not '{auth.region[:40]}'. "
                f"This endpoint serves {served}.",
            )
        if auth.date != stamp[:8]:
            raise AwsError(
                INVALID_SIGNATURE,
                f"Credential should be scoped to a valid date, not '{auth.date}': "
                f"the request is dated {stamp}.",
            )
        missing = [h for h in ("host", "x-amz-date") if h not in auth.signed_headers]
        if missing or list(auth.signed_headers) != sorted(set(auth.signed_headers)):
            raise AwsError(
                INVALID_SIGNATURE,
                "SignedHeaders must be sorted, distinct and include host and x-amz-date.",
            )


def _check_signature(
    request: web.Request, auth: SigV4Authorization, stamp: str, secret: str, body: bytes
) -> None:
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed = request.headers.get("X-Amz-Content-Sha256")
    if claimed is not None and claimed != payload_hash:
        raise AwsError(
            INVALID_SIGNATURE,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    canonical = canonical_request(request, auth.signed_headers, payload_hash)
    scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
    string_to_sign = "\n".join(
        (ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    expected = hmac.new(
        signing_key(secret, auth.date, auth.region, auth.service),
        string_to_sign.encode(),
        hashlib.sha256,
    ).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise AwsError(
            INVALID_SIGNATURE,
            "The request signature we calculated does not match the signature you "
            "provided. Check your AWS Secret Access Key and signing method. Consult the "
            "service documentation for details.",
        )
