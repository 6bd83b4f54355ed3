"""What Java's Velocity does that airspeed does not, so AWS templates render as AWS documents.

Amazon API Gateway runs templates on Java Velocity, where JSON values are Java objects: a
boolean prints as ``true``, a map as ``{a=1, b=x}``, a list as ``[1, x, null]``, and templates
call Java methods on them (``$map.size()``, ``$s.equals('x')``, ``$s.toLowerCase()``). airspeed
prints Python's ``str`` (``True``, ``{'a': 1}``) and knows only a few of those methods, so
AWS's own examples (the photos example's ``"ispublic": $elem.ispublic``, the ``$input``
reference's ``$input.path('$.things').size()``) came out wrong. This module supplies both:

- ``render_like_java(tree)`` makes every ``$reference`` in a parsed template print its
  value the Java way (``java_str``); references without a value still print their own text,
  as Velocity does.
- The Java methods Python lacks are registered in airspeed's table of extra methods per type
  (``airspeed.__additional_methods__``, the library's extension point for exactly this), once,
  at import. Where Python has a method of the same name (``str.replace``, ``dict.get``),
  airspeed calls that one, which behaves the same for what templates pass. The methods are
  pure functions of their arguments (no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import airspeed

# The longest text ``java_str`` prints of a list or map (as vtl.MAX_VALUE, the bound of one
# value of a render). A template can hold one 10 MiB string in a list a million times over at
# the cost of a million pointers (``$l.addAll($l)``, ``#set($l = [$l, $l])``): printing it
# whole would be terabytes, so the text is measured while it is built and refused past this.
MAX_PRINTED = 10 * 1024 * 1024


class TooLarge(Exception):
    """A list or map whose printed text would pass ``MAX_PRINTED`` characters."""


_SEQUENCES: tuple[type[Iterable[Any]], ...] = (list, tuple, type({}.keys()), type({}.values()))
_CONTAINERS: tuple[type, ...] = (dict, *_SEQUENCES)


def java_str(value: Any) -> str:
    """``String.valueOf(value)`` for JSON-shaped values, as Java Velocity prints them."""
    if isinstance(value, str):  # first: nearly every reference prints a string
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, _CONTAINERS):  # JSON objects are dicts; no abc check on the hot path
        parts: list[str] = []
        _print_into(value, parts, MAX_PRINTED)
        return "".join(parts)
    return str(value)


def _print_into(value: Any, parts: list[str], left: int) -> int:
    """Append the Java text of ``value`` to ``parts``; answer how many characters are still
    allowed (``TooLarge`` when none: checked per piece, so nothing past the bound is built)."""
    if isinstance(value, dict):
        parts.append("{")
        left -= 1
        first = True
        for key, item in value.items():
            if not first:
                parts.append(", ")
                left -= 2
            first = False
            left = _print_into(key, parts, left)
            parts.append("=")
            left = _print_into(item, parts, left - 1)
        parts.append("}")
        left -= 1
    elif isinstance(value, _SEQUENCES):
        parts.append("[")
        left -= 1
        first = True
        for item in value:
            if not first:
                parts.append(", ")
                left -= 2
            first = False
            left = _print_into(item, parts, left)
        parts.append("]")
        left -= 1
    else:
        text = java_str(value)
        parts.append(text)
        left -= len(text)
    if left < 0:
        raise TooLarge(f"a value printing past {MAX_PRINTED} characters")
    return left


def _print_reference(element: Any) -> Callable[[Any, Any, Any], None]:
    """A replacement for one reference's ``evaluate_raw`` that prints with ``java_str``."""

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        value = None
        if element.expression is not None:
            value = element.expression.calculate(namespace, loader)
        if value is None:
            if element.alternate is not None:
                value = element.alternate.calculate(namespace, loader)
            elif element.silent and element.expression is not None:
                value = ""
            else:
                value = element.my_text()
        stream.write(java_str(value))

    return evaluate_raw


def render_like_java(tree: Iterable[Any]) -> None:
    """Make every reference of a parsed template (``tree``: its elements,
    ``propylon_config.templates.elements``) print the Java way."""
    for element in tree:
        if isinstance(element, airspeed.FormalReference):
            element.evaluate_raw = _print_reference(element)


# Java's strings are UTF-16: a character beyond the BMP (an emoji) is two code units, and
# length(), the indexes indexOf answers and those charAt and substring take count units. A
# Python str counts code points, so a string holding such a character is worked on as its
# units: each astral character split into its surrogate pair (one code point per unit), and
# what is taken out of it joined back (a lone half stays a lone surrogate, which the encoder
# writes as "?" as Java's does: utf8.encode). Strings without one (nearly all) are used as they are.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _pair(match: re.Match[str]) -> str:
    point = ord(match.group()) - 0x10000
    return chr(0xD800 + (point >> 10)) + chr(0xDC00 + (point & 0x3FF))


def _units(text: str) -> str:
    """``text`` with one code point per UTF-16 code unit (itself when it has no astral one)."""
    if text.isascii() or _ASTRAL.search(text) is None:  # isascii is a flag check: no scan
        return text
    return _ASTRAL.sub(_pair, text)


def _joined(units: str) -> str:
    """Units back to text: each whole surrogate pair one character again."""
    if units.isascii() or _SURROGATE.search(units) is None:
        return units
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _length(text: str) -> int:
    return len(_units(text))


def _index_of(text: str, part: Any, start: int = 0) -> int:
    # Java: a negative fromIndex searches from 0 (Python's find would count it from the end).
    return _units(text).find(_units(java_str(part)), max(start, 0))


def _last_index_of(text: str, part: Any, start: int | None = None) -> int:
    units, wanted = _units(text), _units(java_str(part))
    if start is None:
        return units.rfind(wanted)
    if start < 0:
        return -1
    return units.rfind(wanted, 0, start + len(wanted))  # the last match that begins at or before start


def _char_at(text: str, index: int) -> str:
    return _joined(_units(text)[index])


def _substring(text: str, begin: int, end: int | None = None) -> str:
    return _joined(_units(text)[begin:end])


def _equals(self: Any, other: Any) -> bool:
    # Java's equals is false across types: Boolean.TRUE is not 1, 1.0 is not 1.
    return type(self) is type(other) and bool(self == other)


_EVERY_VALUE: dict[str, Callable[..., Any]] = {
    "toString": java_str,
    "equals": _equals,
}

_STRING: dict[str, Callable[..., Any]] = {
    "isEmpty": lambda self: self == "",
    "length": _length,
    "contains": lambda self, part: java_str(part) in self,
    "startsWith": lambda self, prefix: self.startswith(java_str(prefix)),
    "endsWith": lambda self, suffix: self.endswith(java_str(suffix)),
    "equalsIgnoreCase": lambda self, other: isinstance(other, str) and self.lower() == other.lower(),
    "toLowerCase": str.lower,
    "toUpperCase": str.upper,
    "trim": lambda self: self.strip(" \t\n\r\x0b\x0c\x00"),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "charAt": _char_at,
    "substring": _substring,
    "replaceAll": lambda self, pattern, repl: re.sub(java_str(pattern), java_str(repl), self),
    "matches": lambda self, pattern: re.fullmatch(java_str(pattern), self) is not None,
}

_LIST: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda self: not self,
    "get": lambda self, index: self[index],
    "contains": lambda self, value: value in self,
    "indexOf": lambda self, value: self.index(value) if value in self else -1,
    # The building idiom of AWS's templates: #set($ignored = $list.add($x)).
    "add": lambda self, value: self.append(value) or True,
    "addAll": lambda self, values: self.extend(values) or True,
}

_MAP: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda self: not self,
    "keySet": lambda self: list(self),
    "entrySet": lambda self: [{"key": k, "value": v} for k, v in self.items()],
    "containsKey": lambda self, key: key in self,
    "containsValue": lambda self, value: value in self.values(),
    # Java's Map.put and remove answer the value the key had (null when none); putAll is void,
    # which Velocity renders as nothing (not as the reference's text).
    "put": lambda self, key, value: _put(self, key, value),
    "putAll": lambda self, other: self.update(other) or "",
    "remove": lambda self, key: self.pop(key, None),
}


def _put(mapping: dict[Any, Any], key: Any, value: Any) -> Any:
    before = mapping.get(key)
    mapping[key] = value
    return before


def _register(types: Iterable[type], methods: Mapping[str, Callable[..., Any]]) -> None:
    table: dict[type, dict[str, Callable[..., Any]]] = getattr(airspeed, "__additional_methods__")  # noqa: B009
    for kind in types:
        table.setdefault(kind, {}).update(methods)


_register((str, int, float, bool, list, dict), _EVERY_VALUE)
_register((str,), _STRING)
_register((list,), _LIST)
_register((dict,), _MAP)
