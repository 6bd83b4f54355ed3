"""validation.parse: the flat-object fast path (json's C decoder alone, keys counted in the text)
refuses exactly the bodies the per-object duplicate-key hook refuses, and returns the same
document for the rest (issue 15, perf-policy2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from propylon_proxy import validation


def hooked(body: bytes) -> Any:
    """The parse before the fast path: every object through the duplicate-key hook."""
    return json.loads(validation._text(body), object_pairs_hook=validation._no_duplicates)


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
]


def outcome(parse: Any, body: bytes) -> Any:
    try:
        return ("document", parse(body))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__ if isinstance(exc, validation._Duplicate) else "invalid")


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_fast_path_decides_as_the_hook_does(body: bytes) -> None:
    assert outcome(validation.parse, body) == outcome(hooked, body)


def test_a_repeated_key_is_refused_on_the_fast_path_too() -> None:
    with pytest.raises(validation._Duplicate):
        validation.parse(b'{"item": "tea", "quantity": 1, "quantity": -5}')
