"""JSON parsed by orjson wherever its answer is certainly the one ``json.loads`` gives.

orjson (Rust) parses a small document several times faster than the standard library's json:
0.46 against 2.2 us for bench/validated.lua's order body (timeit; issue 15, sixth pass). It
takes RFC 8259 JSON in UTF-8 and nothing else, a subset of what ``json.loads`` takes, and for
that subset it makes the same values, repeated keys included (the last one wins in both), with
one exception: an integer past 64 bits comes back as a float. ``loads`` therefore asks orjson
only when no run of 19 digits (no 64-bit integer has more) is in the text, and answers
``UNDECIDED`` for anything orjson refuses (NaN, Infinity, a lone surrogate, a BOM, UTF-16,
deeper than it goes): the caller then parses with json, exactly as before. So whatever this
module answers, the verdict and the values are json's (tests/proxy/test_validation_parse.py and
tests/proxy/test_fast_json.py hold the two to the same answers).

json's own parser takes ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON (RFC 8259):
``strict_loads`` and ``STRICT``/``strict_decoder`` are json without them, for the places where
a body or an event must be JSON (validation, a custom FUNCTION's event, ``$input``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import orjson

# Every digit as "0", anything else as " ": a run of 19 digits is then one ``in`` test (0.3 us;
# a regex search took 0.8).
_DIGITS_AS_ZEROS: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN_DIGITS: Final = b"0" * 19


class _Undecided:
    """The answer that means: parse it with json (a singleton; never a JSON value)."""

    def __repr__(self) -> str:
        return "UNDECIDED"


UNDECIDED: Final = _Undecided()


def loads(data: bytes) -> Any:
    """The document json would make of ``data`` (UTF-8 bytes), or ``UNDECIDED``: json decides."""
    if _NINETEEN_DIGITS in data.translate(_DIGITS_AS_ZEROS):
        return UNDECIDED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return UNDECIDED


def _not_json(constant: str) -> Any:
    """json's ``parse_constant`` hook: only ``NaN``, ``Infinity`` and ``-Infinity`` reach it."""
    raise ValueError(f"{constant} is not JSON")


def strict_decoder(object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> json.JSONDecoder:
    """A json decoder that refuses the three non-JSON constants; built once by its callers (a
    decoder per ``json.loads(..., kwarg=...)`` call costs about a microsecond)."""
    return json.JSONDecoder(parse_constant=_not_json, object_pairs_hook=object_pairs_hook)


STRICT: Final = strict_decoder()


def strict_loads(data: bytes | str, decoder: json.JSONDecoder = STRICT) -> Any:
    """``json.loads(data)`` (the same encoding sniffing for bytes, the same refusal of a BOM in
    text) with ``decoder``, so NaN and Infinity are refused (ValueError)."""
    if isinstance(data, bytes | bytearray):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    elif data.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
    return decoder.decode(data)
