"""fast_json.loads answers only where orjson's document is json's, value for value and type for
type, and leaves the rest to json (issue 15, sixth pass); JWT claims read through it are the
claims json reads."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from propylon_proxy import fast_json
from propylon_proxy.authorizers import jwt as verifying

EDGES = [
    b'{"exp": 1796322033, "sub": "user-1", "aud": ["a", "b"], "scope": "read write"}',
    b'{"n": 9223372036854775807}',  # 19 digits: left to json (orjson's limit is near)
    b'{"n": 18446744073709551616}',  # past 64 bits: orjson would make a float
    b'{"n": -9223372036854775809}',
    b'{"n": 1e400}',
    b'{"n": NaN}',
    b'{"n": -Infinity}',
    b'{"s": "\\ud800"}',  # a lone surrogate, escaped: json takes it, orjson does not
    b'{"s": "\xed\xa0\x80"}',
    b'{"s": "\xff"}',
    b"\xef\xbb\xbf{}",
    b'{"a": 1, "a": 2}',  # a repeat: the last one wins in both
    b'{"a": {"b": [1, 2.5, -0.0, true, null]}}',
    b"[" * 5000 + b"]" * 5000,
    b"",
    b" ",
    b"nul",
    b'"\\u00e9\\u0000"',
]


def json_outcome(data: bytes) -> Any:
    try:
        return repr(json.loads(data))  # repr: 1.0 is not 1, nan is nan
    except (ValueError, RecursionError):
        return "refused"


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
def test_an_answer_is_json_s_and_the_rest_is_left_to_json(data: bytes) -> None:
    answer = fast_json.loads(data)
    if answer is not fast_json.UNDECIDED:
        assert repr(answer) == json_outcome(data)


def test_past_64_bits_and_non_rfc_documents_are_left_to_json() -> None:
    for data in (b'{"n": 18446744073709551616}', b'{"n": NaN}', b'{"s": "\\ud800"}', b"\xef\xbb\xbf{}"):
        assert fast_json.loads(data) is fast_json.UNDECIDED
    assert fast_json.loads(b'{"exp": 1796322033}') == {"exp": 1796322033}


def test_random_documents_are_json_s() -> None:
    rng = random.Random(7519)
    pieces = ["1", "-12", "3.25", "1e-7", "123456789012345678", "1234567890123456789", '"x"', '"\\u0041"', "[", "]"]
    pieces += ["{", "}", ":", ",", '"k"', "true", "null", " ", "NaN", '"\\udc00"', "0.1e999"]
    for _ in range(5000):
        data = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 10))).encode()
        answer = fast_json.loads(data)
        if answer is not fast_json.UNDECIDED:
            assert repr(answer) == json_outcome(data), data


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
def test_jwt_claims_are_the_claims_json_reads(data: bytes) -> None:
    try:
        expected = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        expected = None
    claims = verifying._claims(data)
    assert repr(claims) == repr(expected if isinstance(expected, dict) else None)
