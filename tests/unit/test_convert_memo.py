"""Stored configurations are converted to messages through a memo by content: the same
messages as the JSON parser gives, never shared between callers."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol_server.api import convert

SOURCES: list[dict[str, Any]] = [
    {},
    {"image_repository": {}},
    {
        "image_repository": {
            "image_identifier": "shop/web:v1",
            "image_configuration": {"port": "8080", "runtime_environment_variables": {"A": "1"}},
        },
        "auto_deployments_enabled": True,
        "not_a_field": 3,
    },
]


@pytest.mark.parametrize("source", SOURCES)
def test_a_stored_value_converts_as_the_json_parser_does(source: dict[str, Any]) -> None:
    for _ in range(2):  # a miss, then a hit
        remembered = pb.Service()
        convert.from_stored(source, remembered.source_configuration)
        parsed = pb.Service()
        json_format.ParseDict(source, parsed.source_configuration, ignore_unknown_fields=True)
        assert remembered == parsed
        assert remembered.HasField("source_configuration") == parsed.HasField(
            "source_configuration"
        )


def test_a_converted_message_is_not_shared() -> None:
    source = SOURCES[2]
    first = pb.Service()
    convert.from_stored(source, first.source_configuration)
    first.source_configuration.image_repository.image_identifier = "changed"
    second = pb.Service()
    convert.from_stored(source, second.source_configuration)
    assert second.source_configuration.image_repository.image_identifier == "shop/web:v1"


def test_different_contents_do_not_collide_and_the_memo_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(convert, "_PARSED", {})
    monkeypatch.setattr(convert, "_PARSED_MAX", 3)
    for i in range(10):
        out = pb.Service()
        convert.from_stored(
            {"image_repository": {"image_identifier": f"x:{i}"}}, out.source_configuration
        )
        assert out.source_configuration.image_repository.image_identifier == f"x:{i}"
        assert len(convert._PARSED) <= 3
