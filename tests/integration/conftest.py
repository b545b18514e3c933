"""Fixtures the integration tests share beyond tests/conftest.py's."""

from tests.support.aws_json import aws, recorder

__all__ = ["aws", "recorder"]
