"""App Runner wire compatibility: AWS JSON 1.0 over HTTP, so the AWS CLI and SDKs work
against ServiceControl unchanged. A thin translation onto the application services the
gRPC API uses."""

from __future__ import annotations

from .http import create_app, start_aws_http

__all__ = ["create_app", "start_aws_http"]
