"""How a test reaches a server's two endpoints as a caller: the gRPC channel credentials
and call metadata, and the signing of App Runner requests. Every fuzzer gets its access
here, so a change in how callers authenticate is a change to this module alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.aws import ACCESS_KEY, CONTENT_TYPE, REGION, SECRET_KEY
from tests.support.server import ACCOUNT


@dataclass(frozen=True)
class ApiAccess:
    grpc_target: str
    aws_url: str
    account: str = ACCOUNT
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def channel(self) -> grpc.Channel:
        """A blocking channel (for callers outside the server's event loop)."""
        return grpc.insecure_channel(self.grpc_target)

    def metadata(self, account: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("x-servicecontrol-account", account or self.account),)

    def aws_headers(
        self, target: str | None, body: bytes, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The headers of a signed `POST /` to the App Runner endpoint."""
        headers = {"Content-Type": CONTENT_TYPE}
        if target is not None:
            headers["X-Amz-Target"] = target
        request = AWSRequest(method="POST", url=self.aws_url, data=body, headers=headers)
        SigV4Auth(Credentials(self.access_key, self.secret_key), "apprunner", self.region).add_auth(
            request
        )
        signed = dict(request.headers.items())
        signed.update(extra or {})
        return signed


def api_access(grpc_port: int, aws_port: int) -> ApiAccess:
    return ApiAccess(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{aws_port}/")
