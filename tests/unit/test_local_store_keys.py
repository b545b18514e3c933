"""The local store's delete loop checks each key with _check_key, a cheaper form of
_parts's checks: both must accept and refuse exactly the same keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicecontrol_server.adapters.objectstore.local_store import UPLOADS, _check_key, _parts

# Keys built from the pieces that matter: separators, dots, the uploads directory, the
# characters refused anywhere, and ordinary names.
PIECES = st.sampled_from(["/", ".", "..", "a", "b.c", UPLOADS, "\\", "\0", "x/"])


def _accepted_by_parts(key: str) -> bool:
    try:
        _parts(key)
    except ValueError:
        return False
    return True


@given(st.lists(PIECES, max_size=8).map("".join))
def test_check_key_accepts_exactly_what_parts_accepts(key: str) -> None:
    accepted = _accepted_by_parts(key)
    if accepted:
        _check_key(key)
    else:
        with pytest.raises(ValueError):
            _check_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/a",
        "a/",
        "a//b",
        "./a",
        "a/./b",
        "a/..",
        "../a",
        "a\\b",
        "a\0b",
        UPLOADS,
        f"{UPLOADS}/x",
        ".",
        "..",
    ],
)
def test_check_key_refuses_what_could_leave_the_bucket(key: str) -> None:
    with pytest.raises(ValueError):
        _check_key(key)


@pytest.mark.parametrize("key", ["a", "a/b", "services/s1/blobs/sha256:ab", ".a", "a..b", "a/.b"])
def test_check_key_accepts_ordinary_keys(key: str) -> None:
    _check_key(key)
