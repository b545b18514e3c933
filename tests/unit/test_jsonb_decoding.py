"""jsonb is decoded by msgspec (adapters/postgres/jsonb.py): the values `json.loads`
gives, integers of any size included; what msgspec refuses and Python reads goes to
`json.loads`; bad JSON is still an error. The memo key of stored configurations
(api/convert._KEY) is their content, whatever the order of their keys."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from servicecontrol_server.adapters.postgres import jsonb
from servicecontrol_server.api import convert

VALUES: list[Any] = [
    {},
    [],
    {"image_repository": {"image_identifier": "shop/web:v1", "port": "8080"}, "on": True},
    {"n": None, "f": 0.1, "e": 1.5e300, "neg": -0.0, "tiny": 5e-324},
    {"big": 123456789012345678901234567890, "small": -9223372036854775809},
    {"text": 'zoë ✓ 𝄞 "quoted" \\ back\nline', "esc": "\u0001"},
    [1, [2, [3, {"k": [4]}]]],
    "just a string",
    42,
]


@pytest.mark.parametrize("value", VALUES)
def test_decodes_what_json_loads_decodes_from_bytes_memoryviews_and_text(value: Any) -> None:
    raw = json.dumps(value)
    for data in (raw.encode(), memoryview(raw.encode()), raw):
        decoded = jsonb.loads(data)
        assert decoded == json.loads(raw)
        assert repr(decoded) == repr(json.loads(raw))  # the same types: ints stay ints


def test_a_number_msgspec_refuses_is_read_as_python_reads_it() -> None:
    assert jsonb.loads(b'{"x": 1e400}') == {"x": math.inf}


def test_bad_json_is_an_error() -> None:
    with pytest.raises(ValueError):
        jsonb.loads(b'{"x": ')


def test_the_memo_key_is_the_content_whatever_the_order_of_keys() -> None:
    first = {"b": 1, "a": {"d": [1, 2], "c": None}}
    second = {"a": {"c": None, "d": [1, 2]}, "b": 1}
    assert convert._KEY(first) == convert._KEY(second)
    assert convert._KEY(first) != convert._KEY({**first, "b": 2})
    assert convert._KEY((first, None)) != convert._KEY((None, first))
    with pytest.raises(TypeError):  # not remembered: from_stored parses it each time
        convert._KEY({1: "not a string key"})
