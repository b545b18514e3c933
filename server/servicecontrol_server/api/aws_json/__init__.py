"""App Runner wire compatibility: AWS JSON 1.0 over HTTP, so the AWS CLI and SDKs work
against ServiceControl unchanged. A thin translation onto the application services the
gRPC API uses."""

from __future__ import annotations

# The action modules register their actions in actions.ACTIONS when imported; the
# package imports them all, so the table is whole wherever it is read.
from . import vpc_actions  # noqa: F401
from .http import create_app, start_aws_http

__all__ = ["create_app", "start_aws_http"]
