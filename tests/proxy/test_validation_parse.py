"""validation.parse: the flat-object fast path (json's C decoder alone, keys counted in the text)
refuses exactly the bodies the per-object duplicate-key hook refuses, and returns the same
document for the rest (issue 15, perf-policy2); the flat body's first try with orjson (sixth pass)
leaves every verdict and every value, down to int against float, to what json makes of it."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from propylon_proxy import validation


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def hooked(body: bytes) -> Any:
    """The parse before the fast path: every object through the duplicate-key hook, and json's
    non-JSON constants (NaN, Infinity) refused."""
    return json.loads(validation._text(body), object_pairs_hook=validation._no_duplicates, parse_constant=_not_json)


BODIES = [
    b'{"item": "green tea, loose leaf", "quantity": 3, "tags": ["a", "b", "c"]}',
    b'{"item": "tea", "quantity": 1, "quantity": -5}',  # a repeated key
    b'{"a" : 1 , "a"\t:\n2}',  # whitespace before the colons
    b'{"a": "x\\":y", "b": "\\":"}',  # escaped quotes followed by colons inside strings
    b'{"a": "x\\":y", "a": 2}',  # ... and a repeat: the extra matches must not hide it
    b'{"a": ":", "b": " :"}',
    b'{"a": "{", "a": 1}',  # a brace inside a string: two "{" in the text, the hook decides
    b'{"a": {"b": 1, "b": 2}}',  # a repeat in a nested object
    b'{"a": {"b": 1}, "c": {"b": 2}}',  # the same key in two objects is no repeat
    b'[{"a": 1, "a": 2}]',  # the one object is not the document
    b'[1, "{", 2]',
    b'["\\":", 1]',
    b"{}",
    b"[]",
    b'"just a string"',
    b"3",
    b'{"\\u0061": 1, "a": 2}',  # the same key written two ways
    b'{"a": 1, "\\u0061": 2}',
    '{"ключ": 1, "ключ": 2}'.encode(),
    b"\xef\xbb\xbf" + b'{"a": 1, "a": 2}',  # a BOM: bytes for json to sniff, the hook decides
    '{"a": 1, "a": 2}'.encode("utf-16"),
    b'{"a": 1,}',  # not JSON
    b"{",
    b"",
    b"[" * 100_000,  # too deep
    # What orjson refuses or reads otherwise, for json to decide:
    b'{"a": 18446744073709551616}',  # past 64 bits: orjson makes it a float
    b'{"a": -9223372036854775809}',
    b'{"a": 18446744073709551615, "b": 12345678901234567890123}',
    b'{"a": 1e400, "b": -1e400}',  # infinities: json takes them, RFC 8259 parsers do not
    b'{"a": NaN}',
    b'{"a": Infinity, "b": -Infinity}',
    b'{"a": "\\ud800", "b": "\\udc80x"}',  # lone surrogates, escaped
    b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate (json's surrogatepass takes it)
    b'{"a": "\xff"}',  # not UTF-8
    b'{"a": "\x01"}',  # a raw control character in a string
    b"\xef\xbb\xbf" + b'{"a": 1}',  # a BOM before a valid object
    b'{"a": 0.1e-400, "b": -0.0, "c": 1.5E+3, "d": 2.2250738585072014e-308}',
    b'{"a": 1.7976931348623157e308, "b": 5e-324, "c": 0.30000000000000004}',
    b'{"a": "\\u0000", "b": "\x7f", "c": "\\/"}',
    b'{"a": 01}',
    b'{"a": 1}\x00',
    b" \t\n\r" + b'{"a": 1}' + b" \r\n",
    b'{"a": true, "b": false, "c": null, "d": [], "e": ""}',
    b"[" * 1500 + b"]" * 1500,  # deeper than orjson goes: json decides
]


def outcome(parse: Any, body: bytes) -> Any:
    try:
        return ("document", repr(parse(body)))  # repr: 1.0 is not 1, nan is nan
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__ if isinstance(exc, validation._Duplicate) else "invalid")


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_fast_path_decides_as_the_hook_does(body: bytes) -> None:
    assert outcome(validation.parse, body) == outcome(hooked, body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "a", "x": NaN}',
        b'{"a": Infinity}',
        b"[-Infinity]",
        b"NaN",
        b'{"a": {"b": [NaN]}}',
        b'{"a": NaN, "a": 1}',
    ],
)
def test_nan_and_infinity_are_not_json(body: bytes) -> None:
    # RFC 8259 has no NaN or Infinity; Python's json takes them, a validated route must not.
    with pytest.raises(ValueError):
        validation.parse(body)
    assert not validation.body_valid(lambda document: True, body)


def test_numbers_past_double_range_are_still_json() -> None:
    assert validation.body_valid(lambda document: True, b'{"a": 1e400, "b": 12345678901234567890123}')


def test_a_repeated_key_is_refused_on_the_fast_path_too() -> None:
    with pytest.raises(validation._Duplicate):
        validation.parse(b'{"item": "tea", "quantity": 1, "quantity": -5}')


_PIECES = [
    '"a"',
    '"b"',
    '"\\u0061"',
    ":",
    ",",
    " ",
    "1",
    "-0",
    "1.5e3",
    "12345678901234567890",
    "1e999",
    "NaN",
    "null",
    "true",
    '"x\\":"',
    '"{"',
    "[",
    "]",
    "{",
    "}",
    '"\\ud800"',
    '"\u00e9"',
]


def test_random_bodies_decide_as_the_hook_does() -> None:
    rng = random.Random(15)
    for _ in range(3000):
        inner = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 12)))
        for text in ("{" + inner + "}", inner, '{"a": ' + inner + "}"):
            body = text.encode("utf-8", "surrogatepass")
            assert outcome(validation.parse, body) == outcome(hooked, body), body


def test_random_numbers_are_the_values_json_makes() -> None:
    # orjson parses the numbers of a flat body: each must be json's value and type, to the bit.
    rng = random.Random(8259)
    for _ in range(3000):
        mantissa = str(rng.randint(0, 10 ** rng.randint(1, 18)))
        if rng.random() < 0.5:
            point = rng.randint(0, len(mantissa) - 1)
            mantissa = mantissa[: point + 1] + "." + (mantissa[point + 1 :] or "0")
        number = ("-" if rng.random() < 0.3 else "") + mantissa
        if rng.random() < 0.5:
            number += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330))
        body = b'{"n": %s, "list": [%s, 1]}' % (number.encode(), number.encode())
        assert outcome(validation.parse, body) == outcome(hooked, body), body


def test_spaced_key_ends_and_colons_in_strings_still_count_every_key() -> None:
    # Colons in strings leave the proof to the key ends; a repeat whose colon follows a space, or
    # one beside a colon in a string, is still found.
    with pytest.raises(validation._Duplicate):
        validation.parse(b'{"a":1,"a" :2}')
    with pytest.raises(validation._Duplicate):
        validation.parse(b'{"a":1,"a"\n:2, "b": "x"}')
    with pytest.raises(validation._Duplicate):
        validation.parse(b'{"a":"12:30","a" :2}')
    assert validation.parse(b'{"at": "12:30", "url": "http://x"}') == {"at": "12:30", "url": "http://x"}
