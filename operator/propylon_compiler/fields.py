"""Reading typed values out of manifest bodies that may not match their schema.

The CRD schema (``schemas``) is the real gatekeeper; these readers exist so that the compiler
never raises on a body the schema let through (or on a schema that is still incomplete): a
value of the wrong type becomes a diagnostic at its field path and the reader returns None.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from propylon_compiler import diagnostics, objects

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class Fields:
    """Typed access to one object's body; wrong types are reported against that object."""

    def __init__(self, obj: objects.Object, reporter: objects.Reporter) -> None:
        self.obj = obj
        self.reporter = reporter

    def error(self, path: str, message: str, *, reason: str = "Invalid", breaks: bool = True) -> None:
        self.reporter.error(self.obj, path, message, reason=reason, breaks=breaks)

    def _typed(self, mapping: dict[str, Any], key: str, path: str, types: tuple[type, ...], what: str) -> Any:
        value = mapping.get(key)
        if value is None:
            return None
        # bool is an int in Python, but never a number in a manifest.
        value_ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not value_ok:
            self.error(join(path, key), f"expected {what}, got {_describe(value)}")
            return None
        return value

    def string(self, mapping: dict[str, Any], key: str, path: str) -> str | None:
        return typing.cast("str | None", self._typed(mapping, key, path, (str,), "a string"))

    def integer(self, mapping: dict[str, Any], key: str, path: str) -> int | None:
        return typing.cast("int | None", self._typed(mapping, key, path, (int,), "an integer"))

    def number(self, mapping: dict[str, Any], key: str, path: str) -> float | None:
        value = self._typed(mapping, key, path, (int, float), "a number")
        return None if value is None else float(value)

    def boolean(self, mapping: dict[str, Any], key: str, path: str) -> bool | None:
        return typing.cast("bool | None", self._typed(mapping, key, path, (bool,), "true or false"))

    def mapping(self, mapping: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
        return typing.cast("dict[str, Any] | None", self._typed(mapping, key, path, (dict,), "a mapping"))

    def strings(self, mapping: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        """A list of strings; wrong items are reported one by one and skipped."""
        items = self._typed(mapping, key, path, (list,), "a list")
        out: list[str] = []
        for i, item in enumerate(items or ()):
            if isinstance(item, str):
                out.append(item)
            else:
                self.error(f"{join(path, key)}[{i}]", f"expected a string, got {_describe(item)}")
        return tuple(out)

    def string_map(self, mapping: dict[str, Any], key: str, path: str) -> tuple[tuple[str, str], ...]:
        """A mapping of string to string (numbers and booleans are not silently converted)."""
        items = self.mapping(mapping, key, path)
        out: list[tuple[str, str]] = []
        for name, value in (items or {}).items():
            if isinstance(value, str):
                out.append((str(name), value))
            else:
                self.error(join(join(path, key), str(name)), f"expected a string, got {_describe(value)}")
        return tuple(out)


    def header_map(self, mapping: dict[str, Any], key: str, path: str) -> tuple[tuple[str, str], ...]:
        """Response headers written in configuration (MOCK, gateway responses): a name must be an
        HTTP token and a value visible ASCII, space or tab, so a bad byte is a diagnostic here and
        never a 500 (or a split header) at run time."""
        out: list[tuple[str, str]] = []
        for name, value in self.string_map(mapping, key, path):
            here = join(join(path, key), name)
            if not HEADER_NAME.match(name):
                self.error(here, f"{name!r} is not a valid header name")
            elif not HEADER_VALUE.match(value):
                self.error(here, "a header value can hold only visible ASCII, spaces and tabs (no CR, LF or controls)")
            else:
                out.append((name, value))
        return tuple(out)


HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")


def join(path: str, key: str | int) -> str:
    """Extend a dotted field path: ``join("spec", "routes")``; ints become ``[i]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _PLAIN_KEY.match(key):
        # Map keys such as route keys ("GET /users") or mapping keys contain spaces and dots.
        return f'{path}["{key}"]'
    return diagnostics.field_path([path, key]) if path else key


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
